import { formatCsv } from '@layerquant/allocators';
import { kldSummary, pairedBootstrap, pairedBootstrapKld, verdict, type BootstrapOptions, type KldSummary, type PairedInterval } from '@layerquant/perplexity';
import type { ShippedSize } from '@layerquant/pipeline';

export { pairedBootstrap, pairedBootstrapKld, verdict, type BootstrapOptions, type PairedInterval } from '@layerquant/perplexity';

/** What the tables, win/tie/loss and the headline are read by: perplexity (default) or mean KLD from the float model. */
export type ReportMetric = 'ppl' | 'kld';
export const REPORT_METRICS: readonly ReportMetric[] = Object.freeze(['ppl', 'kld']);

/** A cell's KL divergence from the float model on the same windows (llama.cpp's statistics, @layerquant/perplexity's summary). */
export type CellKld = KldSummary;
/** The statistics a cell keeps of a KL-divergence run. */
export const cellKld = kldSummary;

/** One evaluated cell of the experiment. */
export interface ExperimentRow {
  readonly model: string;
  /** `fp` (the unquantized model), `hqq`, `mxq`, `sensiboost-2-1`, ... */
  readonly method: string;
  /** The quantizer of every matrix (`hqq` unless `experiment --quantizer`); absent for the unquantized row. */
  readonly quantizer?: string;
  /** Options in words, e.g. `boost_stop=2 top_m=1`. */
  readonly options: string;
  /** Budget asked for (bits per weight); null for the unquantized model. */
  readonly budget: number | null;
  /** Bits per weight of the linear matrices, paper accounting. */
  readonly bpp: number;
  /** Memory of the linear matrices, MB (2^20 bytes), paper accounting. */
  readonly memoryMB: number;
  /** Real bytes of the packed linear matrices (codes + scales + zeros as layerquant stores them). */
  readonly packedBytes: number;
  /** Memory over HQQ uniform at the same budget, percent. */
  readonly extraMemoryPercent: number;
  readonly ppl: number;
  /** Allocation + quantization + evaluation time. */
  readonly seconds: number;
  /** Per evaluation window: weighted NLL and weight (ppl = exp(sum nll / sum weights)), for the paired bootstrap. */
  readonly windowNll?: readonly number[];
  readonly windowWeights?: readonly number[];
  /** With `experiment --kld`: KL divergence from the float model, and per window its sum and scored tokens. */
  readonly kld?: CellKld;
  readonly windowKld?: readonly number[];
  readonly windowKldCount?: readonly number[];
  /** With `experiment --refine`, for a method that corrects its allocation by measurement (kld): what it did. */
  readonly refinement?: CellRefinement;
  /**
   * In a grid of shipped files (`experiment --target-format`): the file the cell wrote and measured, every byte of it
   * (its MiB and bits per linear weight), beside the cost model's prediction and the target (the cell's budget).
   */
  readonly shipped?: ShippedSize;
}

/**
 * A cell's correction by measurement: the mean KLD from the float model on the statistics' calibration of its
 * allocator's first (additive) allocation and of the corrected one, and which the cell quantized (the corrected one
 * only when it is not worse).
 */
export interface CellRefinement {
  readonly additiveKld: number;
  readonly refinedKld: number;
  readonly kept: 'refined' | 'additive';
  /** Both allocations' mean KLD on the held-out blocks (null: none held out, or the correction changed nothing). */
  readonly heldOut: { readonly blocks: number; readonly additiveKld: number; readonly refinedKld: number } | null;
  /** Units whose config the kept allocation changed from the additive one. */
  readonly changed: number;
  /** Allocations measured (round 0, the additive one, included). */
  readonly measured: number;
  readonly stopped: string | null;
}

export const RESULT_COLUMNS = Object.freeze([
  'model',
  'method',
  'options',
  'budget',
  'paper_bits_per_weight',
  'paper_MiB',
  'disk_MiB',
  'extra_memory_percent',
  'perplexity',
  'seconds',
] as const);

/** No value (no uniform baseline, the unquantized row): results.csv writes an empty field, never NaN. */
function finiteOrNull(value: number | null): number | null {
  return value === null || !Number.isFinite(value) ? null : value;
}

/** results.csv through the one CSV writer (@layerquant/stats' formatCsv: Python-repr numbers, empty for no value). */
export function formatResultsCsv(rows: readonly ExperimentRow[]): string {
  // KLD columns only where a cell has them (`experiment --kld`): results of a perplexity run stay as they were.
  const withKld = rows.some((r) => r.kld);
  // Shipped-file columns only in a grid of shipped files: other results stay as they were.
  const withShipped = rows.some((r) => r.shipped);
  return formatCsv(
    [...RESULT_COLUMNS, ...(withShipped ? SHIPPED_COLUMNS : []), ...(withKld ? KLD_COLUMNS : [])],
    rows.map((r) => {
      const base = [r.model, r.method, r.options, finiteOrNull(r.budget), finiteOrNull(r.bpp), finiteOrNull(r.memoryMB), finiteOrNull(r.packedBytes / 2 ** 20), finiteOrNull(r.extraMemoryPercent), finiteOrNull(r.ppl), finiteOrNull(r.seconds)];
      const s = r.shipped;
      const shipped = !withShipped ? [] : s ? [s.format, s.MiB, s.bitsPerWeight, s.predictedMiB ?? null, s.targetMiB ?? null] : SHIPPED_COLUMNS.map(() => null);
      const k = r.kld;
      const kld = !withKld ? [] : k ? [k.mean, k.error, k.median, k.p99, k.p999, k.max, k.sameTop, k.rmsDeltaP, k.pplRatio].map(finiteOrNull) : KLD_COLUMNS.map(() => null);
      return [...base, ...shipped, ...kld];
    }),
  );
}

/** The columns a grid of shipped files (`experiment --target-format`) adds to results.csv. */
export const SHIPPED_COLUMNS = Object.freeze(['shipped_format', 'shipped_MiB', 'shipped_bits_per_weight', 'predicted_MiB', 'target_MiB'] as const);

/** The columns `experiment --kld` adds to results.csv. */
export const KLD_COLUMNS = Object.freeze(['mean_kld', 'mean_kld_error', 'median_kld', 'kld_99', 'kld_99_9', 'max_kld', 'same_top', 'rms_delta_p', 'ppl_ratio'] as const);

/** A row's value of a metric: perplexity, or mean KLD (NaN where the row has none). */
export function metricValue(row: ExperimentRow, metric: ReportMetric = 'ppl'): number {
  return metric === 'ppl' ? row.ppl : (row.kld?.mean ?? Number.NaN);
}

/** Windows of a row, or undefined when the row has none stored (results of an older run). */
function windowsOf(row: ExperimentRow): { nll: readonly number[]; weights: readonly number[] } | undefined {
  return row.windowNll && row.windowWeights && row.windowNll.length > 0 && row.windowNll.length === row.windowWeights.length
    ? { nll: row.windowNll, weights: row.windowWeights }
    : undefined;
}

/**
 * The paired interval of two rows (of perplexity, or of mean KLD), or undefined when either lacks per-window values
 * or their windows differ.
 */
export function rowInterval(row: ExperimentRow, baseline: ExperimentRow, options: BootstrapOptions = {}, metric: ReportMetric = 'ppl'): PairedInterval | undefined {
  if (metric === 'kld') {
    const ok = (r: ExperimentRow) => r.windowKld && r.windowKldCount && r.windowKld.length > 0 && r.windowKld.length === r.windowKldCount.length;
    if (!ok(row) || !ok(baseline) || row.windowKld!.length !== baseline.windowKld!.length) return undefined;
    return pairedBootstrapKld({ kld: row.windowKld!, count: row.windowKldCount! }, { kld: baseline.windowKld!, count: baseline.windowKldCount! }, options);
  }
  const a = windowsOf(row);
  const b = windowsOf(baseline);
  if (!a || !b || a.nll.length !== b.nll.length) return undefined;
  return pairedBootstrap(a, b, options);
}

export interface Comparison {
  readonly method: string;
  readonly baseline: string;
  /** Budgets where the 95% interval of the perplexity difference lies below 0. */
  readonly wins: number;
  /** Budgets where the interval holds 0. */
  readonly ties: number;
  /** Budgets where the interval lies above 0. */
  readonly losses: number;
  /** Budgets compared without per-window data (no call made). */
  readonly undecided: number;
  /** Mean relative change of the metric against the baseline, percent (negative = better). */
  readonly meanChangePercent: number;
}

/**
 * Win/tie/loss of `method` against `baseline` over the budgets where both were evaluated: a win or a loss only
 * when the paired bootstrap interval over windows excludes 0.
 */
export function compareMethods(rows: readonly ExperimentRow[], method: string, baseline: string, options: BootstrapOptions = {}, metric: ReportMetric = 'ppl'): Comparison | undefined {
  let wins = 0;
  let ties = 0;
  let losses = 0;
  let undecided = 0;
  let sum = 0;
  for (const r of rows.filter((x) => x.method === method)) {
    const base = rows.find((x) => x.method === baseline && x.budget === r.budget);
    if (!base) continue;
    sum += (metricValue(r, metric) - metricValue(base, metric)) / metricValue(base, metric);
    const interval = rowInterval(r, base, options, metric);
    if (!interval) undecided++;
    else {
      const v = verdict(interval);
      if (v === 'better') wins++;
      else if (v === 'worse') losses++;
      else ties++;
    }
  }
  const n = wins + ties + losses + undecided;
  if (n === 0) return undefined;
  return { method, baseline, wins, ties, losses, undecided, meanChangePercent: (100 * sum) / n };
}

export interface Headline {
  readonly row: ExperimentRow;
  readonly baseline: ExperimentRow;
  /** Reduction of the metric against HQQ uniform at the same budget, percent (positive = better). */
  readonly gainPercent: number;
  /** The paired interval of the metric's difference (method - HQQ uniform). */
  readonly interval: PairedInterval;
}

/**
 * The best perplexity gain over HQQ uniform at the same budget among rows whose paired bootstrap interval lies
 * wholly below 0 (never a tie); among gains within a tenth of the best, the one with the least extra memory.
 */
export function headline(rows: readonly ExperimentRow[], options: BootstrapOptions = {}, metric: ReportMetric = 'ppl'): Headline | undefined {
  const candidates: Headline[] = [];
  for (const row of rows) {
    if (row.method === 'hqq' || row.method === 'fp' || row.method === 'mxq' || row.method.startsWith('ablation')) continue;
    const baseline = rows.find((x) => x.method === 'hqq' && x.budget === row.budget);
    if (!baseline) continue;
    const interval = rowInterval(row, baseline, options, metric);
    if (!interval || verdict(interval) !== 'better') continue;
    const [ours, theirs] = [metricValue(row, metric), metricValue(baseline, metric)];
    candidates.push({ row, baseline, gainPercent: (100 * (theirs - ours)) / theirs, interval });
  }
  if (candidates.length === 0) return undefined;
  const best = Math.max(...candidates.map((c) => c.gainPercent));
  return candidates
    .filter((c) => c.gainPercent >= 0.9 * best)
    .sort((a, b) => a.row.extraMemoryPercent - b.row.extraMemoryPercent || b.gainPercent - a.gainPercent)[0];
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '-';
}

export interface ReportContext {
  readonly model: string;
  readonly text: string;
  readonly tokens: number;
  readonly protocol: string;
  readonly statsSource: string;
  /** In a grid of shipped files: what its budgets are (e.g. `target MiB of the GGUF file`). */
  readonly budgetLabel?: string;
}

/**
 * The Markdown report: the table, win/tie/loss against HQQ uniform and MXQ, and the headline, read by `metric`
 * (perplexity by default; `kld`: mean KLD from the float model, for cells of `experiment --kld`). Cells with KLD add
 * its columns to the table; a perplexity report of cells without KLD is what it always was.
 */
export function formatResultsMarkdown(rows: readonly ExperimentRow[], context: ReportContext, bootstrap: BootstrapOptions = {}, metric: ReportMetric = 'ppl'): string {
  const out: string[] = [];
  const kld = metric === 'kld';
  const withKld = rows.some((r) => r.kld);
  const name = kld ? 'mean KLD' : 'perplexity';
  const delta = kld ? 'ΔKLD' : 'Δppl';
  const digits = kld ? 5 : 3;
  out.push(`# layerquant experiment: ${context.model}`, '');
  out.push(`Perplexity on ${context.text} (${context.tokens.toLocaleString('en-US')} tokens, ${context.protocol}); statistics from ${context.statsSource}.`);
  if (withKld) out.push('KLD: the KL divergence of each cell\'s next-token distribution from the unquantized model\'s on the same tokens, per scored token (nats): mean, 99.9th percentile; same top: how often both rank the same token first.');
  if (kld) out.push('Read by mean KLD: the intervals, win/tie/loss and headline below compare mean KLD (paired bootstrap over the same windows).');
  out.push('Memory is that of the quantized linear matrices in the paper\'s accounting (8-bit scale and zero per group, fp16 meta per 128 groups); extra memory is against HQQ uniform at the same budget (at the highest stop below it for a budget between stops, where uniform and the boosts run at that stop).', '');
  const versusCell = (r: ExperimentRow, baseline: string): string => {
    const base = rows.find((x) => x.method === baseline && x.budget === r.budget);
    if (!base || r.method === baseline || r.budget === null) return '';
    const interval = rowInterval(r, base, bootstrap, metric);
    if (!interval) return `${fixed(metricValue(r, metric) - metricValue(base, metric), digits)} (no windows)`;
    const mark = verdict(interval) === 'better' ? ' **better**' : verdict(interval) === 'worse' ? ' worse' : '';
    return `${fixed(interval.difference, digits)} [${fixed(interval.low, digits)}, ${fixed(interval.high, digits)}]${mark}`;
  };
  const right = (header: string): Column => ({ header, align: 'right' });
  const kldColumns = withKld ? [right('mean KLD'), right('99.9% KLD'), right('same top')] : [];
  const withShipped = rows.some((r) => r.shipped);
  const shippedColumns = withShipped ? [right('MiB shipped'), right('bits/weight shipped')] : [];
  out.push(
    markdownTable(
      [right(context.budgetLabel ?? 'budget'), { header: 'method' }, { header: 'options' }, right('bits/weight (paper)'), right('MiB (paper)'), ...shippedColumns, right('extra memory'), right('perplexity'), ...kldColumns, right('vs HQQ'), right(`${delta} vs HQQ (95% CI)`), right(`${delta} vs MXQ (95% CI)`)],
      rows.map((r) => {
        const base = rows.find((x) => x.method === 'hqq' && x.budget === r.budget);
        const versus = base && r.method !== 'hqq' && r.budget !== null ? `${fixed((100 * (metricValue(r, metric) - metricValue(base, metric))) / metricValue(base, metric), 2)}%` : '';
        const kldCells = withKld ? [r.kld ? fixed(r.kld.mean, 5) : '-', r.kld ? fixed(r.kld.p999, 4) : '-', r.kld ? `${fixed(100 * r.kld.sameTop, 2)}%` : '-'] : [];
        const shippedCells = withShipped ? [r.shipped ? `${fixed(r.shipped.MiB, 3)} (${r.shipped.format})` : '-', r.shipped ? fixed(r.shipped.bitsPerWeight, 4) : '-'] : [];
        return [String(r.budget ?? '-'), r.method, r.options || '-', fixed(r.bpp, 4), fixed(r.memoryMB, 3), ...shippedCells, r.budget === null || !Number.isFinite(r.extraMemoryPercent) ? '-' : `${fixed(r.extraMemoryPercent, 2)}%`, fixed(r.ppl, 4), ...kldCells, versus, versusCell(r, 'hqq'), versusCell(r, 'mxq')];
      }),
    ).trimEnd(),
  );
  const methods = [...new Set(rows.map((r) => r.method))].filter((m) => m !== 'fp' && m !== 'hqq' && m !== 'mxq');
  const comparisons = methods.flatMap((m) => [compareMethods(rows, m, 'hqq', bootstrap, metric), compareMethods(rows, m, 'mxq', bootstrap, metric)]).filter((c): c is Comparison => c !== undefined);
  const resamples = bootstrap.resamples ?? 2000;
  if (comparisons.length > 0) {
    out.push(
      '',
      `## Win / tie / loss (paired bootstrap over the ${rows.find((r) => r.windowNll)?.windowNll?.length ?? 0} evaluation windows, ${resamples} resamples, seed ${bootstrap.seed ?? 42}: a win or loss only when the 95% interval of the ${kld ? 'mean-KLD' : 'perplexity'} difference excludes 0)`,
      '',
    );
    out.push(
      markdownTable(
        [{ header: 'method' }, { header: 'against' }, { header: 'wins', align: 'right' }, { header: 'ties', align: 'right' }, { header: 'losses', align: 'right' }, { header: 'no windows', align: 'right' }, { header: kld ? 'mean KLD change' : 'mean perplexity change', align: 'right' }],
        comparisons.map((c) => [c.method, c.baseline === 'hqq' ? 'HQQ uniform' : 'MXQ', String(c.wins), String(c.ties), String(c.losses), String(c.undecided), `${fixed(c.meanChangePercent, 2)}%`]),
      ).trimEnd(),
    );
  }
  const best = headline(rows, bootstrap, metric);
  out.push('', '## Headline', '');
  if (best) {
    out.push(
      `${best.row.method} at ${best.row.budget} bits: ${name} ${fixed(metricValue(best.row, metric), kld ? 5 : 4)} against ${fixed(metricValue(best.baseline, metric), kld ? 5 : 4)} for HQQ uniform, ` +
        `${fixed(best.gainPercent, 2)}% lower (difference ${fixed(best.interval.difference, digits)}, 95% interval [${fixed(best.interval.low, digits)}, ${fixed(best.interval.high, digits)}]), ` +
        `for ${fixed(best.row.extraMemoryPercent, 2)}% more memory (${fixed(best.row.bpp, 4)} vs ${fixed(best.baseline.bpp, 4)} bits per weight).`,
    );
  } else if (!rows.some((r) => r.method === 'hqq')) {
    out.push('No HQQ uniform cells in this grid to compare with (a grid of shipped files runs the allocators that spend the file\'s bytes); the table and the comparisons against MXQ above compare its cells.');
  } else {
    out.push(`No method beat HQQ uniform with a 95% interval of the ${kld ? 'mean-KLD' : 'perplexity'} difference below 0 at any budget evaluated.`);
  }
  return `${out.join('\n')}\n`;
}

export interface Column {
  readonly header: string;
  readonly align?: 'left' | 'right';
}

/** The same columns as a Markdown table (results.md): a header, the alignment row, one line per row. */
export function markdownTable(columns: readonly Column[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return `${[line(columns.map((c) => c.header)), line(columns.map((c) => (c.align === 'right' ? '---:' : '---'))), ...rows.map((r) => line(columns.map((_, i) => r[i] ?? '')))].join('\n')}\n`;
}

