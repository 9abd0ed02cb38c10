import type { QuantConfig, Quantizer, WeightTensor } from '@layerquant/core';
import { assembleQuantized, isKernelQuantizer, prepareGroups, type KernelPool } from '@layerquant/quantizers';

/**
 * Dequantized weights of one matrix under one config, on the pool's worker threads when it can run the quantizer
 * (its WebAssembly kernel; results bit-identical to the calling thread's), else in the calling thread.
 */
export async function dequantizedWith(quantizer: Quantizer, weight: WeightTensor, config: QuantConfig, pool: KernelPool | undefined): Promise<Float32Array> {
  if (pool && isKernelQuantizer(quantizer) && config.groupSize % 4 === 0) {
    const { layout, grouped } = prepareGroups(weight, config);
    const result = await pool.run({ grouped, groupSize: layout.groupSize, bits: config.bits, roundZero: config.roundZero, solver: quantizer.kernelSolver });
    return quantizer.dequantize(assembleQuantized(quantizer.id, weight, config, layout, result.codes, result.scale, result.zero));
  }
  return quantizer.dequantize(quantizer.quantize(weight, config));
}
