import type { AllocatorPlugin } from '@layerquant/allocators';
import { BUDGET_STOPS, PAPER_BUDGETS, PAPER_CONFIGS, checkOptionValue, configName, type OptionDescriptor, type OptionValue } from '@layerquant/core';
import { METHODS, methods, type NotebookMethod } from './methods.js';
import { element } from './notebook.js';
import type { Store } from './state.js';

/** The budgets of the paper's Figure 5 and tables (2.25 ... 4.51), core's list. */
export { PAPER_BUDGETS };

function select(name: string, label: string, options: readonly { value: string; text: string }[], value: string, help: string): HTMLLabelElement {
  const input = element('select', { name, 'data-knob': name });
  for (const o of options) input.append(element('option', { value: o.value }, o.text));
  input.value = value;
  return element('label', { title: help }, element('span', {}, label), input);
}

/**
 * The option knobs of a set of allocators: one per option name (the first plug-in's descriptor names it), for every
 * option a picker can offer. Derived from the descriptors alone, so a plug-in's option gets its knob unchanged.
 */
export function optionKnobs(plugins: readonly AllocatorPlugin[]): OptionDescriptor[] {
  const byName = new Map<string, OptionDescriptor>();
  for (const p of plugins) for (const d of p.options) if (!byName.has(d.name) && (d.type !== 'choice' || (d.choices?.length ?? 0) > 0)) byName.set(d.name, d);
  return [...byName.values()];
}

/** The control of one descriptor: suggested values or choices as a select, a checkbox, else a number field. */
function optionControl(d: OptionDescriptor, value: OptionValue): HTMLLabelElement {
  const text = (v: OptionValue) => (d.describe && d.describe(v) !== String(v) ? `${String(v)} (${d.describe(v)})` : String(v));
  const label = d.flag.replace(/-/g, '_');
  const values: readonly OptionValue[] | undefined = d.suggested ?? d.choices ?? (d.type === 'config' ? PAPER_CONFIGS.map(configName) : undefined);
  if (values) {
    const list = values.includes(value) ? values : [value, ...values];
    return select(d.name, label, list.map((v) => ({ value: String(v), text: text(v) })), String(value), d.help);
  }
  if (d.type === 'boolean') {
    const input = element('input', { type: 'checkbox', name: d.name, 'data-knob': d.name });
    (input as HTMLInputElement).checked = value === true;
    return element('label', { title: d.help }, element('span', {}, label), input);
  }
  const attributes: Record<string, string> = { type: 'number', name: d.name, 'data-knob': d.name, value: String(value), step: d.type === 'integer' ? '1' : 'any' };
  if (d.min !== undefined) attributes.min = String(d.min);
  if (d.max !== undefined) attributes.max = String(d.max);
  return element('label', { title: d.help }, element('span', {}, label), element('input', attributes));
}

/** A control's value as the descriptor's type, checked against it (an invalid entry keeps the previous value). */
function readControl(d: OptionDescriptor, target: HTMLInputElement | HTMLSelectElement): OptionValue | undefined {
  const raw: OptionValue = d.type === 'boolean' ? (target as HTMLInputElement).checked : d.type === 'integer' || d.type === 'number' ? Number(target.value) : target.value;
  try {
    return checkOptionValue(d, raw, d.name);
  } catch {
    return undefined;
  }
}

/**
 * The knobs bar: method (the allocator plug-ins whose statistics the data holds), budget, then one knob per option
 * descriptor of those allocators (boost_stop, top_m, factor, ...; a LAYERQUANT_PLUGINS allocator's options too).
 * A knob the chosen method does not take is disabled, unless a cell reads it (`live`: top_m, which the outlier cells
 * use); every change re-runs the cells that depend on it.
 */
export function renderKnobs(parent: HTMLElement, store: Store, choices: readonly NotebookMethod[] = METHODS, live: readonly string[] = ['topM']): void {
  const knobs = store.get();
  const descriptors = optionKnobs(choices.map((m) => m.plugin));
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
    ...descriptors.map((d) => optionControl(d, knobs[d.name] ?? d.default)),
  );
  const sync = () => {
    const plugin = methods.get(store.get().method).plugin;
    for (const d of descriptors) {
      const control = bar.querySelector<HTMLInputElement | HTMLSelectElement>(`[name="${d.name}"]`)!;
      control.disabled = !live.includes(d.name) && !plugin.options.some((o) => o.name === d.name);
    }
  };
  bar.addEventListener('change', (event) => {
    const target = event.target as HTMLInputElement | HTMLSelectElement;
    const name = target.name;
    if (name === 'method') store.set({ method: target.value });
    else if (name === 'budget') store.set({ budget: Number(target.value) });
    else {
      const d = descriptors.find((x) => x.name === name);
      const value = d ? readControl(d, target) : undefined;
      if (value !== undefined) store.set({ [name]: value });
    }
    sync();
  });
  bar.addEventListener('submit', (event) => event.preventDefault());
  sync();
  parent.append(bar);
}
