import { ladderStops, definePlugin, matricesOf, type AllocatorPlugin } from '@layerquant/allocators';
import { InvalidDataError, PAPER_CONFIGS, allocationTotals, matrixKey, type LinearModule, type MatrixAllocation } from '@layerquant/core';
import { listMatrices, type MatrixSource, type MetricPlugin } from '@layerquant/sensitivity';
import { columnIndex, field, formatCsv, integerField, numberField, readCsv } from '@layerquant/stats';

/** One row of the crest table: a linear matrix's peak over its root mean square. */
export interface CrestRow {
  readonly layer: number;
  readonly module: LinearModule;
  readonly params: number;
  /** max |w| / sqrt(mean w^2): how far the largest weight sticks out of the matrix (sqrt(3) for a uniform matrix). */
  readonly crest: number;
}

export interface CrestTable {
  readonly rows: readonly CrestRow[];
}

const COLUMNS = ['layer', 'module', 'params', 'crest'] as const;

/** The crest factor of a matrix, in float64. */
export function crestFactor(data: Float32Array): number {
  let peak = 0;
  let squares = 0;
  for (const w of data) {
    peak = Math.max(peak, Math.abs(w));
    squares += w * w;
  }
  return squares > 0 ? peak / Math.sqrt(squares / data.length) : 0;
}

/** A weight metric: it reads every linear matrix once and fills the table `crest` (written to crest.csv). */
export const crestMetric: MetricPlugin<MatrixSource, CrestTable> = Object.freeze({
  id: 'crest',
  table: 'crest',
  input: 'weights' as const,
  description: 'crest factor of each weight matrix: its largest |weight| over the root mean square of its weights',
  async measure(source: MatrixSource, options?: { onProgress?: (done: number, total: number) => void }): Promise<CrestTable> {
    const matrices = listMatrices(source);
    const rows: CrestRow[] = [];
    for (const [i, m] of matrices.entries()) {
      const { data } = await source.read(m.name);
      rows.push({ layer: m.layer, module: m.module, params: data.length, crest: crestFactor(data) });
      options?.onProgress?.(i + 1, matrices.length);
    }
    return { rows };
  },
  format: (table: CrestTable) => formatCsv(COLUMNS, table.rows.map((r) => [r.layer, r.module, r.params, r.crest])),
  parse(text: string, source = 'crest.csv'): CrestTable {
    const doc = readCsv(text, source);
    const index = columnIndex(doc, COLUMNS);
    const rows = doc.records.map((record) => ({
      layer: integerField(doc, record, index, 'layer'),
      module: field(doc, record, index, 'module') as LinearModule,
      params: integerField(doc, record, index, 'params', 1),
      crest: numberField(doc, record, index, 'crest'),
    }));
    if (rows.length === 0) throw new InvalidDataError(source, 'has a header but no rows');
    return { rows };
  },
});

/**
 * The allocator that reads the crest table: every matrix at the config of the budget's stop, except the `top`
 * matrices of highest crest factor, which get the next stop up (their outliers cost the most at few bits). Like the
 * paper's boosts it spends a little more than the stop; the report's extra memory says how much.
 */
export const crestBoostPlugin: AllocatorPlugin = definePlugin({
  id: 'crest-boost',
  label: 'Crest boost',
  description: 'uniform at the stop; the matrices of highest weight crest factor (max |w| / rms) move one stop up',
  budget: 'stop',
  options: [{ name: 'top', flag: 'crest-top', type: 'integer', default: 4, min: 0, help: 'matrices of highest crest factor moved one stop up' }],
  nameOptions: ['top'],
  tablesNeeded: () => ['crest'],
  allocate(stats, options, context) {
    const table = stats.crest as CrestTable | undefined;
    if (!table) throw new InvalidDataError(stats.source ?? 'statistics', 'has no crest table; measure it with the crest metric (--plugin) or give crest.csv with --stats');
    const stops = ladderStops(context.configs ?? PAPER_CONFIGS);
    const index = stops.findIndex((s) => Math.abs(s.budget - context.budget) < 1e-9 || Math.abs(s.bpp - context.budget) < 1e-9);
    if (index < 0) throw new InvalidDataError('budget', `${context.budget} is no stop of the ladder (${stops.map((s) => s.budget).join(', ')})`);
    const base = stops[index]!.config;
    const up = stops[Math.min(index + 1, stops.length - 1)]!.config;
    // The table lists every matrix with its size: the allocation's matrices come from it (checked whole by matricesOf).
    const list = matricesOf({ matrices: table.rows.map((r) => ({ key: matrixKey(r.layer, r.module), layer: r.layer, module: r.module, params: r.params })) });
    const crest = new Map(table.rows.map((r) => [matrixKey(r.layer, r.module), r.crest]));
    const ranked = [...list].sort((a, b) => crest.get(b.key)! - crest.get(a.key)! || a.layer - b.layer);
    const boosted = new Set(ranked.slice(0, Number(options.top)).map((m) => m.key));
    const matrices: MatrixAllocation[] = list.map((m) => Object.freeze({ ...m, config: boosted.has(m.key) ? up : base }));
    return Object.freeze({ method: 'crest-boost', options: Object.freeze({ top: Number(options.top) }), budget: context.budget, matrices: Object.freeze(matrices), totals: allocationTotals(matrices) });
  },
});

/** What `--plugin` loads: the metric and the allocator of its table, one module. */
export default { metrics: [crestMetric], allocators: [crestBoostPlugin] };
