import {
  InvalidOptionError,
  LINEAR_MODULES,
  ShapeMismatchError,
  matrixKey,
  matrixOfTensorName,
  unitOfTensorName,
  type DType,
  type MatrixKey,
  type QuantConfig,
  type QuantizeContext,
  type QuantizedTensor,
  type Quantizer,
  type UnitModule,
  type WeightTensor,
} from '@layerquant/core';
import { groupLayout } from './grouping.js';
import type { KernelPool } from './kernel-worker-pool.js';
import { assembleQuantized, isKernelQuantizer, prepareGroups, squaredError } from './quantizers.js';
import { solverForConfig } from './hqq-proximal.js';
import { isPooledQuantizer } from './gptq.js';
import { checkScaleDtype, encodeScaleZero, type StoredScaleZero } from './scale-storage.js';
import type { ScaleDtype } from './checkpoint-format.js';

// The model-level quantization loop without files: which tensors are units and with which config, and each unit
// quantized (calibrated in layer order, ahead on a worker pool where one is given) and stored as its scale dtype
// stores it. quantizeModel streams it into a checkpoint; the notebook's worker runs it on the weights it holds.
// Browser-safe: a pool (Node worker threads) is only ever passed in.

/** One unit of a checkpoint (a linear matrix, or with `embeddingUnits` embed_tokens / lm_head), as configFor sees it. */
export interface ModelMatrix {
  readonly key: MatrixKey;
  readonly name: string;
  readonly layer: number;
  readonly module: UnitModule;
  readonly shape: readonly [number, number];
}

/**
 * The statistics a calibrated quantizer (`quantizer.calibration`) reads, served in quantization order: the loop asks
 * for a matrix's context right before quantizing it and reports every matrix back (its dequantized weights as stored,
 * or null where it stays float), so a matrix's statistics can be collected with the matrices before it already
 * quantized (GPTQ's sequential order). @layerquant/sensitivity's `createSequentialCalibration` is the layer pass that
 * serves Hessians this way.
 */
export interface MatrixCalibration {
  /** What the quantizer gets beside the weight; may wait until earlier matrices are `done`. */
  context(matrix: ModelMatrix): Promise<QuantizeContext>;
  /** The matrix's weights as the quantized model will hold them (dequantized, as stored), or null: kept in float. */
  done(matrix: ModelMatrix, weights: Float32Array | null): void;
}

/** What a unit is to become: its config, or null (it stays float, as stored). */
export interface UnitPlan {
  readonly matrix: ModelMatrix;
  readonly config: QuantConfig | null;
  /** The dtype the checkpoint stores it in. */
  readonly dtype: DType;
}

/** A tensor as a checkpoint lists it. */
export interface TensorEntry {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/**
 * The units of a checkpoint's tensors (linear matrices; with `embeddingUnits` embed_tokens and an untied lm_head too),
 * in the tensors' order, each with its config from `configFor`. Every config is checked against the matrix's shape
 * (groupLayout) here, before anything is read; a unit that is not 2-D is a ShapeMismatchError.
 */
export function planUnits(
  tensors: readonly TensorEntry[],
  configFor: (key: MatrixKey, matrix: ModelMatrix) => QuantConfig | null,
  options: { readonly embeddingUnits?: boolean } = {},
): Map<string, UnitPlan> {
  const plans = new Map<string, UnitPlan>();
  for (const info of tensors) {
    const parsed = options.embeddingUnits ? unitOfTensorName(info.name) : matrixOfTensorName(info.name);
    if (!parsed) continue;
    if (info.shape.length !== 2) throw new ShapeMismatchError(info.name, `has shape [${info.shape.join(', ')}]; a linear weight must be 2-D`);
    const matrix: ModelMatrix = Object.freeze({
      key: matrixKey(parsed.layer, parsed.module),
      name: info.name,
      layer: parsed.layer,
      module: parsed.module,
      shape: [info.shape[0]!, info.shape[1]!] as const,
    });
    const config = configFor(matrix.key, matrix);
    if (config) groupLayout(info.name, matrix.shape, config);
    plans.set(info.name, Object.freeze({ matrix, config, dtype: info.dtype }));
  }
  return plans;
}

/**
 * The order a calibrated quantizer needs: decoder layers in order, q, k, v, o, gate, up, down within a layer; names
 * outside the layers (the embedding units, other tensors) first, in their order. Stable otherwise.
 */
export function layerOrder<T>(items: readonly T[], nameOf: (item: T) => string): T[] {
  const key = (name: string): [number, number] => {
    const layer = /^model\.layers\.(\d+)\./.exec(name);
    if (!layer) return [-1, -1];
    const module = LINEAR_MODULES.findIndex((m) => name.startsWith(`model.layers.${layer[1]}.${m}.`));
    return [Number(layer[1]), module];
  };
  const keyed = items.map((item, index) => ({ item, index, key: key(nameOf(item)) }));
  keyed.sort((a, b) => a.key[0] - b.key[0] || a.key[1] - b.key[1] || a.index - b.index);
  return keyed.map((k) => k.item);
}

/** A calibrated quantizer without its statistics is refused before any work, with the flag that gives them. */
export function checkCalibration(quantizer: Quantizer, calibration: MatrixCalibration | undefined): void {
  if (quantizer.calibration !== undefined && calibration === undefined) {
    throw new InvalidOptionError('calib', `quantizer "${quantizer.id}" is calibrated (it needs each matrix's input ${quantizer.calibration}); give calibration text with --calib <file>`);
  }
}

/** A unit the loop has finished: quantized (its stored form, dequantized weights and error) or kept in float. */
export type FinishedUnit =
  | { readonly plan: UnitPlan; readonly quantized: null }
  | {
      readonly plan: UnitPlan & { readonly config: QuantConfig };
      readonly weight: WeightTensor;
      /** The quantizer's result with scale and zero as `scaleDtype` stores them (what the file is read back as). */
      readonly quantized: QuantizedTensor;
      readonly stored: StoredScaleZero;
      /** The weights as the quantized model holds them (what later calibrated matrices see). */
      readonly dequantized: Float32Array;
      /** sum (dequantized - weight)^2. */
      readonly sqErr: number;
      /** Time in quantize() (with a pool, matrices overlap). */
      readonly seconds: number;
    };

export interface QuantizeUnitsOptions {
  /** The units, yielded in this order (a checkpoint's), in layer order when calibrated. */
  readonly plans: ReadonlyMap<string, UnitPlan>;
  /** A unit's weights (F32 data), read when its quantization starts. */
  readonly read: (name: string) => Promise<WeightTensor>;
  readonly quantizer: Quantizer;
  /** Statistics for a calibrated quantizer (required when `quantizer.calibration` is set). */
  readonly calibration?: MatrixCalibration;
  /** How scales and zeros are stored (default F32); they are rounded to it before the error is measured. */
  readonly scaleDtype?: ScaleDtype;
  /** Worker threads (Node's createKernelPool) for the built-in kernels; units are then quantized `size + 1` ahead. */
  readonly pool?: KernelPool;
}

/**
 * Every planned unit, in the plans' order (layer order with a calibrated quantizer), quantized with its config or reported kept in float. A calibrated quantizer's
 * context is asked for when a unit starts (in order; a sequential calibration refuses one asked out of order), and
 * every unit is reported back to the calibration (`done`), the float ones when they are reached. With a pool, up to
 * `pool.size + 1` units are read and quantized ahead of the one yielded; results are bit-identical either way.
 */
export async function* quantizeUnits(options: QuantizeUnitsOptions): AsyncGenerator<FinishedUnit, void, undefined> {
  const { plans, quantizer, calibration, pool } = options;
  const scaleDtype = checkScaleDtype(options.scaleDtype ?? 'F32');
  checkCalibration(quantizer, calibration);
  const order = calibration ? layerOrder([...plans.keys()], (name) => name) : [...plans.keys()];

  const start = (name: string): Promise<FinishedUnit> => {
    const plan = plans.get(name)!;
    const { matrix, config } = plan;
    if (!config) {
      calibration?.done(matrix, null);
      return Promise.resolve({ plan, quantized: null });
    }
    const task = (async (): Promise<FinishedUnit> => {
      // The context is asked for now, in the order the units start (layer order), not once the read is done: reads
      // run side by side and finish in any order, and a later layer's context waits for the matrices of this one.
      const asked = calibration ? Promise.resolve(calibration.context(matrix)) : undefined;
      asked?.catch(() => undefined); // awaited below, after the read
      const weight = await options.read(name);
      const context = await asked;
      const t0 = performance.now();
      let solved: QuantizedTensor;
      if (pool && isKernelQuantizer(quantizer) && config.groupSize % 4 === 0 && !config.symmetric) {
        const { layout, grouped } = prepareGroups(weight, config);
        const result = await pool.run({ grouped, groupSize: layout.groupSize, bits: config.bits, roundZero: config.roundZero, solver: solverForConfig(quantizer.kernelSolver, config) });
        solved = assembleQuantized(quantizer.id, weight, config, layout, result.codes, result.scale, result.zero);
      } else if (pool && isPooledQuantizer(quantizer)) {
        // GPTQ's column loops on the workers: q/k/v (and gate/up) run side by side; the Hessian's factorization is
        // split over this thread and the workers (pool.choleskyThreads)
        solved = await quantizer.quantizeOn((problem) => pool.runGptq(problem), weight, config, context, pool.choleskyThreads);
      } else {
        solved = quantizer.quantize(weight, config, context);
      }
      const seconds = (performance.now() - t0) / 1000;
      // Stored as F16 or U8: the scale and zero the file will be read back as are the ones the error is measured
      // with, and the weights later matrices are calibrated on.
      const stored = encodeScaleZero(name, solved.scale, solved.zero, scaleDtype);
      const quantized: QuantizedTensor = { ...solved, scale: stored.scale, zero: stored.zero };
      const dequantized = quantizer.dequantize(quantized);
      calibration?.done(matrix, dequantized);
      return { plan: plan as UnitPlan & { config: QuantConfig }, weight, quantized, stored, dequantized, sqErr: squaredError(dequantized, weight.data), seconds };
    })();
    task.catch(() => undefined); // awaited in order below; avoid an unhandled rejection while queued
    return task;
  };

  const ahead = pool ? pool.size + 1 : 1;
  const started = new Map<number, Promise<FinishedUnit>>();
  let next = 0;
  for (let i = 0; i < order.length; i++) {
    while (next < order.length && next < i + ahead) started.set(next, start(order[next++]!));
    const unit = await started.get(i)!;
    started.delete(i);
    yield unit;
  }
}
