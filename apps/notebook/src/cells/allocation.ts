import * as Plot from '@observablehq/plot';
import type { MxqAllocation } from '@layerquant/allocators';
import { BUDGET_STOPS, bitsPerWeight, budgetStopIndex, configName, type Allocation } from '@layerquant/core';
import type { ModelAnalysis } from '../analysis.js';
import { allocate, methods } from '../methods.js';
import { element, formatBytes, formatFixed, formatInteger, table, type Cell } from '../notebook.js';
import { MODULE_ORDER, PLOT_WIDTH, shortModule } from '../plots.js';
import type { Knobs } from '../state.js';
import { MIB } from '../shipped.js';

/** b2 purples, b3 blues, b4 greens, b8 oranges; g128, g64, g32 from light to dark (the ladder's order). */
const LADDER_COLORS = ['#dadaeb', '#9e9ac8', '#6a51a3', '#c6dbef', '#6baed6', '#2171b5', '#c7e9c0', '#74c476', '#238b45', '#fdd0a2', '#fd8d3c', '#d94801'];
/** Configs dark enough for white text. */
const DARK = new Set(['b2g32', 'b3g32', 'b4g32', 'b8g32']);

function isMxq(allocation: Allocation): allocation is MxqAllocation {
  return allocation.method === 'mxq' && 'solver' in allocation;
}

interface Summary {
  readonly label: string;
  readonly value: string;
  readonly key: string;
}

/** The exact bytes of the ONNX file an allocation exports to, where the page has the model's cost model. */
export type FileBytesOf = (allocation: Allocation) => number;

export function renderAllocationCell(cell: Cell, analysis: ModelAnalysis, knobs: Knobs, fileBytesOf?: FileBytesOf): void {
  const method = methods.get(knobs.method);
  cell.setCode(
    `${method.code(knobs)}\n` +
      `modelMemory(allocation.matrices.map((m) => ({ shape: shapes.get(m.key), config: m.config })))   // paper bits and real packed bytes`,
  );
  const { allocation, memory, uniformMemory, milliseconds } = allocate(analysis, knobs);
  const base = BUDGET_STOPS[budgetStopIndex(knobs.budget)]!.config;
  const cells = allocation.matrices.map((m) => ({
    layer: m.layer,
    module: shortModule(m.module),
    config: m.config ? configName(m.config) : 'float',
    bits: m.config ? m.config.bits : 16,
    groupSize: m.config ? `g${m.config.groupSize}` : '',
    bpp: m.config ? bitsPerWeight(m.config) : 16,
    changed: m.config ? configName(m.config) !== configName(base) : true,
    params: m.params,
  }));
  // One hue per bit width, darker for smaller groups (more bits per weight): the legend reads like the ladder.
  const ladder = BUDGET_STOPS.map((s) => configName(s.config));
  const heatmap = Plot.plot({
    width: PLOT_WIDTH,
    height: 290,
    marginLeft: 50,
    padding: 0.06,
    x: { label: 'layer (index) →', domain: Array.from({ length: analysis.numLayers }, (_, i) => i), tickSize: 0 },
    y: { label: 'module (linear matrix of the layer)', domain: [...MODULE_ORDER], tickSize: 0 },
    color: {
      type: 'ordinal',
      domain: ladder,
      range: LADDER_COLORS,
      legend: true,
      tickFormat: (name: string) => `${name} ${BUDGET_STOPS[ladder.indexOf(name)]!.budget.toFixed(2)}`,
    },
    marks: [
      Plot.cell(cells, {
        x: 'layer',
        y: 'module',
        fill: 'config',
        title: (d: (typeof cells)[number]) => `layer ${d.layer} ${d.module}: ${d.config} (${d.bpp.toFixed(4)} bits/weight, ${formatInteger(d.params)} params)`,
        className: 'allocation-cell',
      }),
      Plot.cell(
        cells.filter((d) => d.changed),
        { x: 'layer', y: 'module', fill: 'none', stroke: '#d62728', strokeWidth: 2, inset: 0.5 },
      ),
      Plot.text(cells, { x: 'layer', y: 'module', text: 'bits', dy: -4, fill: (d: (typeof cells)[number]) => (DARK.has(d.config) ? 'white' : 'black'), fontSize: 10, fontWeight: 'bold' }),
      Plot.text(cells, { x: 'layer', y: 'module', text: 'groupSize', dy: 6, fill: (d: (typeof cells)[number]) => (DARK.has(d.config) ? 'white' : '#333'), fontSize: 7 }),
    ],
  });

  const extra = 100 * (memory.paperMB / uniformMemory.paperMB - 1);
  const summaries: Summary[] = [
    { key: 'bpp', label: 'bits per weight', value: formatFixed(memory.paperBitsPerWeight, 4) },
    { key: 'memory', label: 'memory (paper accounting)', value: `${formatFixed(memory.paperMB, 3)} MiB` },
    { key: 'extra', label: `extra over uniform ${configName(base)}`, value: `${extra >= 0 ? '+' : ''}${formatFixed(extra, 2)}%` },
    ...(fileBytesOf
      ? (() => {
          const bytes = fileBytesOf(allocation);
          return [{ key: 'shipped', label: 'shipped ONNX file (its export, embeddings and lm_head in float32)', value: `${formatFixed(bytes / MIB, 2)} MiB (${formatFixed((8 * bytes) / memory.params, 3)} bits per linear weight)` }];
        })()
      : []),
    { key: 'packed', label: 'real packed size (codes + scales, zeros)', value: `${formatBytes(memory.packedBytes)} (${formatFixed(memory.packedBitsPerWeight, 3)} bits/weight)` },
    { key: 'time', label: 'allocator run time', value: `${formatFixed(milliseconds, 1)} ms` },
  ];
  const totals = element(
    'dl',
    { class: 'totals', 'data-totals': '' },
    ...summaries.flatMap((s) => [element('dt', {}, s.label), element('dd', { 'data-total': s.key }, s.value)]),
  );

  const byConfig = new Map<string, { matrices: number; params: number; bpp: number }>();
  for (const c of cells) {
    const entry = byConfig.get(c.config) ?? { matrices: 0, params: 0, bpp: c.bpp };
    entry.matrices++;
    entry.params += c.params;
    byConfig.set(c.config, entry);
  }
  const configTable = table(
    ['config', 'bits per weight', 'matrices', 'parameters', 'share'],
    [...byConfig]
      .sort((a, b) => a[1].bpp - b[1].bpp)
      .map(([name, e]) => [name, formatFixed(e.bpp, 4), String(e.matrices), formatInteger(e.params), `${formatFixed((100 * e.params) / memory.params, 1)}%`]),
    { 'data-table': 'configs', class: 'compact' },
  );
  const boosted = cells.filter((c) => c.changed).length;
  const solver = isMxq(allocation) ? allocation.solver : undefined;
  const note = element(
    'p',
    { class: 'note' },
    `${method.label}: ${method.summary}. ` +
      `${boosted} of ${cells.length} matrices differ from the uniform ${configName(base)} (outlined in red). ` +
      (solver ? `Summed Frobenius error ${formatFixed(solver.objective, 3)}, proven gap ${solver.gap.toExponential(1)}. ` : '') +
      `Each cell shows the bits of the codes over the group size; the legend gives each config's bits per weight including the 8-bit scale and zero per group.`,
  );
  cell.setOutput(
    element('figure', { 'data-plot': 'allocation', 'data-signature': cells.map((c) => c.config).join(' ') }, heatmap),
    totals,
    note,
    configTable,
  );
}
