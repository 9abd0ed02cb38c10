import * as Plot from '@observablehq/plot';
import { elementCount, matrixOfTensorName } from '@layerquant/core';
import { architectureFacts } from '@layerquant/tensor-io/browser';
import type { Analysis } from '../analysis.js';
import { element, formatBytes, formatInteger, table, type Cell } from '../notebook.js';
import { MODULE_ORDER, PLOT_WIDTH, shortModule } from '../plots.js';

/** What a tensor is, for the size chart: a linear module, or embeddings / norms / lm_head. */
function tensorKind(name: string): string {
  const matrix = matrixOfTensorName(name);
  if (matrix) return shortModule(matrix.module);
  if (name.includes('embed_tokens')) return 'embed_tokens';
  if (name.startsWith('lm_head')) return 'lm_head';
  if (name.includes('norm')) return 'norms';
  return 'other';
}

export function renderModelCell(cell: Cell, analysis: Analysis): void {
  const { model, tensors } = analysis.data;
  cell.setCode(
    `layerquant inspect ${model.path} --json\n(await openCheckpoint('${model.path}')).tensors   // names, dtypes, shapes: headers only, no weights read`,
  );

  // The checkpoint's tensor bytes (inspect's JSON has sizes in MiB, not a byte total).
  const storedBytes = tensors.reduce((sum, t) => sum + t.bytes, 0);
  const facts: [string, string][] = [
    ['model', model.name],
    ...architectureFacts(model),
    ['parameters', formatInteger(model.params)],
    ['linear parameters', `${formatInteger(model.linearParams)} in ${model.linearMatrices} matrices (${((100 * model.linearParams) / model.params).toFixed(1)}%)`],
    ['stored', `${model.tensors} tensors in ${model.files} files, ${formatBytes(storedBytes)} of tensor data (${Object.entries(model.dtypes).map(([d, n]) => `${d} x${n}`).join(', ')})`],
  ];
  const factList = element('dl', { class: 'facts' }, ...facts.flatMap(([k, v]) => [element('dt', {}, k), element('dd', {}, v)]));

  const byKind = new Map<string, number>();
  for (const t of tensors) byKind.set(tensorKind(t.name), (byKind.get(tensorKind(t.name)) ?? 0) + elementCount(t.shape));
  const kinds = [...byKind].map(([kind, params]) => ({ kind, params, quantized: MODULE_ORDER.includes(kind) }));
  const chart = Plot.plot({
    width: PLOT_WIDTH,
    height: 260,
    marginLeft: 100,
    marginRight: 80,
    x: { label: 'parameters (millions) →', grid: true, transform: (v: number) => v / 1e6 },
    y: { label: 'tensor kind' },
    color: { domain: [true, false], range: ['#4e79a7', '#bab0ac'], legend: true, tickFormat: (q: boolean) => (q ? 'quantized (linear)' : 'kept in float') },
    marks: [
      Plot.barX(kinds, { x: 'params', y: 'kind', fill: 'quantized', sort: { y: '-x' }, tip: true }),
      Plot.text(kinds, { x: 'params', y: 'kind', text: (d: { params: number }) => formatInteger(d.params), dx: 4, textAnchor: 'start', fontSize: 10 }),
      Plot.ruleX([0]),
    ],
  });

  const rows = tensors.map((t) => [
    element('code', {}, t.name),
    t.dtype,
    `[${t.shape.join(', ')}]`,
    formatInteger(elementCount(t.shape)),
    formatBytes(t.bytes),
    t.file,
  ]);
  const list = element(
    'details',
    { class: 'tensor-list' },
    element('summary', {}, `All ${tensors.length} tensors`),
    element('div', { class: 'scroll' }, table(['tensor', 'dtype', 'shape', 'parameters', 'size', 'file'], rows, { 'data-table': 'tensors' })),
  );
  cell.setOutput(factList, element('figure', { 'data-plot': 'tensor-sizes' }, chart), list);
}
