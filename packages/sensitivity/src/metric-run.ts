import { InvalidOptionError, checkContextLength, matrixOfTensorName, type DecoderConfig, type QuantConfig, type Quantizer } from '@layerquant/core';
import type { KernelPool } from '@layerquant/quantizers';
import type { DecoderBlocks } from '@layerquant/runtime';
import { DEFAULT_SEQLEN, calibrationBlocks, type CalibrationBlocks, type CalibrationOrder } from './calibration.js';
import { listMatrices, type MatrixSource } from './frobenius-table.js';
import { createSequentialCalibration } from './hessians.js';
import { QuantizationErrors } from './pooled-quantize.js';
import type { MetricPlugin, MetricRunOptions } from './metrics.js';

/**
 * The one measurement of metric plug-ins (an app's registry: the built-ins and `--plugin` modules'), on a model given
 * as its parts, so a page that read the model itself runs what `layerquant sensitivity` runs: weight metrics read the
 * checkpoint, activation metrics share one loaded set of decoder blocks and the calibration blocks, each metric's
 * `measure` gets its input and the run's settings (MetricRunOptions). Nothing here knows a metric by id, reads a file
 * or starts a thread. Node's `measureMetrics` opens a model directory and calls this.
 */

/** The model a measurement runs on. */
export interface MetricModel {
  /** Name in tables that record the model. */
  readonly name: string;
  readonly config: DecoderConfig;
  /** The weights (what weight metrics read; the tensor list says which matrices there are). */
  readonly checkpoint: MatrixSource & { readonly tensors: readonly { readonly name: string }[] };
  /** Its tokenizer (asked for only when calibration text is tokenized). */
  tokenizer(): Promise<{ encode(text: string): number[] }>;
  /** Its decoder blocks on an onnxruntime backend (loaded only when an activation metric or a calibrated quantizer runs; disposed after). */
  loadBlocks(): Promise<DecoderBlocks>;
}

/** The calibration a measurement reads: its text (tokenized by the model's tokenizer), name, blocks and their order. */
export interface CalibrationSettings {
  /** Calibration text (needed when an activation metric is measured) and its name (sensitivity.csv's `dataset`). */
  readonly calibrationText?: string;
  readonly calibrationName: string;
  readonly blocks?: number;
  readonly seqlen?: number;
  readonly order?: CalibrationOrder;
  readonly seed?: number;
}

/** The settings of one measurement. */
export interface MetricsRunSettings extends CalibrationSettings {
  readonly configs?: readonly QuantConfig[];
  readonly sensitivityConfigs?: readonly QuantConfig[];
  /** The embedding units per-config tables cover too, each at its own ladder (a shipped format's allocation). */
  readonly embeddingConfigs?: MetricRunOptions['embeddingConfigs'];
  readonly moduleConfigs?: MetricRunOptions['moduleConfigs'];
  readonly quantizer?: Quantizer;
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

/** What a metric of a measurement is about to go through: the weights matrix by matrix, or the model layer by layer. */
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

/** The checks of a metric list that need no model: one metric per table, and no layer subset for activation metrics. */
export function checkMetricList(metrics: readonly MetricPlugin[], options: Pick<MetricsRunSettings, 'layers'>): void {
  const seen = new Set<string>();
  for (const m of metrics) {
    if (seen.has(m.table)) throw new InvalidOptionError('metrics', `two metrics fill the table "${m.table}" (${metrics.filter((x) => x.table === m.table).map((x) => x.id).join(', ')}); choose one`);
    seen.add(m.table);
  }
  const activations = metrics.filter((m) => m.input === 'activations');
  if (options.layers && activations.length > 0) {
    throw new InvalidOptionError('layers', `metrics ${activations.map((m) => m.id).join(', ')} run the model layer after layer and are measured whole, not for some layers`);
  }
}

/** Measures `metrics` on `model`; `pool` spreads the quantizations over worker threads (Node), bit-identical. */
export async function measureMetricsOn(
  model: MetricModel,
  metrics: readonly MetricPlugin[],
  options: MetricsRunSettings & { readonly pool?: KernelPool; readonly availableMemoryBytes?: number },
): Promise<MetricResults> {
  checkMetricList(metrics, options);
  const { config, checkpoint } = model;
  const tables: Record<string, unknown> = {};
  const seconds: Record<string, number> = {};
  const activations = metrics.filter((m) => m.input === 'activations');
  const weights = metrics.filter((m) => m.input === 'weights');
  let blocks: number | null = null;
  let seqlen: number | null = null;
  // The errors the run's metrics measured: a metric that quantized a matrix records its error, and fnorm does not
  // quantize it again at that config.
  const common: MetricRunOptions = {
    ...(options.pool ? { pool: options.pool } : {}),
    errors: new QuantizationErrors(),
    ...(options.configs ? { configs: options.configs } : {}),
    ...(options.sensitivityConfigs ? { sensitivityConfigs: options.sensitivityConfigs } : {}),
    ...(options.embeddingConfigs ? { embeddingConfigs: options.embeddingConfigs } : {}),
    ...(options.moduleConfigs ? { moduleConfigs: options.moduleConfigs } : {}),
    ...(options.quantizer ? { quantizer: options.quantizer } : {}),
    ...(options.availableMemoryBytes === undefined ? {} : { availableMemoryBytes: options.availableMemoryBytes }),
    dataset: options.calibrationName,
    model: model.name,
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
    const calibration: CalibrationBlocks = calibrationBlocks(options.calibrationText, await model.tokenizer(), {
      source: options.calibrationName,
      ...(options.blocks === undefined ? {} : { blocks: options.blocks }),
      ...(options.seqlen === undefined ? {} : { seqlen: options.seqlen }),
      ...(options.order === undefined ? {} : { order: options.order }),
      ...(options.seed === undefined ? {} : { seed: options.seed }),
    });
    blocks = calibration.blocks;
    seqlen = calibration.seqlen;
    const decoder = await model.loadBlocks();
    try {
      for (const metric of activations) await run(metric, { model: decoder, calibration });
      if (calibrated) for (const metric of weights) await run(metric, checkpoint, { calibration: createSequentialCalibration(decoder, calibration) });
    } finally {
      await decoder.dispose();
    }
  }
  const source: MatrixSource = options.layers ? layersOf(checkpoint, options.layers) : checkpoint;
  if (!calibrated) for (const metric of weights) await run(metric, source);
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

