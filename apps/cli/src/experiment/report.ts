/** One evaluated cell of the experiment. */
export interface ExperimentRow {
  readonly model: string;
  /** `fp` (the unquantized model), `hqq`, `mxq`, `sensiboost-2-1`, ... */
  readonly method: string;
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
  'bpp',
  'MB',
  'packed_bytes',
  'extra_memory_percent',
  'perplexity',
  'seconds',
] as const);

function csvField(value: string | number | null): string {
  if (value === null) return '';
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function formatResultsCsv(rows: readonly ExperimentRow[]): string {
  const lines = [RESULT_COLUMNS.join(',')];
  for (const r of rows) {
    lines.push(
      [r.model, r.method, r.options, r.budget, r.bpp, r.memoryMB, r.packedBytes, r.extraMemoryPercent, r.ppl, r.seconds].map(csvField).join(','),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Relative perplexity differences under this are a tie (noise of the protocol, not a real difference). */
export const TIE_TOLERANCE = 0.001;

export interface Comparison {
  readonly method: string;
  readonly baseline: string;
  readonly wins: number;
  readonly ties: number;
  readonly losses: number;
  /** Mean relative perplexity change against the baseline, percent (negative = better). */
  readonly meanChangePercent: number;
}

/** Win/tie/loss of `method` against `baseline` over the budgets where both were evaluated. */
export function compareMethods(rows: readonly ExperimentRow[], method: string, baseline: string): Comparison | undefined {
  let wins = 0;
  let ties = 0;
  let losses = 0;
  let sum = 0;
  for (const r of rows.filter((x) => x.method === method)) {
    const base = rows.find((x) => x.method === baseline && x.budget === r.budget);
    if (!base) continue;
    const change = (r.ppl - base.ppl) / base.ppl;
    sum += change;
    if (change < -TIE_TOLERANCE) wins++;
    else if (change > TIE_TOLERANCE) losses++;
    else ties++;
  }
  const n = wins + ties + losses;
  if (n === 0) return undefined;
  return { method, baseline, wins, ties, losses, meanChangePercent: (100 * sum) / n };
}

export interface Headline {
  readonly row: ExperimentRow;
  readonly baseline: ExperimentRow;
  /** Perplexity reduction against HQQ uniform at the same budget, percent (positive = better). */
  readonly gainPercent: number;
}

/**
 * The best perplexity gain over HQQ uniform at the same budget; among gains within a tenth of the best, the one
 * with the least extra memory.
 */
export function headline(rows: readonly ExperimentRow[]): Headline | undefined {
  const candidates: Headline[] = [];
  for (const row of rows) {
    if (row.method === 'hqq' || row.method === 'fp' || row.method === 'mxq' || row.method.startsWith('ablation')) continue;
    const baseline = rows.find((x) => x.method === 'hqq' && x.budget === row.budget);
    if (!baseline) continue;
    const gainPercent = (100 * (baseline.ppl - row.ppl)) / baseline.ppl;
    if (gainPercent > 100 * TIE_TOLERANCE) candidates.push({ row, baseline, gainPercent });
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
export function formatResultsMarkdown(rows: readonly ExperimentRow[], context: ReportContext): string {
  const out: string[] = [];
  out.push(`# layerquant experiment: ${context.model}`, '');
  out.push(`Perplexity on ${context.text} (${context.tokens.toLocaleString('en-US')} tokens, ${context.protocol}); statistics from ${context.statsSource}.`);
  out.push('Memory is that of the quantized linear matrices in the paper\'s accounting (8-bit scale and zero per group, fp16 meta per 128 groups); extra memory is against HQQ uniform at the same budget.', '');
  out.push('| budget | method | options | bpp | MB | extra memory | perplexity | vs HQQ |');
  out.push('| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    const base = rows.find((x) => x.method === 'hqq' && x.budget === r.budget);
    const versus = base && r.method !== 'hqq' && r.budget !== null ? `${fixed((100 * (r.ppl - base.ppl)) / base.ppl, 2)}%` : '';
    out.push(
      `| ${r.budget ?? '-'} | ${r.method} | ${r.options || '-'} | ${fixed(r.bpp, 4)} | ${fixed(r.memoryMB, 3)} | ${r.budget === null ? '-' : `${fixed(r.extraMemoryPercent, 2)}%`} | ${fixed(r.ppl, 4)} | ${versus} |`,
    );
  }
  const methods = [...new Set(rows.map((r) => r.method))].filter((m) => m !== 'fp' && m !== 'hqq' && m !== 'mxq');
  const comparisons = methods.flatMap((m) => [compareMethods(rows, m, 'hqq'), compareMethods(rows, m, 'mxq')]).filter((c): c is Comparison => c !== undefined);
  if (comparisons.length > 0) {
    out.push('', `## Win / tie / loss (a tie is a perplexity difference under ${(100 * TIE_TOLERANCE).toFixed(1)}%)`, '');
    out.push('| method | against | wins | ties | losses | mean perplexity change |');
    out.push('| --- | --- | ---: | ---: | ---: | ---: |');
    for (const c of comparisons) out.push(`| ${c.method} | ${c.baseline === 'hqq' ? 'HQQ uniform' : 'MXQ'} | ${c.wins} | ${c.ties} | ${c.losses} | ${fixed(c.meanChangePercent, 2)}% |`);
  }
  const best = headline(rows);
  out.push('', '## Headline', '');
  if (best) {
    out.push(
      `${best.row.method} at ${best.row.budget} bits: perplexity ${fixed(best.row.ppl, 4)} against ${fixed(best.baseline.ppl, 4)} for HQQ uniform, ` +
        `${fixed(best.gainPercent, 2)}% lower, for ${fixed(best.row.extraMemoryPercent, 2)}% more memory (${fixed(best.row.bpp, 4)} vs ${fixed(best.baseline.bpp, 4)} bits per weight).`,
    );
  } else {
    out.push('No boost method beat HQQ uniform by more than the tie tolerance at any budget evaluated.');
  }
  return `${out.join('\n')}\n`;
}
