import { InvalidDataError, InvalidOptionError, configName, type ZeroKind, type QuantConfig, type QuantizedTensor, type Quantizer, type WeightTensor } from '@layerquant/core';
import { PACKING, packCodes, unpackCodes, unpackColumnCodes, wordsPerRow } from './bit-packing.js';
import { groupLayout, groupedValues, matrixShape, ungroupValues, type GroupLayout } from './grouping.js';
import { createWasmKernel, typescriptKernel, type KernelChoice, type QuantKernel } from './quant-kernel.js';
import { proximalOptions, solverForConfig, type ProximalOptions } from './hqq-proximal.js';
import { symmetricQuantize } from './symmetric-rtn.js';

/** Picks the kernel for a group size; the WebAssembly instance is made on first use and kept (scratch memory only). */
function kernelPicker(choice: KernelChoice): (groupSize: number) => QuantKernel {
  let wasm: QuantKernel | undefined;
  return (groupSize) => {
    if (choice === 'typescript') return typescriptKernel;
    wasm ??= createWasmKernel();
    if (wasm && wasm.supports(groupSize)) return wasm;
    if (choice === 'wasm') {
      throw new InvalidOptionError(
        'kernel',
        wasm ? `the WebAssembly kernel needs a group size that is a multiple of 4, not ${groupSize}; use kernel "auto"` : 'WebAssembly SIMD is not available in this runtime; use kernel "auto" or "typescript"',
      );
    }
    return typescriptKernel;
  };
}

/** The group-major view of a weight under a config, validated. */
export function prepareGroups(weight: WeightTensor, config: QuantConfig): { shape: [number, number]; layout: GroupLayout; grouped: Float32Array } {
  const shape = matrixShape(weight);
  const layout = groupLayout(weight.name, shape, config);
  return { shape, layout, grouped: groupedValues(weight.data, layout) };
}

/** A QuantizedTensor from group-major codes, scales and zeros (packs the codes row by row). */
export function assembleQuantized(
  method: string,
  weight: WeightTensor,
  config: QuantConfig,
  layout: GroupLayout,
  codes: Uint8Array,
  scale: Float32Array,
  zero: Float32Array,
): QuantizedTensor {
  const shape: [number, number] = [layout.rows, layout.columns];
  return Object.freeze({
    name: weight.name,
    shape,
    config,
    method,
    packed: packCodes(ungroupValues(codes, layout), shape[0], shape[1], config.bits),
    packing: PACKING,
    scale,
    zero,
  });
}

/** Whether a kernel can write this matrix's codes packed (2/4/8 bits along rows, whole words per row). */
function packsDirectly(kernel: QuantKernel, layout: GroupLayout, bits: number): bits is 2 | 4 | 8 {
  return kernel.quantizePacked !== undefined && layout.axis === 1 && (bits === 2 || bits === 4 || bits === 8)
    && layout.columns % (32 / bits) === 0 && (layout.rows * layout.columns) % 16 === 0;
}

function quantizeWith(method: string, kernel: QuantKernel, weight: WeightTensor, config: QuantConfig, given: ProximalOptions | null): QuantizedTensor {
  const { layout, grouped } = prepareGroups(weight, config);
  const solver = solverForConfig(given, config);
  if (config.symmetric) {
    // HQQ's solver moves zero points; a symmetric config has none to move.
    if (solver) throw new InvalidOptionError('config', `${configName(config)} is symmetric (no zero point), and ${method} optimizes zero points; quantize symmetric configs with rtn`);
    const codes = new Uint8Array(grouped.length);
    const scale = new Float32Array(layout.groupCount);
    const zero = new Float32Array(layout.groupCount);
    symmetricQuantize(grouped, layout.groupSize, config.bits, scale, zero, codes);
    return assembleQuantized(method, weight, config, layout, codes, scale, zero);
  }
  if (packsDirectly(kernel, layout, config.bits)) {
    // One pass: the kernel writes the packed words itself (no byte codes handed back, no packing loop here).
    const scale = new Float32Array(layout.groupCount);
    const zero = new Float32Array(layout.groupCount);
    const packed = new Uint32Array(layout.rows * wordsPerRow(layout.columns, config.bits));
    kernel.quantizePacked!(grouped, layout.groupSize, config.bits, config.roundZero, solver, scale, zero, packed);
    return Object.freeze({ name: weight.name, shape: [layout.rows, layout.columns] as [number, number], config, method, packed, packing: PACKING, scale, zero });
  }
  const codes = new Uint8Array(grouped.length);
  const scale = new Float32Array(layout.groupCount);
  const zero = new Float32Array(layout.groupCount);
  kernel.quantize(grouped, layout.groupSize, config.bits, config.roundZero, solver, scale, zero, codes);
  return assembleQuantized(method, weight, config, layout, codes, scale, zero);
}

/**
 * A built-in quantizer whose numeric core can also run on a pool of WebAssembly workers (quantizeModel's
 * `workers` option): `kernelSolver` is HQQ's solver options, or null for RTN.
 */
export interface KernelQuantizer extends Quantizer {
  readonly kernelSolver: ProximalOptions | null;
}

export function isKernelQuantizer(quantizer: Quantizer): quantizer is KernelQuantizer {
  return 'kernelSolver' in quantizer && (quantizer as KernelQuantizer).kernelSolver !== undefined;
}

/** Unpacks the codes of a QuantizedTensor (row-major; per-column widths where it has them), checking every length against its shape and config. */
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
  // a width per column (BAQ): one bitstream per row in the same words
  if (quantized.columnBits) return unpackColumnCodes(quantized.packed, rows, columns, quantized.columnBits, wordsPerRow(columns, bits));
  return unpackCodes(quantized.packed, rows, columns, bits);
}

/** `(Wq - z) / s` of a QuantizedTensor, row-major float32 (same for every method). */
export function dequantizeTensor(quantized: QuantizedTensor, kernel: QuantKernel = typescriptKernel): Float32Array {
  const codes = unpackQuantizedCodes(quantized);
  const layout = groupLayout(quantized.name, quantized.shape, quantized.config);
  const values = new Float32Array(codes.length);
  const chosen = kernel.supports(layout.groupSize) ? kernel : typescriptKernel;
  chosen.dequantize(groupedValues(codes, layout), layout.groupSize, quantized.scale, quantized.zero, values);
  return ungroupValues(values, layout);
}

export interface QuantizerOptions {
  /** `auto` (default): WebAssembly SIMD where available and the group size is a multiple of 4, else TypeScript. */
  readonly kernel?: KernelChoice;
}

/**
 * Round to nearest: the asymmetric min/max init, then `clamp(round(W*s + z), 0, 2^b - 1)`; for a symmetric config
 * (`b4g32-sym`) onnxruntime's symmetric block rule (symmetric-rtn.ts).
 */
export function createRtnQuantizer(options: QuantizerOptions = {}): Quantizer {
  const kernelFor = kernelPicker(options.kernel ?? 'auto');
  return Object.freeze({
    id: 'rtn',
    packedLayout: 'affine' as const,
    zeroKinds: RTN_ZERO_KINDS,
    ...(options.kernel === 'typescript' ? {} : { kernelSolver: null }),
    quantize: (weight: WeightTensor, config: QuantConfig) => quantizeWith('rtn', kernelFor(config.groupSize), weight, config, null),
    dequantize: (quantized: QuantizedTensor) => dequantizeTensor(quantized, kernelFor(quantized.config.groupSize)),
  });
}

/** RTN's zeros: HQQ's fractional min/max zero, rounded (`-int`), or none (`-sym`, onnxruntime's symmetric rule). */
export const RTN_ZERO_KINDS: readonly ZeroKind[] = Object.freeze(['fractional', 'integer', 'none']);
/** HQQ optimizes the zero point: fractional, or rounded (`-int`); a symmetric config has none to optimize. */
export const HQQ_ZERO_KINDS: readonly ZeroKind[] = Object.freeze(['fractional', 'integer']);

/** RTN with the fastest kernel available. */
export const rtnQuantizer: Quantizer = createRtnQuantizer();

export interface HqqQuantizerOptions extends QuantizerOptions {
  /** Solver settings; defaults are upstream HQQ's (p = 0.7, beta = 10, kappa off, 20 iterations). */
  readonly solver?: Partial<ProximalOptions>;
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
  const kernelFor = kernelPicker(options.kernel ?? 'auto');
  return Object.freeze({
    id: 'hqq' as const,
    solver,
    packedLayout: 'affine' as const,
    zeroKinds: HQQ_ZERO_KINDS,
    ...(options.kernel === 'typescript' ? {} : { kernelSolver: solver }),
    quantize: (weight: WeightTensor, config: QuantConfig) => quantizeWith('hqq', kernelFor(config.groupSize), weight, config, solver),
    dequantize: (quantized: QuantizedTensor) => dequantizeTensor(quantized, kernelFor(quantized.config.groupSize)),
  });
}

/** HQQ with upstream defaults and the fastest kernel available. */
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
