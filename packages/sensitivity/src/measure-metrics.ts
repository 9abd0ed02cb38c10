import { basename, join, resolve } from 'node:path';
import { InvalidOptionError, LayerquantError, checkContextLength, matrixOfTensorName, type QuantConfig, type Quantizer } from '@layerquant/core';
import { createKernelPool, defaultWorkerCount, type KernelPool } from '@layerquant/quantizers/node';
import { loadDecoderBlocks, type DecoderBlocks } from '@layerquant/runtime';
import { tableFile } from '@layerquant/stats';
import { loadTokenizer, openModel, writeFileSet, writeTextAtomic } from '@layerquant/tensor-io';
import { DEFAULT_SEQLEN, calibrationBlocks, type CalibrationBlocks, type CalibrationOrder } from './calibration.js';
import { listMatrices, type MatrixSource } from './frobenius-table.js';
import { createSequentialCalibration } from './hessians.js';
import { QuantizationErrors } from './pooled-quantize.js';
import type { MetricPlugin, MetricRunOptions } from './metrics.js';

/**
 * Measures any list of metric plug-ins (an app's registry: the built-ins and `--plugin` modules') on a model
 * directory: weight metrics read the checkpoint, activation metrics share one loaded set of decoder blocks and the
 * calibration blocks, each metric's `measure` gets its input and the run's settings (MetricRunOptions). Nothing
 * here knows a metric by id.
 */

export interface MeasureMetricsOptions {
  /** Calibration text (needed when an activation metric is measured) and its name. */
  readonly calibrationText?: string;
  readonly calibrationName: string;
  readonly blocks?: number;
  readonly seqlen?: number;
  readonly order?: CalibrationOrder;
  readonly seed?: number;
  readonly configs?: readonly QuantConfig[];
  readonly sensitivityConfigs?: readonly QuantConfig[];
  /** The embedding units per-config tables cover too, each at its own ladder (a shipped format's allocation). */
  readonly embeddingConfigs?: MetricRunOptions['embeddingConfigs'];
  readonly quantizer?: Quantizer;
  /** onnxruntime intra-op threads. */
  readonly threads?: number;
  /** Worker threads for every quantization, the activation metrics' and the weight metrics' (default: one per core; 1 = the calling thread). */
  readonly workers?: number;
  /** Name in tables that record the model (default: the directory name). */
  readonly modelName?: string;
  readonly allowLongContext?: boolean;
  /**
   * Weight metrics read only these layers' linear matrices (a queue job measures a layer at a time; rows of the
   * layers concatenate to the whole table). Activation metrics run the model whole and refuse it.
   */
  readonly layers?: readonly number[];
  /** Called before each metric starts, with what it will go through (to say the cost up front). */
  readonly onPlan?: (plan: MetricPlan) => void;
  readonly onProgress?: (metric: MetricPlugin, done: number, total: number) => void;
}

/** What a metric of measureMetrics is about to go through: the weights matrix by matrix, or the model layer by layer. */
export interface MetricPlan {
  readonly metric: MetricPlugin;
  readonly layers: number;
  readonly matrices: number;
  /** Calibration of an activation metric. */
  readonly blocks?: number;
  readonly seqlen?: number;
}

export interface MetricResults {
  /** The measured tables by table name, in the order measured. */
  readonly tables: Readonly<Record<string, unknown>>;
  /** Seconds per metric id. */
  readonly seconds: Readonly<Record<string, number>>;
  /** Calibration actually used (null when no activation metric ran). */
  readonly blocks: number | null;
  readonly seqlen: number | null;
}

/** A metric whose table cannot be written (a plug-in without `format`). */
export class MetricFormatError extends LayerquantError {
  constructor(metric: MetricPlugin) {
    super('METRIC_FORMAT', `metric "${metric.id}" has no format(table): its ${metric.table} table cannot be written; give the plug-in a format function returning CSV text`);
  }
}

export async function measureMetrics(modelDir: string, metrics: readonly MetricPlugin[], options: MeasureMetricsOptions): Promise<MetricResults> {
  const tables: Record<string, unknown> = {};
  const seconds: Record<string, number> = {};
  const seen = new Set<string>();
  for (const m of metrics) {
    if (seen.has(m.table)) throw new InvalidOptionError('metrics', `two metrics fill the table "${m.table}" (${metrics.filter((x) => x.table === m.table).map((x) => x.id).join(', ')}); choose one`);
    seen.add(m.table);
  }
  const activations = metrics.filter((m) => m.input === 'activations');
  const weights = metrics.filter((m) => m.input === 'weights');
  if (options.layers && activations.length > 0) {
    throw new InvalidOptionError('layers', `metrics ${activations.map((m) => m.id).join(', ')} run the model layer after layer and are measured whole, not for some layers`);
  }
  // config.json checked against the tensors (the one validation every command runs) before any long step.
  const { config, checkpoint } = await openModel(modelDir);
  let blocks: number | null = null;
  let seqlen: number | null = null;
  const workers = options.workers ?? defaultWorkerCount();
  if (!Number.isInteger(workers) || workers < 1) throw new InvalidOptionError('workers', `${workers} must be a positive integer`);
  // One pool of kernel workers for the run's quantizations, and the errors they measured: a metric that quantized
  // a matrix records its error, and fnorm does not quantize it again at that config.
  const pool: KernelPool | undefined = metrics.length > 0 && workers > 1 ? createKernelPool(workers) : undefined;
  try {
    const common: MetricRunOptions = {
      ...(pool ? { pool } : {}),
      errors: new QuantizationErrors(),
      ...(options.configs ? { configs: options.configs } : {}),
      ...(options.sensitivityConfigs ? { sensitivityConfigs: options.sensitivityConfigs } : {}),
      ...(options.embeddingConfigs ? { embeddingConfigs: options.embeddingConfigs } : {}),
      ...(options.quantizer ? { quantizer: options.quantizer } : {}),
      dataset: options.calibrationName,
      model: options.modelName ?? basename(resolve(modelDir)),
    };
    const matrices = listMatrices(checkpoint).length;
    const run = async (metric: MetricPlugin, input: unknown, extra: Partial<MetricRunOptions> = {}) => {
      options.onPlan?.({ metric, layers: config.numLayers, matrices, ...(blocks === null || seqlen === null || metric.input === 'weights' ? {} : { blocks, seqlen }) });
      const started = performance.now();
      tables[metric.table] = await metric.measure(input, { ...common, ...extra, tables: { ...tables }, onProgress: (done: number, total: number) => options.onProgress?.(metric, done, total) });
      seconds[metric.id] = (performance.now() - started) / 1000;
    };
    // A calibrated quantizer (GPTQ) needs each matrix's input Hessian: the weight metrics that quantize then read the
    // calibration blocks too, through a layer pass with float inputs.
    const calibrated = options.quantizer?.calibration !== undefined && weights.length > 0;
    if (calibrated && options.layers) {
      throw new InvalidOptionError('layers', `metrics ${weights.map((m) => m.id).join(', ')} quantize with the calibrated quantizer "${options.quantizer!.id}" in one layer pass over the model, and are measured whole, not for some layers`);
    }
    if (activations.length > 0 || calibrated) {
      checkContextLength(options.seqlen ?? DEFAULT_SEQLEN, config, '--seqlen', options.allowLongContext === true);
      const needing = [...activations, ...(calibrated ? weights : [])];
      if (options.calibrationText === undefined) throw new InvalidOptionError('calibration', `metrics ${needing.map((m) => m.id).join(', ')} ${activations.length > 0 ? 'run the model' : `quantize with the calibrated quantizer "${options.quantizer!.id}"`} and need a calibration text`);
      const tokenizer = await loadTokenizer(modelDir);
      const calibration: CalibrationBlocks = calibrationBlocks(options.calibrationText, tokenizer, {
        source: options.calibrationName,
        ...(options.blocks === undefined ? {} : { blocks: options.blocks }),
        ...(options.seqlen === undefined ? {} : { seqlen: options.seqlen }),
        ...(options.order === undefined ? {} : { order: options.order }),
        ...(options.seed === undefined ? {} : { seed: options.seed }),
      });
      blocks = calibration.blocks;
      seqlen = calibration.seqlen;
      const model: DecoderBlocks = await loadDecoderBlocks(checkpoint, config, options.threads ? { threads: options.threads } : {});
      try {
        for (const metric of activations) await run(metric, { model, calibration });
        if (calibrated) for (const metric of weights) await run(metric, checkpoint, { calibration: createSequentialCalibration(model, calibration) });
      } finally {
        await model.dispose();
      }
    }
    const source: MatrixSource = options.layers ? layersOf(checkpoint, options.layers) : checkpoint;
    if (!calibrated) for (const metric of weights) await run(metric, source);
  } finally {
    await pool?.close();
    await checkpoint.close();
  }
  return Object.freeze({ tables: Object.freeze(tables), seconds: Object.freeze(seconds), blocks, seqlen });
}

/** A checkpoint whose tensor list holds only the linear matrices of `layers` (reads still reach every tensor). */
function layersOf(checkpoint: MatrixSource & { readonly tensors: readonly { readonly name: string }[] }, layers: readonly number[]): MatrixSource {
  const wanted = new Set(layers);
  return {
    ...(checkpoint.dir === undefined ? {} : { dir: checkpoint.dir }),
    tensors: checkpoint.tensors.filter((t) => {
      const matrix = matrixOfTensorName(t.name);
      return matrix !== undefined && wanted.has(matrix.layer);
    }),
    has: (name) => checkpoint.has(name),
    read: (name) => checkpoint.read(name),
  };
}

/** The file a metric's table is written to: the authors' name for the built-in tables, else `<table>.csv`. */
export function metricFile(metric: MetricPlugin): string {
  return tableFile(metric.table);
}

/**
 * Writes the measured tables, each through its metric's `format`, all swapped in at once (tensor-io's
 * writeFileSet): never a new table beside one of an interrupted earlier run. Returns the paths written.
 */
export async function writeMetricTables(dir: string, metrics: readonly MetricPlugin[], tables: Readonly<Record<string, unknown>>): Promise<string[]> {
  const written = metrics.filter((m) => tables[m.table] !== undefined);
  for (const m of written) if (!m.format) throw new MetricFormatError(m);
  await writeFileSet(dir, async (staging) => {
    for (const m of written) await writeTextAtomic(join(staging, metricFile(m)), m.format!(tables[m.table]));
  });
  return written.map((m) => join(dir, metricFile(m)));
}
