import type { GptqKernel } from './gptq.js';
import type { GptqProblem } from './gptq-solver.js';
import { wasmKernelModule } from './quant-kernel.js';

/** The exports of wasm/hqq-kernel.wat that run GPTQ's column loop (`gptqRun`, solveGptqColumns op for op). */
export interface GptqKernelExports {
  readonly memory: WebAssembly.Memory;
  gptqRun(
    w: number, u: number, codes: number, err: number, low: number, high: number,
    groupOf: number, rangeAt: number, maxq: number, blockEnds: number, blocks: number,
    rows: number, n: number, g: number, symmetric: number, grid: number,
  ): void;
}

/** Byte offsets of a problem's arrays in kernel memory, and the bytes it needs. */
export function gptqMemoryLayout(rows: number, columns: number, groups: number, blocks: number, largestBlock: number) {
  const align = (x: number) => Math.ceil(x / 16) * 16;
  let at = 0;
  const take = (bytes: number) => {
    const offset = at;
    at = align(at + bytes);
    return offset;
  };
  const layout = {
    weights: take(rows * columns * 4),
    inverse: take(columns * columns * 4),
    codes: take(rows * columns),
    error: take(largestBlock * rows * 4),
    low: take(groups * rows * 4),
    high: take(groups * rows * 4),
    groupOf: take(columns * 4),
    rangeAt: take(columns),
    maxq: take(columns * 4),
    blockEnds: take(blocks * 4),
    grid: take(3 * rows * 4),
    bytes: 0,
  };
  layout.bytes = at;
  return layout;
}

/**
 * Runs a GptqProblem on kernel exports: copies it into memory (grown as needed), calls `gptqRun`, copies the
 * weights, codes and ranges back. The worker pool makes the same calls (kernel-worker-pool.ts).
 */
export function solveGptqWasm(kernel: GptqKernelExports, p: GptqProblem): void {
  const groups = p.low.length / p.rows;
  let largestBlock = 0;
  for (let b = 0, start = 0; b < p.blockEnds.length; start = p.blockEnds[b++]!) largestBlock = Math.max(largestBlock, p.blockEnds[b]! - start);
  const layout = gptqMemoryLayout(p.rows, p.columns, groups, p.blockEnds.length, largestBlock);
  const missing = layout.bytes - kernel.memory.buffer.byteLength;
  if (missing > 0) kernel.memory.grow(Math.ceil(missing / 65536));
  const heap = kernel.memory.buffer;
  new Float32Array(heap, layout.weights, p.weights.length).set(p.weights);
  new Float32Array(heap, layout.inverse, p.inverse.length).set(p.inverse);
  new Float32Array(heap, layout.low, p.low.length).set(p.low);
  new Float32Array(heap, layout.high, p.high.length).set(p.high);
  new Int32Array(heap, layout.groupOf, p.columns).set(p.groupOf);
  new Uint8Array(heap, layout.rangeAt, p.columns).set(p.rangeAt);
  new Float32Array(heap, layout.maxq, p.columns).set(p.maxq);
  new Int32Array(heap, layout.blockEnds, p.blockEnds.length).set(p.blockEnds);
  kernel.gptqRun(
    layout.weights, layout.inverse, layout.codes, layout.error, layout.low, layout.high,
    layout.groupOf, layout.rangeAt, layout.maxq, layout.blockEnds, p.blockEnds.length,
    p.rows, p.columns, p.groupSize, p.symmetric ? 1 : 0, layout.grid,
  );
  p.weights.set(new Float32Array(heap, layout.weights, p.weights.length));
  p.codes.set(new Uint8Array(heap, layout.codes, p.codes.length));
  p.low.set(new Float32Array(heap, layout.low, p.low.length));
  p.high.set(new Float32Array(heap, layout.high, p.high.length));
}

/**
 * The WebAssembly SIMD GPTQ kernel: an instance of the quantizers' kernel module (its own memory, grown to the largest
 * problem seen; not shared between threads). Undefined where WebAssembly SIMD is missing.
 */
export function createWasmGptqKernel(): GptqKernel | undefined {
  const module = wasmKernelModule();
  if (!module) return undefined;
  const kernel = new WebAssembly.Instance(module, { env: { pow: Math.pow } }).exports as unknown as GptqKernelExports;
  return Object.freeze({
    id: 'wasm-simd' as const,
    supports: (rows: number) => rows % 4 === 0,
    solve: (problem: GptqProblem) => solveGptqWasm(kernel, problem),
  });
}
