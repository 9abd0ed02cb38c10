import type { QuantConfig, QuantizeContext, Quantizer, WeightTensor } from '@layerquant/core';
import { assembleQuantized, isKernelQuantizer, prepareGroups, solverForConfig, type KernelPool } from '@layerquant/quantizers';

/**
 * Dequantized weights of one matrix under one config, on the pool's worker threads when it can run the quantizer
 * (its WebAssembly kernel; results bit-identical to the calling thread's), else in the calling thread. `context`: the
 * statistics a calibrated quantizer needs (the matrix's input Hessian).
 */
export async function dequantizedWith(quantizer: Quantizer, weight: WeightTensor, config: QuantConfig, pool: KernelPool | undefined, context?: QuantizeContext): Promise<Float32Array> {
  if (pool && isKernelQuantizer(quantizer) && config.groupSize % 4 === 0 && !config.symmetric) {
    const { layout, grouped } = prepareGroups(weight, config);
    const result = await pool.run({ grouped, groupSize: layout.groupSize, bits: config.bits, roundZero: config.roundZero, solver: solverForConfig(quantizer.kernelSolver, config) });
    return quantizer.dequantize(assembleQuantized(quantizer.id, weight, config, layout, result.codes, result.scale, result.zero));
  }
  return quantizer.dequantize(quantizer.quantize(weight, config, context));
}

/**
 * The squared Frobenius errors ‖W - dequant(Q(W))‖² of the matrices a run has already quantized, by quantizer
 * object, config (bits, group, axis, zero rounding) and tensor name. A measurement that quantizes whole matrices
 * (activation sensitivity, measured) records them; the fnorm table takes a recorded error instead of quantizing
 * the matrix again. The same quantizer on the same weights gives the same codes, so the table is bit-identical
 * with or without it (tested); activation sensitivity's b4g64 pass thus saves the fnorm table its b4g64 column.
 */
export class QuantizationErrors {
  readonly #byQuantizer = new WeakMap<Quantizer, Map<string, number>>();

  static #key(tensor: string, config: QuantConfig): string {
    return `${config.bits}:${config.groupSize}:${config.axis}:${config.roundZero ? 1 : 0}|${tensor}`;
  }

  record(quantizer: Quantizer, tensor: string, config: QuantConfig, squaredError: number): void {
    let errors = this.#byQuantizer.get(quantizer);
    if (!errors) this.#byQuantizer.set(quantizer, (errors = new Map()));
    errors.set(QuantizationErrors.#key(tensor, config), squaredError);
  }

  get(quantizer: Quantizer, tensor: string, config: QuantConfig): number | undefined {
    return this.#byQuantizer.get(quantizer)?.get(QuantizationErrors.#key(tensor, config));
  }
}
