import type { ModelStats } from '@layerquant/allocators';
import { InvalidDataError, LayerquantError, type QuantConfig } from '@layerquant/core';
import type { CellResult, CellSpec } from '@layerquant/experiment';
import { MissingPluginError, measureTables, quantizerOf, type PluginRegistries, type QuantizerChoice, type StatisticsMeasure } from '@layerquant/pipeline';
import type { MetricPlugin } from '@layerquant/sensitivity';
import { loadTokenizer } from '@layerquant/tensor-io';
import { createHash } from 'node:crypto';

/**
 * The jobs of the experiment queue. Every job carries the content hash of the model it was planned on (a worker
 * with another model refuses it) and refers to texts and statistics by the sha256 of their bytes, stored once in
 * Redis as blobs: a worker needs read access to the model and to Redis, nothing else.
 */

export const QUEUE_NAME = 'layerquant-experiment';

/** Environment variables the worker's main thread sets for its processor threads (processor.ts). */
export const PROCESSOR_ENV = Object.freeze({ url: 'LAYERQUANT_QUEUE_URL', served: 'LAYERQUANT_WORKER_SERVED', threads: 'LAYERQUANT_WORKER_THREADS', plugins: 'LAYERQUANT_WORKER_PLUGINS' } as const);

export interface ModelRef {
  /** The model directory as the coordinator sees it (a worker may be given its own copy with --model). */
  readonly modelDir: string;
  readonly modelHash: string;
}

export interface CellJobData extends ModelRef {
  readonly cell: CellSpec;
  readonly modelName: string;
  readonly textBlob: string;
  readonly seqlen: number;
  readonly maxTokens: number | null;
  readonly seed: number;
  /** Blob of the statistics tables (statsToBlob: JSON of CSV texts); null for the fp cell. */
  readonly statsBlob: string | null;
  /** The config ladder the allocators choose from; null: the paper's 12. */
  readonly configs: readonly QuantConfig[] | null;
  /** The quantizer of every matrix (a built-in or a `--plugin` module's, which the worker must load too). */
  readonly quantizer: QuantizerChoice;
  /** Also the KL divergence from the unquantized model (`experiment --kld`; its base computed and cached by the worker). */
  readonly kld?: boolean;
  /**
   * A calibrated quantizer's layer pass (GPTQ, BAQ; method cells only): the calibration text by the sha256 of its
   * blob, its name, blocks and block length. The worker collects the Hessians itself on its served model, with the
   * call the in-process cell makes; the text is checked against the hash before it is used.
   */
  readonly calibration?: CellCalibration;
  /**
   * `experiment --refine`, on the cells of a method that corrects its allocation by measurement: the calibration the
   * correction measures on (the statistics' text, by its blob) and the quantizer the candidates are quantized with.
   * The worker opens the measurer on its served model (once per calibration and quantizer) with the in-process call.
   */
  readonly refine?: CellRefine;
}

export interface CellRefine {
  readonly calibration: CellCalibration;
  readonly quantizer: QuantizerChoice;
}

export interface CellCalibration {
  readonly blob: string;
  readonly name: string;
  readonly blocks: number;
  readonly seqlen: number;
}

/**
 * Statistics tables, measured by a worker with @layerquant/pipeline's `measureTables`, the call the in-process run
 * makes. Weight metrics are measured a layer per job (their rows concatenate); activation metrics (sensitivity,
 * measured) in one job over the whole model: layer i is measured on the float outputs of layer i - 1, so the layers
 * are a chain, and splitting it would ship every calibration block's hidden states through Redis.
 */
export interface StatisticsJobData extends ModelRef {
  /** Ids of the metric plug-ins (a worker finds them in its registry: built-ins and its --plugin modules). */
  readonly metrics: readonly string[];
  /** The layers of a weight-metric job; null for the whole model. */
  readonly layers: readonly number[] | null;
  /** The calibration text's blob (activation metrics), else null. */
  readonly calibrationBlob: string | null;
  readonly measure: StatisticsMeasure;
}

/**
 * What a statistics job returns: the full content hash of the model the worker read, and each table as its metric's
 * `format` writes it (CSV; the numbers round-trip exactly), by table name.
 */
export interface StatisticsJobResult {
  readonly modelHash: string;
  readonly tables: Readonly<Record<string, string>>;
}

/** What a cell job returns: the cell's result and the full content hash of the model the worker read. */
export interface CellJobResult extends CellResult {
  readonly modelHash: string;
}

export type JobResult = { readonly cell: CellJobResult; readonly statistics: StatisticsJobResult };

export type JobData = { readonly cell: CellJobData; readonly statistics: StatisticsJobData };
export type JobName = keyof JobData;

/** Job ids (BullMQ deduplicates by them: a job added twice exists once). */
export const jobIds = {
  cell: (key: string) => `cell-${key}`,
  statistics: (statsKey: string, metrics: readonly string[], layers: readonly number[] | null) => `statistics-${statsKey}-${metrics.join('+')}-${layers === null ? 'all' : layers.join('.')}`,
};

export function sha256Hex(content: string): string {
  return createHash('sha256').update(content).digest('hex');
}

/** The Redis key of a blob. */
export function blobKey(hash: string): string {
  return `layerquant:blob:${hash}`;
}

/** The metric of each table (the registry's); a table none fills cannot travel. */
function metricOf(metrics: readonly MetricPlugin[], table: string): MetricPlugin & Required<Pick<MetricPlugin, 'format' | 'parse'>> {
  const metric = metrics.find((m) => m.table === table);
  if (!metric?.format || !metric.parse) throw new InvalidDataError(`table ${table}`, `no metric of this process formats and parses it, so it cannot travel through the queue; give the metric plug-in format() and parse()`);
  return metric as MetricPlugin & Required<Pick<MetricPlugin, 'format' | 'parse'>>;
}

/** Tables through their metrics' CSV (the numbers round-trip exactly), by table name. */
export function formatTables(tables: Readonly<Record<string, unknown>>, metrics: readonly MetricPlugin[]): Record<string, string> {
  return Object.fromEntries(Object.entries(tables).map(([table, value]) => [table, metricOf(metrics, table).format(value)]));
}

export function parseTables(texts: Readonly<Record<string, string>>, metrics: readonly MetricPlugin[], source: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(texts).map(([table, text]) => [table, metricOf(metrics, table).parse(text, `${source} ${table}`)]));
}

/** Statistics as one blob: every table through its metric's CSV, and the matrix list of a grid that reads no table. */
export function statsToBlob(stats: ModelStats, metrics: readonly MetricPlugin[]): string {
  const { source: _source, matrices, ...tables } = stats;
  return JSON.stringify({ tables: formatTables(Object.fromEntries(Object.entries(tables).filter(([, v]) => v !== undefined)), metrics), ...(matrices ? { matrices } : {}) });
}

export function statsFromBlob(blob: string, source: string, metrics: readonly MetricPlugin[]): ModelStats {
  const parsed = JSON.parse(blob) as { tables: Record<string, string>; matrices?: ModelStats['matrices'] };
  return { source, ...parseTables(parsed.tables, metrics, source), ...(parsed.matrices ? { matrices: parsed.matrices } : {}) };
}

/** A job planned on another model than the worker can read. */
export class ModelMismatchError extends LayerquantError {
  constructor(modelDir: string, expected: string, actual: string) {
    super(
      'MODEL_MISMATCH',
      `${modelDir}: this worker's model has content hash ${actual.slice(0, 16)}, the job was planned on ${expected.slice(0, 16)}; point the worker at a copy of the coordinator's model with --model <dir>`,
    );
  }
}

/**
 * A blob the coordinator publishes is missing, or its content is not the bytes of its hash (Redis was restarted
 * without persistence, or the key was edited): retried once the coordinator published it again.
 */
export class MissingBlobError extends LayerquantError {
  constructor(hash: string, what?: string) {
    super('QUEUE_BLOB_MISSING', `${what ? `${what} (blob ${hash.slice(0, 16)})` : `blob ${hash.slice(0, 16)}`} is not in Redis with that content hash (was Redis restarted, or the key edited?); the coordinator publishes it again and the job is retried`);
  }
}

/** The model a worker reads for a job (model-access.ts' resolveJobModel): a directory it serves, and its full hash. */
export interface ServedModel {
  readonly dir: string;
  readonly hash: string;
}

/** What a job processor gets from the worker. */
export interface JobEnvironment {
  /** A blob's content, checked against its hash; `what` names it in the error when it is missing. */
  blob(hash: string, what?: string): Promise<string>;
  /** The worker's registries: built-ins and its --plugin modules. */
  plugins(): Promise<PluginRegistries>;
  /** onnxruntime threads of this worker (default: one per core). */
  readonly threads?: number;
  computeCell(data: CellJobData, modelDir: string): Promise<CellResult>;
  log(line: string): void;
}

export interface JobProcessor<N extends JobName> {
  readonly name: N;
  process(data: JobData[N], model: ServedModel, env: JobEnvironment): Promise<JobResult[N]>;
}

const cellProcessor: JobProcessor<'cell'> = {
  name: 'cell',
  async process(data, model, env) {
    return { ...(await env.computeCell(data, model.dir)), modelHash: model.hash };
  },
};

const statisticsProcessor: JobProcessor<'statistics'> = {
  name: 'statistics',
  async process(data, model, env): Promise<StatisticsJobResult> {
    const dir = model.dir;
    const registry = (await env.plugins()).metrics;
    const metrics = data.metrics.map((id) => {
      if (!registry.has(id)) throw new MissingPluginError('metric', id, registry.ids());
      return registry.get(id);
    });
    // The quantizer the tables are measured with (GPTQ statistics), from this worker's registries.
    const quantizer = data.measure.quantizer ? quantizerOf(await env.plugins(), data.measure.quantizer) : undefined;
    const tables = await measureTables(dir, metrics, {
      ...data.measure,
      ...(quantizer ? { resolvedQuantizer: quantizer } : {}),
      ...(data.calibrationBlob ? { calibrationText: await env.blob(data.calibrationBlob) } : {}),
      ...(data.layers ? { layers: data.layers } : {}),
      ...(env.threads ? { threads: env.threads } : {}),
    });
    return { modelHash: model.hash, tables: formatTables(tables, metrics) };
  },
};

/** The processors a worker runs, by job name. */
export const JOB_PROCESSORS: { readonly [N in JobName]: JobProcessor<N> } = Object.freeze({
  cell: cellProcessor,
  statistics: statisticsProcessor,
});

/** Token ids of a text under a model's tokenizer, cached per (model dir, text hash). */
const idsCache = new Map<string, number[]>();
export async function tokenIds(modelDir: string, textHash: string, text: string): Promise<number[]> {
  const key = `${modelDir}\0${textHash}`;
  let ids = idsCache.get(key);
  if (!ids) {
    ids = (await loadTokenizer(modelDir)).encode(text);
    idsCache.set(key, ids);
  }
  return ids;
}
