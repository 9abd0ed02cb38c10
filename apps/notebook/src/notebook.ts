import { LayerquantError } from '@layerquant/core';

/** The page's building blocks: numbered cells with prose, the call they run, and live output. */

export interface Cell {
  readonly root: HTMLElement;
  /** The "In" part: the call this cell makes, rewritten when the knobs change. */
  setCode(code: string): void;
  /** The "Out" part, replaced on each render. */
  setOutput(...nodes: Node[]): void;
  setError(error: unknown): void;
}

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

/** Prose with `code` spans and *emphasis*, so cell text reads like a notebook's markdown. */
export function prose(text: string): HTMLParagraphElement {
  const paragraph = element('p');
  for (const part of text.split(/(`[^`]+`|\*[^*]+\*)/)) {
    if (part.startsWith('`') && part.endsWith('`') && part.length > 1) paragraph.append(element('code', {}, part.slice(1, -1)));
    else if (part.startsWith('*') && part.endsWith('*') && part.length > 1) paragraph.append(element('em', {}, part.slice(1, -1)));
    else paragraph.append(part);
  }
  return paragraph;
}

export function createCell(parent: HTMLElement, options: { id: string; number: number; title: string; text: readonly string[] }): Cell {
  const code = element('pre', { class: 'cell-code' });
  const output = element('div', { class: 'cell-output', 'data-output': options.id });
  const root = element(
    'section',
    { class: 'cell', id: `cell-${options.id}`, 'data-cell': options.id, 'data-state': 'pending' },
    element('div', { class: 'cell-prompt' }, `[${options.number}]`),
    element(
      'div',
      { class: 'cell-body' },
      element('h2', {}, options.title),
      ...options.text.map(prose),
      element('div', { class: 'cell-in' }, element('span', { class: 'cell-label' }, 'In'), code),
      element('div', { class: 'cell-out' }, element('span', { class: 'cell-label' }, 'Out'), output),
    ),
  );
  parent.append(root);
  return {
    root,
    setCode(text) {
      code.textContent = text;
    },
    setOutput(...nodes) {
      output.replaceChildren(...nodes);
      root.dataset.state = 'rendered';
    },
    setError(error) {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      output.replaceChildren(element('pre', { class: 'cell-error' }, message));
      root.dataset.state = 'error';
    },
  };
}

/** Runs a cell's render and turns a throw into a visible error in that cell only. */
export function renderInto(cell: Cell, render: () => void): void {
  try {
    render();
  } catch (error) {
    // A LayerquantError is a message for the reader (a method that needs a missing table, say); anything else is a bug.
    if (!(error instanceof LayerquantError)) console.error(error);
    cell.setError(error);
  }
}

export function table(headers: readonly string[], rows: readonly (readonly (Node | string)[])[], attributes: Record<string, string> = {}): HTMLTableElement {
  return element(
    'table',
    attributes,
    element('thead', {}, element('tr', {}, ...headers.map((h) => element('th', {}, h)))),
    element('tbody', {}, ...rows.map((row) => element('tr', {}, ...row.map((value) => element('td', {}, value))))),
  );
}

export const formatInteger = (value: number): string => value.toLocaleString('en-US');
export const formatFixed = (value: number, digits: number): string => value.toFixed(digits);
export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
  if (bytes >= 2 ** 10) return `${(bytes / 2 ** 10).toFixed(1)} KiB`;
  return `${bytes} B`;
}
