import { BUDGET_STOPS, configName } from '@layerquant/core';
import { METHODS, methods, type NotebookMethod } from './methods.js';
import { element } from './notebook.js';
import type { Store } from './state.js';

/** The budgets of the paper's Figure 5 and tables (2.25 ... 4.51). */
export const PAPER_BUDGETS: readonly number[] = Object.freeze([2.25, 2.51, 3.13, 3.25, 3.51, 4.13, 4.25, 4.51]);

function select(name: string, label: string, options: readonly { value: string; text: string }[], value: string, help: string): HTMLLabelElement {
  const input = element('select', { name, 'data-knob': name });
  for (const o of options) input.append(element('option', { value: o.value }, o.text));
  input.value = value;
  return element('label', { title: help }, element('span', {}, label), input);
}

/**
 * The knobs bar: method (the allocator plug-ins whose statistics the data holds), budget, boost_stop, top_m; every
 * change re-runs the cells that depend on it.
 */
export function renderKnobs(parent: HTMLElement, store: Store, choices: readonly NotebookMethod[] = METHODS): void {
  const knobs = store.get();
  const bar = element(
    'form',
    { class: 'knobs', 'aria-label': 'knobs' },
    element('strong', {}, 'Knobs'),
    select('method', 'method', choices.map((m) => ({ value: m.id, text: m.label })), knobs.method, 'which allocator runs in the allocation cell'),
    select(
      'budget',
      'budget',
      BUDGET_STOPS.map((s) => ({
        value: String(s.budget),
        text: `${s.budget.toFixed(2)} · ${configName(s.config)}${PAPER_BUDGETS.includes(s.budget) ? ' · paper' : ''}`,
      })),
      String(knobs.budget),
      'bits per weight: one of the 12 stops of the ladder (b2/b3/b4/b8 x g128/g64/g32)',
    ),
    select('boostStop', 'boost_stop', [2, 3].map((v) => ({ value: String(v), text: String(v) })), String(knobs.boostStop), 'stops up the ladder for an outlier matrix'),
    select(
      'topM',
      'top_m',
      [0, 1, 2, 3].map((v) => ({ value: String(v), text: v === 0 ? '0 (all)' : String(v) })),
      String(knobs.topM),
      'outlier layers kept per module, most extreme first; 0 keeps all',
    ),
  );
  // boost_stop means nothing to uniform and MXQ; top_m stays live because the outlier cells read it too.
  const sync = () => {
    bar.querySelector<HTMLSelectElement>('select[name="boostStop"]')!.disabled = !methods.get(store.get().method).boosts;
  };
  bar.addEventListener('change', (event) => {
    const target = event.target as HTMLSelectElement;
    const name = target.name;
    if (name === 'method') store.set({ method: target.value });
    else if (name === 'budget') store.set({ budget: Number(target.value) });
    else if (name === 'boostStop') store.set({ boostStop: Number(target.value) });
    else if (name === 'topM') store.set({ topM: Number(target.value) });
    sync();
  });
  bar.addEventListener('submit', (event) => event.preventDefault());
  sync();
  parent.append(bar);
}
