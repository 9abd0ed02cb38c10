import { InvalidDataError, type QuantConfig, type QuantizedTensor, type Quantizer, type WeightTensor } from '@layerquant/core';
import { asymmetricMinMaxInit, dequantizeGroups, roundToCodes } from './asymmetric-init.js';
import { PACKING, packCodes, unpackCodes, wordsPerRow } from './bit-packing.js';
import { groupLayout, groupedValues, matrixShape, ungroupValues, type GroupLayout } from './grouping.js';
import { createWasmKernel, typescriptKernel, type HqqKernel } from './hqq-kernel.js';
import { proximalOptions, type ProximalOptions } from './hqq-proximal.js';

/** Group-major codes with their per-group scale and zero, before packing. */
interface GroupedQuantization {
  readonly codes: Uint8Array;
  readonly scale: Float32Array;
  readonly zero: Float32Array;
}

function quantizeWith(
  method: string,
  weight: WeightTensor,
  config: QuantConfig,
  solve: (grouped: Float32Array, layout: GroupLayout, result: GroupedQuantization) => void,
): QuantizedTensor {
  const shape = matrixShape(weight);
  const layout = groupLayout(weight.name, shape, config);
  const grouped = groupedValues(weight.data, layout);
  const result: GroupedQuantization = {
    codes: new Uint8Array(grouped.length),
    scale: new Float32Array(layout.groupCount),
    zero: new Float32Array(layout.groupCount),
  };
  asymmetricMinMaxInit(grouped, layout.groupSize, config.bits, config.roundZero, result.scale, result.zero);
  solve(grouped, layout, result);
  const codes = ungroupValues(result.codes, layout);
  return Object.freeze({
    name: weight.name,
    shape,
    config,
    method,
    packed: packCodes(codes, shape[0], shape[1], config.bits),
    packing: PACKING,
    scale: result.scale,
    zero: result.zero,
  });
}

/** Unpacks the codes of a QuantizedTensor (row-major), checking every length against its shape and config. */
export function unpackQuantizedCodes(quantized: QuantizedTensor): Uint8Array {
  const [rows, columns] = quantized.shape;
  const { bits, groupSize } = quantized.config;
  if (quantized.packing !== PACKING) {
    throw new InvalidDataError(quantized.name, `packing "${quantized.packing}" is not supported; expected "${PACKING}"`);
  }
  const groups = (rows * columns) / groupSize;
  if (quantized.scale.length !== groups || quantized.zero.length !== groups) {
    throw new InvalidDataError(quantized.name, `has ${quantized.scale.length} scales and ${quantized.zero.length} zeros; a [${rows}, ${columns}] matrix in groups of ${groupSize} needs ${groups}`);
  }
  if (quantized.packed.length !== rows * wordsPerRow(columns, bits)) {
    throw new InvalidDataError(quantized.name, `has ${quantized.packed.length} packed words; [${rows}, ${columns}] at ${bits} bits needs ${rows * wordsPerRow(columns, bits)}`);
  }
  return unpackCodes(quantized.packed, rows, columns, bits);
}

/** `(Wq - z) / s` of a QuantizedTensor, row-major float32 (same for every method). */
export function dequantizeTensor(quantized: QuantizedTensor): Float32Array {
  const codes = unpackQuantizedCodes(quantized);
  const layout = groupLayout(quantized.name, quantized.shape, quantized.config);
  const grouped = groupedValues(codes, layout);
  const values = new Float32Array(codes.length);
  dequantizeGroups(grouped, layout.groupSize, quantized.scale, quantized.zero, values);
  return ungroupValues(values, layout);
}

/** Round to nearest: the asymmetric min/max init, then `clamp(round(W*s + z), 0, 2^b - 1)`. */
export const rtnQuantizer: Quantizer = Object.freeze({
  id: 'rtn',
  quantize(weight: WeightTensor, config: QuantConfig): QuantizedTensor {
    return quantizeWith('rtn', weight, config, (grouped, layout, result) =>
      roundToCodes(grouped, layout.groupSize, config.bits, result.scale, result.zero, result.codes),
    );
  },
  dequantize: dequantizeTensor,
});

export interface HqqQuantizerOptions {
  /** Solver settings; defaults are upstream HQQ's (p = 0.7, beta = 10, kappa off, 20 iterations). */
  readonly solver?: Partial<ProximalOptions>;
  /** `auto` (default): WebAssembly SIMD where available and the group size is a multiple of 4, else TypeScript. */
  readonly kernel?: 'auto' | 'typescript' | 'wasm';
}

export interface HqqQuantizer extends Quantizer {
  readonly id: 'hqq';
  readonly solver: ProximalOptions;
}

/** The authors' fork (schnell18/hqq) multiplies beta by 1.01 after each zero update. */
export const FORK_SOLVER_OPTIONS: Partial<ProximalOptions> = Object.freeze({ kappa: 1.01 });

/**
 * HQQ (half-quadratic quantization): RTN's init, then the proximal solver updates the zero point of every group
 * (the scale is never updated). Stateless; the WebAssembly kernel it creates lazily only holds scratch memory.
 */
export function createHqqQuantizer(options: HqqQuantizerOptions = {}): HqqQuantizer {
  const solver = proximalOptions(options.solver);
  const choice = options.kernel ?? 'auto';
  let wasm: HqqKernel | undefined;
  const kernelFor = (groupSize: number): HqqKernel => {
    if (choice === 'typescript') return typescriptKernel;
    wasm ??= createWasmKernel();
    if (wasm && wasm.supports(groupSize)) return wasm;
    if (choice === 'wasm') {
      throw new InvalidDataError('hqq kernel', wasm ? `the WebAssembly kernel needs a group size that is a multiple of 4, not ${groupSize}` : 'WebAssembly SIMD is not available in this runtime; use kernel "auto" or "typescript"');
    }
    return typescriptKernel;
  };
  return Object.freeze({
    id: 'hqq' as const,
    solver,
    quantize(weight: WeightTensor, config: QuantConfig): QuantizedTensor {
      return quantizeWith('hqq', weight, config, (grouped, layout, result) => {
        kernelFor(layout.groupSize).solve(grouped, layout.groupSize, config.bits, result.scale, result.zero, solver, result.codes);
      });
    },
    dequantize: dequantizeTensor,
  });
}

/** HQQ with upstream defaults. */
export const hqqQuantizer: HqqQuantizer = createHqqQuantizer();

/** Sum of squared differences, in float64. */
export function squaredError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new RangeError(`squaredError: lengths ${a.length} and ${b.length} differ`);
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    sum += d * d;
  }
  return sum;
}
