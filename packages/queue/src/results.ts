import { LayerquantError } from '@layerquant/core';
import type { CellResult, ExperimentRow } from '@layerquant/experiment';
import { windowPlan } from '@layerquant/perplexity';
import { printable } from './job-schema.js';

/**
 * The coordinator's check of every result a worker hands back, against the job it planned: a result is input from
 * Redis like a job. Same key, the full content hash of the planned model, the expected shape (the rows of the
 * planned windows, the planned tables and layers), every number finite and in range, and the perplexity equal to
 * the one its windows give. A result that fails is a typed error naming the job and the field: never a recorded row.
 * What this cannot catch: a forged result that is consistent in every field (results are not signed), so whoever
 * can write to Redis can still deny service or forge a plausible number; not read outside a worker's models.
 */

/** A worker's result that does not match the job the coordinator planned. */
export class QueueResultError extends LayerquantError {
  constructor(
    readonly jobId: string,
    readonly field: string,
    problem: string,
  ) {
    super('QUEUE_RESULT_INVALID', `job ${printable(jobId)}: result ${field} ${problem}; it is not recorded (the job is removed from the queue, so the next run computes it again)`);
  }
}

/** A statistics table's CSV larger than this is refused unread. */
const MAX_TABLE_CHARS = 64 * 2 ** 20;

function record(jobId: string, value: unknown, field: string, fields: readonly string[], optional: readonly string[] = []): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new QueueResultError(jobId, field, `must be an object, not ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
  const out = value as Record<string, unknown>;
  for (const key of Object.keys(out)) if (!fields.includes(key)) throw new QueueResultError(jobId, `${field}.${printable(key, 40)}`, 'is not a field of this result');
  for (const key of fields) if (!(key in out) && !optional.includes(key)) throw new QueueResultError(jobId, `${field}.${key}`, 'is missing');
  return out;
}

function number(jobId: string, value: unknown, field: string, min: number, max = Number.MAX_VALUE): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new QueueResultError(jobId, field, `must be a finite number, not ${value === null ? 'null (NaN or infinite in JSON)' : typeof value === 'string' ? `the string "${printable(value, 40)}"` : String(value)}`);
  if (value < min || value > max) throw new QueueResultError(jobId, field, `${value} is outside ${min} to ${max}`);
  return value;
}

function same(jobId: string, value: unknown, expected: unknown, field: string): void {
  if (value !== expected) throw new QueueResultError(jobId, field, `is ${typeof value === 'string' ? `"${printable(value, 70)}"` : String(value)}, the job planned ${typeof expected === 'string' ? `"${printable(expected, 70)}"` : String(expected)}`);
}

/** What the coordinator planned for a cell job. */
export interface PlannedCell {
  readonly jobId: string;
  readonly key: string;
  readonly modelHash: string;
  readonly modelName: string;
  /** `fp`, or the method's id. */
  readonly method: string;
  readonly budget: number | null;
  /** The quantizer's id (method cells). */
  readonly quantizer: string | null;
  /** Token ids of the text and the window settings: the windows a result must have. */
  readonly tokens: number;
  readonly seqlen: number;
  /** experiment --kld: the row must carry its KL divergence from the unquantized model (and must not otherwise). */
  readonly kld?: boolean;
  /** experiment --refine, a refining method's cell: the row must say what the correction did (and must not otherwise). */
  readonly refine?: boolean;
}

const KLD_FIELDS = ['mean', 'error', 'median', 'p99', 'p999', 'max', 'sameTop', 'sameTopError', 'rmsDeltaP', 'pplRatio', 'pplRatioError'] as const;

const ROW_FIELDS = ['model', 'method', 'quantizer', 'options', 'budget', 'bpp', 'memoryMB', 'packedBytes', 'extraMemoryPercent', 'ppl', 'seconds', 'windowNll', 'windowWeights', 'kld', 'windowKld', 'windowKldCount', 'refinement'] as const;
const REFINEMENT_FIELDS = ['additiveKld', 'refinedKld', 'kept', 'heldOut', 'changed', 'measured', 'stopped'] as const;

/** A cell job's result checked against its plan: the CellResult to record, or a QueueResultError. */
export function checkCellResult(planned: PlannedCell, value: unknown): CellResult {
  const id = planned.jobId;
  const result = record(id, value, 'value', ['key', 'row', 'modelHash']);
  same(id, result.key, planned.key, 'key');
  same(id, result.modelHash, planned.modelHash, 'modelHash (the content hash of the model the worker read)');
  const row = record(id, result.row, 'row', ROW_FIELDS, ['quantizer', 'kld', 'windowKld', 'windowKldCount', 'refinement']);
  same(id, row.model, planned.modelName, 'row.model');
  same(id, row.method, planned.method, 'row.method');
  same(id, row.budget, planned.budget, 'row.budget');
  same(id, row.quantizer, planned.quantizer ?? undefined, 'row.quantizer');
  if (typeof row.options !== 'string' || row.options.length > 1000) throw new QueueResultError(id, 'row.options', 'must be text of at most 1000 characters');
  number(id, row.bpp, 'row.bpp', Number.MIN_VALUE, 64);
  number(id, row.memoryMB, 'row.memoryMB', Number.MIN_VALUE);
  number(id, row.packedBytes, 'row.packedBytes', 1);
  number(id, row.seconds, 'row.seconds', 0);
  // No uniform baseline (the fp row): NaN, which JSON carries as null.
  if (row.extraMemoryPercent !== null) number(id, row.extraMemoryPercent, 'row.extraMemoryPercent', -100);
  const ppl = number(id, row.ppl, 'row.ppl', 1);
  const plan = windowPlan(planned.tokens, { seqlen: planned.seqlen });
  for (const field of ['windowNll', 'windowWeights'] as const) {
    const values = row[field];
    if (!Array.isArray(values) || values.length !== plan.windows.length) {
      throw new QueueResultError(id, `row.${field}`, `must hold one number per window (${plan.windows.length} windows of ${planned.seqlen} tokens), not ${Array.isArray(values) ? values.length : typeof values}`);
    }
    values.forEach((v, i) => number(id, v, `row.${field}[${i}]`, 0));
  }
  (row.windowWeights as number[]).forEach((w, i) => same(id, w, plan.windows[i]!.weight, `row.windowWeights[${i}]`));
  // ppl = exp(sum of the windows' weighted NLL / divisor), summed in window order as perplexity() does.
  const fromWindows = Math.exp((row.windowNll as number[]).reduce((s, v) => s + v, 0) / plan.divisor);
  if (Math.abs(ppl - fromWindows) > 1e-9 * fromWindows) throw new QueueResultError(id, 'row.ppl', `${ppl} is not the perplexity of its windows (${fromWindows})`);
  checkCellKld(id, row, planned.kld === true, plan.windows.map((w) => w.end - w.scoreFrom));
  checkCellRefinement(id, row, planned.refine === true);
  return { key: planned.key, row: row as unknown as ExperimentRow };
}

/**
 * The KL divergence of a cell (experiment --kld): present exactly when planned; every statistic finite, the KLDs
 * and same top in range, one window sum per window over its scored tokens, and the mean equal to those sums'.
 */
function checkCellKld(id: string, row: Record<string, unknown>, planned: boolean, scored: readonly number[]): void {
  if (!planned) {
    for (const field of ['kld', 'windowKld', 'windowKldCount']) if (field in row) throw new QueueResultError(id, `row.${field}`, 'is not a field of this result (the grid did not ask for KLD)');
    return;
  }
  const kld = record(id, row.kld, 'row.kld', KLD_FIELDS);
  for (const field of KLD_FIELDS) number(id, kld[field], `row.kld.${field}`, field === 'pplRatio' ? Number.MIN_VALUE : 0, field === 'sameTop' || field === 'sameTopError' ? 1 : Number.MAX_VALUE);
  const counts = row.windowKldCount;
  const sums = row.windowKld;
  if (!Array.isArray(counts) || !Array.isArray(sums) || counts.length !== scored.length || sums.length !== scored.length) {
    throw new QueueResultError(id, 'row.windowKld', `must hold one sum and one count per window (${scored.length} windows)`);
  }
  counts.forEach((c, i) => same(id, c, scored[i], `row.windowKldCount[${i}]`));
  sums.forEach((v, i) => number(id, v, `row.windowKld[${i}]`, 0));
  const mean = (sums as number[]).reduce((a, b) => a + b, 0) / scored.reduce((a, b) => a + b, 0);
  if (Math.abs(mean - (kld.mean as number)) > 1e-9 * Math.max(mean, 1e-12) + 1e-15) throw new QueueResultError(id, 'row.kld.mean', `${String(kld.mean)} is not the mean KLD of its windows (${mean})`);
}

/**
 * What a refined cell's correction did (experiment --refine): present exactly when planned; the measured KLDs finite
 * and not negative, the kept allocation the refined one only where its KLD is not higher, counts whole numbers.
 */
function checkCellRefinement(id: string, row: Record<string, unknown>, planned: boolean): void {
  if (!planned) {
    if ('refinement' in row) throw new QueueResultError(id, 'row.refinement', 'is not a field of this result (the grid did not ask this cell to refine)');
    return;
  }
  const r = record(id, row.refinement, 'row.refinement', REFINEMENT_FIELDS);
  const additive = number(id, r.additiveKld, 'row.refinement.additiveKld', 0);
  const refined = number(id, r.refinedKld, 'row.refinement.refinedKld', 0);
  if (r.kept !== 'refined' && r.kept !== 'additive') throw new QueueResultError(id, 'row.refinement.kept', 'must be "refined" or "additive"');
  if (r.kept === 'refined' && refined > additive) throw new QueueResultError(id, 'row.refinement.kept', `is "refined" with a higher measured KLD (${refined}) than the additive allocation's (${additive})`);
  if (r.heldOut !== null) {
    const held = record(id, r.heldOut, 'row.refinement.heldOut', ['blocks', 'additiveKld', 'refinedKld']);
    if (!Number.isSafeInteger(held.blocks) || (held.blocks as number) < 1) throw new QueueResultError(id, 'row.refinement.heldOut.blocks', 'must be a whole number of blocks, at least 1');
    const heldAdditive = number(id, held.additiveKld, 'row.refinement.heldOut.additiveKld', 0);
    const heldRefined = number(id, held.refinedKld, 'row.refinement.heldOut.refinedKld', 0);
    if (r.kept === 'refined' && heldRefined > heldAdditive) throw new QueueResultError(id, 'row.refinement.kept', `is "refined" with a higher KLD on the held-out blocks (${heldRefined}) than the additive allocation's (${heldAdditive})`);
  }
  for (const field of ['changed', 'measured'] as const) {
    if (!Number.isSafeInteger(r[field]) || (r[field] as number) < 0) throw new QueueResultError(id, `row.refinement.${field}`, 'must be a whole number');
  }
  if (r.stopped !== null && (typeof r.stopped !== 'string' || r.stopped.length > 100)) throw new QueueResultError(id, 'row.refinement.stopped', 'must be null or text of at most 100 characters');
}

/** What the coordinator planned for a statistics job. */
export interface PlannedStatistics {
  readonly jobId: string;
  readonly modelHash: string;
  /** The tables its metrics fill. */
  readonly tables: readonly string[];
}

/** A statistics job's result checked against its plan: the tables' CSV texts by table name, or a QueueResultError. */
export function checkStatisticsResult(planned: PlannedStatistics, value: unknown): Record<string, string> {
  const id = planned.jobId;
  const result = record(id, value, 'value', ['modelHash', 'tables']);
  same(id, result.modelHash, planned.modelHash, 'modelHash (the content hash of the model the worker read)');
  const tables = record(id, result.tables, 'tables', planned.tables);
  for (const table of planned.tables) {
    const text = tables[table];
    if (typeof text !== 'string' || text.length > MAX_TABLE_CHARS) throw new QueueResultError(id, `tables.${table}`, `must be CSV text of at most ${MAX_TABLE_CHARS} characters`);
  }
  return tables as Record<string, string>;
}

/**
 * The layers of a parsed table's rows (a table of `{ rows }` whose rows name a `layer`; embedding rows, layer -1,
 * and tables of another shape are not checked here) against the layers the job was for: every row in one of them,
 * and, for a job of given layers, every one of them present.
 */
export function checkTableLayers(jobId: string, table: string, parsed: unknown, layers: readonly number[], everyLayer: boolean): void {
  const rows = (parsed as { rows?: unknown } | undefined)?.rows;
  if (!Array.isArray(rows)) return;
  if (everyLayer && rows.length === 0) throw new QueueResultError(jobId, `tables.${table}`, `has no rows for the job's layers (${layers.join(', ')})`);
  const seen = new Set<number>();
  for (const [i, row] of rows.entries()) {
    const layer = (row as { layer?: unknown } | null)?.layer;
    if (typeof layer !== 'number' || layer < 0) continue;
    if (!layers.includes(layer)) throw new QueueResultError(jobId, `tables.${table} row ${i + 1}`, `is for layer ${layer}, not one of the job's layers (${layers.join(', ')})`);
    seen.add(layer);
  }
  if (everyLayer && seen.size > 0) {
    const missing = layers.filter((l) => !seen.has(l));
    if (missing.length > 0) throw new QueueResultError(jobId, `tables.${table}`, `has no rows for layer ${missing.join(', ')} of the job`);
  }
}
