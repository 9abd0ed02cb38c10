import { formatCsv } from '@layerquant/allocators';
import { pairedBootstrap, verdict, type BootstrapOptions, type PairedInterval } from '@layerquant/perplexity';

export { pairedBootstrap, verdict, type BootstrapOptions, type PairedInterval } from '@layerquant/perplexity';

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
  return formatCsv(
    RESULT_COLUMNS,
    rows.map((r) => [r.model, r.method, r.options, finiteOrNull(r.budget), finiteOrNull(r.bpp), finiteOrNull(r.memoryMB), finiteOrNull(r.packedBytes / 2 ** 20), finiteOrNull(r.extraMemoryPercent), finiteOrNull(r.ppl), finiteOrNull(r.seconds)]),
  );
}

/** Windows of a row, or undefined when the row has none stored (results of an older run). */
function windowsOf(row: ExperimentRow): { nll: readonly number[]; weights: readonly number[] } | undefined {
  return row.windowNll && row.windowWeights && row.windowNll.length > 0 && row.windowNll.length === row.windowWeights.length
    ? { nll: row.windowNll, weights: row.windowWeights }
    : undefined;
}

/** The paired interval of two rows, or undefined when either lacks per-window NLL or their windows differ. */
export function rowInterval(row: ExperimentRow, baseline: ExperimentRow, options: BootstrapOptions = {}): PairedInterval | undefined {
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
  /** Mean relative perplexity change against the baseline, percent (negative = better). */
  readonly meanChangePercent: number;
}

/**
 * Win/tie/loss of `method` against `baseline` over the budgets where both were evaluated: a win or a loss only
 * when the paired bootstrap interval over windows excludes 0.
 */
export function compareMethods(rows: readonly ExperimentRow[], method: string, baseline: string, options: BootstrapOptions = {}): Comparison | undefined {
  let wins = 0;
  let ties = 0;
  let losses = 0;
  let undecided = 0;
  let sum = 0;
  for (const r of rows.filter((x) => x.method === method)) {
    const base = rows.find((x) => x.method === baseline && x.budget === r.budget);
    if (!base) continue;
    sum += (r.ppl - base.ppl) / base.ppl;
    const interval = rowInterval(r, base, options);
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
  /** Perplexity reduction against HQQ uniform at the same budget, percent (positive = better). */
  readonly gainPercent: number;
  /** The paired interval of the perplexity difference (method - HQQ uniform). */
  readonly interval: PairedInterval;
}

/**
 * The best perplexity gain over HQQ uniform at the same budget among rows whose paired bootstrap interval lies
 * wholly below 0 (never a tie); among gains within a tenth of the best, the one with the least extra memory.
 */
export function headline(rows: readonly ExperimentRow[], options: BootstrapOptions = {}): Headline | undefined {
  const candidates: Headline[] = [];
  for (const row of rows) {
    if (row.method === 'hqq' || row.method === 'fp' || row.method === 'mxq' || row.method.startsWith('ablation')) continue;
    const baseline = rows.find((x) => x.method === 'hqq' && x.budget === row.budget);
    if (!baseline) continue;
    const interval = rowInterval(row, baseline, options);
    if (!interval || verdict(interval) !== 'better') continue;
    candidates.push({ row, baseline, gainPercent: (100 * (baseline.ppl - row.ppl)) / baseline.ppl, interval });
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
}

/** The Markdown report: the table, win/tie/loss against HQQ uniform and MXQ, and the headline. */
export function formatResultsMarkdown(rows: readonly ExperimentRow[], context: ReportContext, bootstrap: BootstrapOptions = {}): string {
  const out: string[] = [];
  out.push(`# layerquant experiment: ${context.model}`, '');
  out.push(`Perplexity on ${context.text} (${context.tokens.toLocaleString('en-US')} tokens, ${context.protocol}); statistics from ${context.statsSource}.`);
  out.push('Memory is that of the quantized linear matrices in the paper\'s accounting (8-bit scale and zero per group, fp16 meta per 128 groups); extra memory is against HQQ uniform at the same budget (at the highest stop below it for a budget between stops, where uniform and the boosts run at that stop).', '');
  const versusCell = (r: ExperimentRow, baseline: string): string => {
    const base = rows.find((x) => x.method === baseline && x.budget === r.budget);
    if (!base || r.method === baseline || r.budget === null) return '';
    const interval = rowInterval(r, base, bootstrap);
    if (!interval) return `${fixed(r.ppl - base.ppl, 3)} (no windows)`;
    const mark = verdict(interval) === 'better' ? ' **better**' : verdict(interval) === 'worse' ? ' worse' : '';
    return `${fixed(interval.difference, 3)} [${fixed(interval.low, 3)}, ${fixed(interval.high, 3)}]${mark}`;
  };
  const right = (header: string): Column => ({ header, align: 'right' });
  out.push(
    markdownTable(
      [right('budget'), { header: 'method' }, { header: 'options' }, right('bits/weight (paper)'), right('MiB (paper)'), right('extra memory'), right('perplexity'), right('vs HQQ'), right('Δppl vs HQQ (95% CI)'), right('Δppl vs MXQ (95% CI)')],
      rows.map((r) => {
        const base = rows.find((x) => x.method === 'hqq' && x.budget === r.budget);
        const versus = base && r.method !== 'hqq' && r.budget !== null ? `${fixed((100 * (r.ppl - base.ppl)) / base.ppl, 2)}%` : '';
        return [String(r.budget ?? '-'), r.method, r.options || '-', fixed(r.bpp, 4), fixed(r.memoryMB, 3), r.budget === null ? '-' : `${fixed(r.extraMemoryPercent, 2)}%`, fixed(r.ppl, 4), versus, versusCell(r, 'hqq'), versusCell(r, 'mxq')];
      }),
    ).trimEnd(),
  );
  const methods = [...new Set(rows.map((r) => r.method))].filter((m) => m !== 'fp' && m !== 'hqq' && m !== 'mxq');
  const comparisons = methods.flatMap((m) => [compareMethods(rows, m, 'hqq', bootstrap), compareMethods(rows, m, 'mxq', bootstrap)]).filter((c): c is Comparison => c !== undefined);
  const resamples = bootstrap.resamples ?? 2000;
  if (comparisons.length > 0) {
    out.push(
      '',
      `## Win / tie / loss (paired bootstrap over the ${rows.find((r) => r.windowNll)?.windowNll?.length ?? 0} evaluation windows, ${resamples} resamples, seed ${bootstrap.seed ?? 42}: a win or loss only when the 95% interval of the perplexity difference excludes 0)`,
      '',
    );
    out.push(
      markdownTable(
        [{ header: 'method' }, { header: 'against' }, { header: 'wins', align: 'right' }, { header: 'ties', align: 'right' }, { header: 'losses', align: 'right' }, { header: 'no windows', align: 'right' }, { header: 'mean perplexity change', align: 'right' }],
        comparisons.map((c) => [c.method, c.baseline === 'hqq' ? 'HQQ uniform' : 'MXQ', String(c.wins), String(c.ties), String(c.losses), String(c.undecided), `${fixed(c.meanChangePercent, 2)}%`]),
      ).trimEnd(),
    );
  }
  const best = headline(rows, bootstrap);
  out.push('', '## Headline', '');
  if (best) {
    out.push(
      `${best.row.method} at ${best.row.budget} bits: perplexity ${fixed(best.row.ppl, 4)} against ${fixed(best.baseline.ppl, 4)} for HQQ uniform, ` +
        `${fixed(best.gainPercent, 2)}% lower (difference ${fixed(best.interval.difference, 3)}, 95% interval [${fixed(best.interval.low, 3)}, ${fixed(best.interval.high, 3)}]), ` +
        `for ${fixed(best.row.extraMemoryPercent, 2)}% more memory (${fixed(best.row.bpp, 4)} vs ${fixed(best.baseline.bpp, 4)} bits per weight).`,
    );
  } else {
    out.push('No method beat HQQ uniform with a 95% interval of the perplexity difference below 0 at any budget evaluated.');
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

