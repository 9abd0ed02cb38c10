// How the experiment shows itself: its plan before it runs, its rows in the --json schema, and the results table on
// a terminal (fitted to the width by the shared renderer; results.md keeps the Markdown).
import { formatSeconds } from '../progress.js';
import { renderTable, terminalColumns, type Sizes } from '../output.js';
import { rowInterval, verdict, type ExperimentRow, type PairedInterval, type ReportMetric } from '@layerquant/experiment';

/** A row as the --json schema has it: sizes in the shared form, `perplexity`, the paired interval against HQQ. */
export function experimentRowJson(row: ExperimentRow, rows: readonly ExperimentRow[]): Record<string, unknown> {
  const params = row.bpp > 0 ? (row.memoryMB * 2 ** 20 * 8) / row.bpp : 0;
  const size: Sizes = {
    params: Math.round(params),
    paperBitsPerWeight: row.bpp,
    paperMiB: row.memoryMB,
    diskBitsPerWeight: params > 0 ? (8 * row.packedBytes) / params : 0,
    diskMiB: row.packedBytes / 2 ** 20,
    // a grid of shipped files: the file the cell wrote and measured
    ...(row.shipped ? { shipped: row.shipped } : {}),
  };
  const base = rows.find((x) => x.method === 'hqq' && x.budget === row.budget);
  const interval = base && row.method !== 'hqq' && row.budget !== null ? rowInterval(row, base) : undefined;
  const kldInterval = base && row.kld && row.method !== 'hqq' && row.budget !== null ? rowInterval(row, base, {}, 'kld') : undefined;
  const described = (i: PairedInterval) => ({ difference: i.difference, low: i.low, high: i.high, level: i.level, verdict: verdict(i) });
  return {
    model: row.model,
    method: row.method,
    quantizer: row.quantizer ?? null,
    options: row.options,
    budget: row.budget,
    sizes: size,
    extraMemoryPercent: Number.isFinite(row.extraMemoryPercent) ? row.extraMemoryPercent : null,
    perplexity: row.ppl,
    versusHqq: interval ? described(interval) : null,
    // experiment --kld: the KL divergence from the unquantized model, and its mean's paired interval against HQQ.
    ...(row.kld ? { kld: row.kld, kldVersusHqq: kldInterval ? described(kldInterval) : null } : {}),
    // experiment --refine: the calibration KLD of the allocator's additive and corrected allocations, and which was used.
    ...(row.refinement ? { refinement: row.refinement } : {}),
    seconds: row.seconds,
  };
}

const fixed = (value: number, digits: number): string => (Number.isFinite(value) ? value.toFixed(digits) : '-');

/**
 * The results as a terminal table that fits `width` (each row a block of lines when it does not); with cells of
 * `--kld`, their mean and 99.9% KLD, and the interval against HQQ read by `metric`.
 */
export function formatResultsTable(rows: readonly ExperimentRow[], width: number = terminalColumns(), metric: ReportMetric = 'ppl'): string {
  const withKld = rows.some((r) => r.kld);
  const withShipped = rows.some((r) => r.shipped);
  const digits = metric === 'kld' ? 5 : 3;
  const table = rows.map((r) => {
    const base = rows.find((x) => x.method === 'hqq' && x.budget === r.budget);
    const interval = base && r.method !== 'hqq' && r.budget !== null ? rowInterval(r, base, {}, metric) : undefined;
    const versus = interval
      ? `${fixed(interval.difference, digits)} [${fixed(interval.low, digits)}, ${fixed(interval.high, digits)}]${verdict(interval) === 'better' ? ' better' : verdict(interval) === 'worse' ? ' worse' : ''}`
      : '';
    return [
      r.budget === null ? '-' : String(r.budget),
      r.method,
      r.options || '-',
      fixed(r.bpp, 4),
      fixed(r.memoryMB, 2),
      fixed(r.packedBytes / 2 ** 20, 2),
      ...(withShipped ? [r.shipped ? `${fixed(r.shipped.MiB, 3)} ${r.shipped.format}` : '-'] : []),
      r.budget === null || !Number.isFinite(r.extraMemoryPercent) ? '-' : `${fixed(r.extraMemoryPercent, 2)}%`,
      fixed(r.ppl, 4),
      ...(withKld ? [r.kld ? fixed(r.kld.mean, 5) : '-', r.kld ? fixed(r.kld.p999, 4) : '-'] : []),
      versus,
    ];
  });
  return renderTable(
    [
      { header: 'budget', align: 'right' },
      { header: 'method' },
      { header: 'options' },
      { header: 'bits/w paper', align: 'right' },
      { header: 'MiB paper', align: 'right' },
      { header: 'MiB disk', align: 'right' },
      ...(withShipped ? [{ header: 'MiB shipped', align: 'right' as const }] : []),
      { header: 'extra mem', align: 'right' },
      { header: 'perplexity', align: 'right' },
      ...(withKld ? [{ header: 'mean KLD', align: 'right' as const }, { header: '99.9% KLD', align: 'right' as const }] : []),
      { header: metric === 'kld' ? 'ΔKLD vs HQQ [95% CI]' : 'Δppl vs HQQ [95% CI]', align: 'right' },
    ],
    table,
    width,
  );
}

/**
 * Evaluation speed assumed where none is measured (no terminal: scripts, CI, --json): floating-point operations per
 * second of onnxruntime's forward pass (2 x params per token) on a shared 2-core machine. On a terminal the plan
 * measures the speed instead (measureEvaluationSpeed); this figure was 4x off on a loaded machine.
 */
export const NOMINAL_EVAL_FLOPS_PER_SECOND = 16e9;
/** HQQ on every linear matrix: 2.28 s for the shipped model's 22.0M linear weights (SPEC §5). */
export const QUANTIZE_SECONDS_PER_WEIGHT = 2.28 / 22.0e6;

export interface ExperimentPlan {
  readonly cells: number;
  /** Cells already in <out>/results.json (a resumed run). */
  readonly cellsDone: number;
  readonly windowsPerCell: number;
  readonly tokensPerCell: number;
  /** Evaluation speed measured on this machine just before the plan (one timed window), or null where none was measured. */
  readonly measuredTokensPerSecond: number | null;
  readonly estimatedSeconds: number;
}

/**
 * The grid's cost: per cell its windows at the measured evaluation speed (every cell evaluates the same windows of a
 * model of the same size; a quantized one is dequantized on load) plus HQQ over the linear weights.
 */
export function experimentPlan(input: { cells: number; cellsDone: number; tokens: number; seqlen: number; params: number; linearParams: number; tokensPerSecond?: number }): ExperimentPlan {
  const windowsPerCell = Math.floor(input.tokens / input.seqlen);
  const tokensPerCell = windowsPerCell * input.seqlen;
  const measured = input.tokensPerSecond !== undefined && Number.isFinite(input.tokensPerSecond) && input.tokensPerSecond > 0 ? input.tokensPerSecond : null;
  const evaluation = measured ? tokensPerCell / measured : (2 * input.params * tokensPerCell) / NOMINAL_EVAL_FLOPS_PER_SECOND;
  const perCell = evaluation + input.linearParams * QUANTIZE_SECONDS_PER_WEIGHT;
  return { cells: input.cells, cellsDone: input.cellsDone, windowsPerCell, tokensPerCell, measuredTokensPerSecond: measured, estimatedSeconds: (input.cells - input.cellsDone) * perCell };
}

export function formatPlan(plan: ExperimentPlan): string {
  const hours = plan.estimatedSeconds / 3600;
  const time = hours >= 1 ? `${hours.toFixed(1)} h` : formatSeconds(plan.estimatedSeconds);
  return (
    `plan: ${plan.cells} cells${plan.cellsDone ? ` (${plan.cellsDone} done in an earlier run)` : ''} x ${plan.windowsPerCell} windows ` +
    `(${plan.tokensPerCell.toLocaleString('en-US')} tokens each); estimated ${time}` +
    `${plan.measuredTokensPerSecond ? ` (evaluation measured here now: ${Math.round(plan.measuredTokensPerSecond).toLocaleString('en-US')} tokens/s)` : ' (at a nominal 2-core speed; measured on a terminal)'}, plus statistics when not cached\n`
  );
}
