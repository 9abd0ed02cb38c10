import { asymmetricMinMaxInit, dequantizeGroups, maxCode, roundToCodes } from './asymmetric-init.js';
import { HQQ_KERNEL_WASM_BASE64 } from './hqq-kernel-wasm.generated.js';
import { optimizeZeroProximal, roundZerosToIntegers, type ProximalOptions } from './hqq-proximal.js';

/**
 * The numeric core of RTN and HQQ on group-major weights, in two implementations with bit-identical results:
 * TypeScript (the oracle) and WebAssembly SIMD (fast; needs a group size that is a multiple of 4).
 */
export interface QuantKernel {
  readonly id: 'typescript' | 'wasm-simd';
  supports(groupSize: number): boolean;
  /**
   * The asymmetric min/max init into `scale` and `zero`, then (when `solver` is given) HQQ's proximal solver on the
   * zeros, then the codes. Returns the solver iterations run (0 for RTN).
   */
  quantize(
    grouped: Float32Array,
    groupSize: number,
    bits: number,
    roundZero: boolean,
    solver: ProximalOptions | null,
    scale: Float32Array,
    zero: Float32Array,
    codes: Uint8Array,
  ): number;
  /** `(Wq - z) * fp32(1/s)` of group-major codes into `out`. */
  dequantize(codes: Uint8Array, groupSize: number, scale: Float32Array, zero: Float32Array, out: Float32Array): void;
  /**
   * `quantize`, with the codes written straight into rows-u32-lsb words (`packed`, `grouped.length * bits / 32`
   * words) instead of bytes: only for 2, 4 and 8 bits, groups along rows (axis 1) and a row length that is a
   * multiple of the codes per word, where the packed words are the group-major code stream. Same results.
   */
  quantizePacked?(
    grouped: Float32Array,
    groupSize: number,
    bits: 2 | 4 | 8,
    roundZero: boolean,
    solver: ProximalOptions | null,
    scale: Float32Array,
    zero: Float32Array,
    packed: Uint32Array,
  ): number;
}

export const typescriptKernel: QuantKernel = Object.freeze({
  id: 'typescript' as const,
  supports: () => true,
  quantize(grouped: Float32Array, groupSize: number, bits: number, roundZero: boolean, solver: ProximalOptions | null, scale: Float32Array, zero: Float32Array, codes: Uint8Array) {
    asymmetricMinMaxInit(grouped, groupSize, bits, roundZero, scale, zero);
    const iterations = solver ? optimizeZeroProximal(grouped, groupSize, bits, scale, zero, solver) : 0;
    if (solver?.integerZero) roundZerosToIntegers(zero, maxCode(bits));
    roundToCodes(grouped, groupSize, bits, scale, zero, codes);
    return iterations;
  },
  dequantize: dequantizeGroups,
});

interface KernelExports {
  readonly memory: WebAssembly.Memory;
  minMaxInit(w: number, scale: number, zero: number, groups: number, g: number, maxV: number, roundZero: number): void;
  proximalIteration(
    w: number, scale: number, zero: number, groups: number, g: number,
    maxV: number, inverseBeta: number, exponent: number, threshold: number,
  ): number;
  proximalSolve(
    w: number, scale: number, zero: number, groups: number, g: number, maxV: number,
    lpNorm: number, beta: number, kappa: number, iterations: number,
  ): number;
  roundToCodes(w: number, scale: number, zero: number, codes: number, groups: number, g: number, maxV: number): void;
  rtnQuantize(w: number, scale: number, zero: number, codes: number, groups: number, g: number, maxV: number, roundZero: number): void;
  packCodes(codes: number, out: number, count: number, bits: number): void;
  dequantize(codes: number, scale: number, zero: number, out: number, groups: number, g: number): void;
}

/** A WebAssembly module's bytes from the base64 of a generated file (Buffer in Node, atob in a page). */
export function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  if (typeof Buffer !== 'undefined') return new Uint8Array(Buffer.from(text, 'base64'));
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

let wasmModule: WebAssembly.Module | null | undefined;

/** The compiled kernel module, or null where WebAssembly SIMD is missing. Compiled once (1.5 KB, synchronous). */
function kernelModule(): WebAssembly.Module | null {
  if (wasmModule === undefined) {
    try {
      wasmModule = new WebAssembly.Module(decodeBase64(HQQ_KERNEL_WASM_BASE64));
    } catch {
      wasmModule = null;
    }
  }
  return wasmModule;
}

/** The compiled WebAssembly module (for workers: a WebAssembly.Module can be posted to a worker), or undefined. */
export function wasmKernelModule(): WebAssembly.Module | undefined {
  return kernelModule() ?? undefined;
}

/** Whether this runtime can run the WebAssembly SIMD kernel. */
export function wasmKernelAvailable(): boolean {
  return kernelModule() !== null;
}

/**
 * A WebAssembly SIMD kernel instance (its own memory, grown to the largest matrix seen). Not shared between
 * threads; make one per worker. Returns undefined where WebAssembly SIMD is unavailable.
 */
export function createWasmKernel(): QuantKernel | undefined {
  const module = kernelModule();
  if (!module) return undefined;
  const instance = new WebAssembly.Instance(module, { env: { pow: Math.pow } });
  const kernel = instance.exports as unknown as KernelExports;
  const memory = kernel.memory;
  // layout: [weights f32 | scale f32 | zero f32 | codes u8 | packed words (quantizePacked)]
  const reserve = (count: number, groups: number, packedBytes = 0) => {
    const scaleAt = count * 4;
    const zeroAt = scaleAt + groups * 4;
    const codesAt = zeroAt + groups * 4;
    const packedAt = codesAt + Math.ceil(count / 16) * 16;
    const missing = packedAt + packedBytes - memory.buffer.byteLength;
    if (missing > 0) memory.grow(Math.ceil(missing / 65536));
    return { weightsAt: 0, scaleAt, zeroAt, codesAt, packedAt, heap: memory.buffer };
  };
  return Object.freeze({
    id: 'wasm-simd' as const,
    supports: (groupSize: number) => groupSize % 4 === 0,
    quantize(grouped: Float32Array, groupSize: number, bits: number, roundZero: boolean, solver: ProximalOptions | null, scale: Float32Array, zero: Float32Array, codes: Uint8Array) {
      const count = grouped.length;
      const groups = scale.length;
      const { weightsAt, scaleAt, zeroAt, codesAt, heap } = reserve(count, groups);
      new Float32Array(heap, weightsAt, count).set(grouped);
      const maxV = maxCode(bits);
      kernel.minMaxInit(weightsAt, scaleAt, zeroAt, groups, groupSize, maxV, roundZero ? 1 : 0);
      const iterations = solver
        ? kernel.proximalSolve(weightsAt, scaleAt, zeroAt, groups, groupSize, maxV, solver.lpNorm, solver.beta, solver.kappa, solver.iterations)
        : 0;
      if (solver?.integerZero) roundZerosToIntegers(new Float32Array(heap, zeroAt, groups), maxV);
      kernel.roundToCodes(weightsAt, scaleAt, zeroAt, codesAt, groups, groupSize, maxV);
      scale.set(new Float32Array(heap, scaleAt, groups));
      zero.set(new Float32Array(heap, zeroAt, groups));
      codes.set(new Uint8Array(heap, codesAt, count));
      return iterations;
    },
    quantizePacked(grouped: Float32Array, groupSize: number, bits: 2 | 4 | 8, roundZero: boolean, solver: ProximalOptions | null, scale: Float32Array, zero: Float32Array, packed: Uint32Array) {
      const count = grouped.length;
      const groups = scale.length;
      const packedBytes = (count * bits) / 8;
      if (count % 16 !== 0 || packed.length * 4 !== packedBytes) throw new RangeError(`${count} codes do not pack into ${packed.length} words of ${bits} bits`);
      const { weightsAt, scaleAt, zeroAt, codesAt, packedAt, heap } = reserve(count, groups, bits === 8 ? 0 : packedBytes);
      new Float32Array(heap, weightsAt, count).set(grouped);
      const maxV = maxCode(bits);
      let iterations = 0;
      if (solver) {
        kernel.minMaxInit(weightsAt, scaleAt, zeroAt, groups, groupSize, maxV, roundZero ? 1 : 0);
        iterations = kernel.proximalSolve(weightsAt, scaleAt, zeroAt, groups, groupSize, maxV, solver.lpNorm, solver.beta, solver.kappa, solver.iterations);
        if (solver.integerZero) roundZerosToIntegers(new Float32Array(heap, zeroAt, groups), maxV);
        kernel.roundToCodes(weightsAt, scaleAt, zeroAt, codesAt, groups, groupSize, maxV);
      } else {
        kernel.rtnQuantize(weightsAt, scaleAt, zeroAt, codesAt, groups, groupSize, maxV, roundZero ? 1 : 0);
      }
      // 8-bit codes in little-endian words are already the packing
      if (bits !== 8) kernel.packCodes(codesAt, packedAt, count, bits);
      scale.set(new Float32Array(heap, scaleAt, groups));
      zero.set(new Float32Array(heap, zeroAt, groups));
      new Uint8Array(packed.buffer, packed.byteOffset, packedBytes).set(new Uint8Array(heap, bits === 8 ? codesAt : packedAt, packedBytes));
      return iterations;
    },
    dequantize(codes: Uint8Array, groupSize: number, scale: Float32Array, zero: Float32Array, out: Float32Array) {
      const count = codes.length;
      const groups = scale.length;
      // same layout: the output floats take the weights' place
      const { weightsAt, scaleAt, zeroAt, codesAt, heap } = reserve(count, groups);
      new Uint8Array(heap, codesAt, count).set(codes);
      new Float32Array(heap, scaleAt, groups).set(scale);
      new Float32Array(heap, zeroAt, groups).set(zero);
      kernel.dequantize(codesAt, scaleAt, zeroAt, weightsAt, groups, groupSize);
      out.set(new Float32Array(heap, weightsAt, count));
    },
  });
}

/** The kernel a quantizer uses: WebAssembly SIMD where available and the group size allows, else TypeScript. */
export type KernelChoice = 'auto' | 'typescript' | 'wasm';
