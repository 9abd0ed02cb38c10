import { maxCode, roundToCodes } from './asymmetric-init.js';
import { HQQ_KERNEL_WASM_BASE64 } from './hqq-kernel-wasm.generated.js';
import { optimizeZeroProximal, runProximalSolver, type ProximalOptions } from './hqq-proximal.js';

/**
 * Runs HQQ's solver and the final rounding on group-major weights: updates `zero` in place, writes `codes`,
 * returns the iterations run. Two implementations with bit-identical results: TypeScript (the oracle) and
 * WebAssembly SIMD (fast; needs a group size that is a multiple of 4).
 */
export interface HqqKernel {
  readonly id: 'typescript' | 'wasm-simd';
  supports(groupSize: number): boolean;
  solve(
    grouped: Float32Array,
    groupSize: number,
    bits: number,
    scale: Float32Array,
    zero: Float32Array,
    options: ProximalOptions,
    codes: Uint8Array,
  ): number;
}

export const typescriptKernel: HqqKernel = Object.freeze({
  id: 'typescript' as const,
  supports: () => true,
  solve(grouped: Float32Array, groupSize: number, bits: number, scale: Float32Array, zero: Float32Array, options: ProximalOptions, codes: Uint8Array) {
    const iterations = optimizeZeroProximal(grouped, groupSize, bits, scale, zero, options);
    roundToCodes(grouped, groupSize, bits, scale, zero, codes);
    return iterations;
  },
});

interface KernelExports {
  readonly memory: WebAssembly.Memory;
  proximalIteration(
    w: number, scale: number, zero: number, groups: number, g: number,
    maxV: number, inverseBeta: number, exponent: number, threshold: number,
  ): number;
  roundToCodes(w: number, scale: number, zero: number, codes: number, groups: number, g: number, maxV: number): void;
}

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  if (typeof Buffer !== 'undefined') return new Uint8Array(Buffer.from(text, 'base64'));
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

let wasmModule: WebAssembly.Module | null | undefined;

/** The compiled kernel module, or null where WebAssembly SIMD is missing. Compiled once (1 KB, synchronous). */
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

/** Whether this runtime can run the WebAssembly SIMD kernel. */
export function wasmKernelAvailable(): boolean {
  return kernelModule() !== null;
}

/**
 * A WebAssembly SIMD kernel instance (its own memory, grown to the largest matrix seen). Not shared between
 * threads; make one per worker. Returns undefined where WebAssembly SIMD is unavailable.
 */
export function createWasmKernel(): HqqKernel | undefined {
  const module = kernelModule();
  if (!module) return undefined;
  const instance = new WebAssembly.Instance(module, { env: { pow: Math.pow } });
  const kernel = instance.exports as unknown as KernelExports;
  const memory = kernel.memory;
  const ensureBytes = (bytes: number) => {
    const missing = bytes - memory.buffer.byteLength;
    if (missing > 0) memory.grow(Math.ceil(missing / 65536));
  };
  return Object.freeze({
    id: 'wasm-simd' as const,
    supports: (groupSize: number) => groupSize % 4 === 0,
    solve(grouped: Float32Array, groupSize: number, bits: number, scale: Float32Array, zero: Float32Array, options: ProximalOptions, codes: Uint8Array) {
      const count = grouped.length;
      const groups = scale.length;
      const weightsAt = 0;
      const scaleAt = count * 4;
      const zeroAt = scaleAt + groups * 4;
      const codesAt = zeroAt + groups * 4;
      ensureBytes(codesAt + count);
      const heap = memory.buffer;
      new Float32Array(heap, weightsAt, count).set(grouped);
      new Float32Array(heap, scaleAt, groups).set(scale);
      const zeroView = new Float32Array(heap, zeroAt, groups);
      zeroView.set(zero);
      const maxV = maxCode(bits);
      const iterations = runProximalSolver(
        (inverseBeta, exponent, threshold) =>
          kernel.proximalIteration(weightsAt, scaleAt, zeroAt, groups, groupSize, maxV, inverseBeta, exponent, threshold),
        count,
        options,
      );
      kernel.roundToCodes(weightsAt, scaleAt, zeroAt, codesAt, groups, groupSize, maxV);
      zero.set(zeroView);
      codes.set(new Uint8Array(heap, codesAt, count));
      return iterations;
    },
  });
}
