// Where GPTQ's Hessian preparation keeps its matrix: plain typed arrays (the TypeScript oracle), or the memory of a
// WebAssembly SIMD module (wasm/cholesky-kernel.wat) whose panelUpdate and blockTimesInverse run the O(n^3) parts of
// inverseCholeskyUpper in place. Both give bit-identical factors (tested).
import { InvalidOptionError } from '@layerquant/core';
import { CHOLESKY_KERNEL_WASM_BASE64 } from './cholesky-kernel-wasm.generated.js';
import { decodeBase64, type KernelChoice } from './quant-kernel.js';

/** Columns per block of the blocked factorization and inversion (a panel of 64 float64 per row: 512 bytes). */
export const CHOLESKY_BLOCK = 64;

interface CholeskyExports {
  readonly memory: WebAssembly.Memory;
  panelUpdate(a: number, n: number, p: number, pt: number, w: number, i0: number, iEnd: number, c0: number, cEnd: number): void;
  blockTimesInverse(a: number, n: number, i0: number, h: number, i1: number, block: number, strip: number): void;
}

/** The WebAssembly calls, on the workspace's own byte offsets. */
export interface CholeskyKernelCalls {
  /** a[i, j] -= P[i] . P[j] for the whole 4 x 4 tiles of [i0, iEnd) x [c0, cEnd) at or right of the diagonal band. */
  panelUpdate(w: number, i0: number, iEnd: number, c0: number, cEnd: number): void;
  /** blockTimesInverse of the TypeScript, into `block`. */
  blockTimesInverse(i0: number, h: number, i1: number): void;
}

/** The matrix and the scratch of one preparation. */
export interface CholeskyWorkspace {
  readonly n: number;
  /** [n, n] row-major. */
  readonly a: Float64Array;
  /** [n, CHOLESKY_BLOCK]: the block's columns of R for the rows above it, row by row. */
  readonly panel: Float64Array;
  /** [CHOLESKY_BLOCK, n]: the same, transposed (the WebAssembly update reads four rows' terms as two vectors). */
  readonly panelT: Float64Array;
  /** [CHOLESKY_BLOCK, n]: the inversion's block product. */
  readonly block: Float64Array;
  /** [4 n]: the inversion's packed strip of U (TypeScript only; the WebAssembly packs its own). */
  readonly strip: Float64Array;
  /** The WebAssembly kernel over this workspace's memory; absent: the TypeScript loops. */
  readonly kernel?: CholeskyKernelCalls;
}

let choleskyModule: WebAssembly.Module | null | undefined;

function compiledModule(): WebAssembly.Module | null {
  if (choleskyModule === undefined) {
    try {
      choleskyModule = new WebAssembly.Module(decodeBase64(CHOLESKY_KERNEL_WASM_BASE64));
    } catch {
      choleskyModule = null;
    }
  }
  return choleskyModule;
}

/** wasm32 memory: 65536 pages of 64 KiB. */
const WASM_PAGE = 65536;
const WASM_MAX_BYTES = 65536 * WASM_PAGE;

/** Bytes of a WebAssembly workspace for n columns, or Infinity where it does not fit wasm32's 4 GiB (n above about 23,000). */
export function choleskyWasmBytes(n: number): number {
  const bytes = 8 * (n * n + 3 * n * CHOLESKY_BLOCK + 4 * n);
  return bytes <= WASM_MAX_BYTES - WASM_PAGE ? bytes : Number.POSITIVE_INFINITY;
}

/**
 * A workspace for n columns. `auto` puts it in WebAssembly memory where SIMD is available and it fits wasm32 (else
 * typed arrays); `wasm` requires that (a typed error otherwise); `typescript` never uses it.
 */
export function createCholeskyWorkspace(n: number, choice: KernelChoice = 'auto'): CholeskyWorkspace {
  const module = choice === 'typescript' ? null : compiledModule();
  const bytes = choleskyWasmBytes(n);
  if (!module || !Number.isFinite(bytes)) {
    if (choice === 'wasm') {
      throw new InvalidOptionError('kernel', module ? `a ${n}-column Hessian needs more than wasm32's 4 GiB of WebAssembly memory; use kernel "auto" or "typescript"` : 'WebAssembly SIMD is not available in this runtime; use kernel "auto" or "typescript"');
    }
    return Object.freeze({
      n,
      a: new Float64Array(n * n),
      panel: new Float64Array(n * CHOLESKY_BLOCK),
      panelT: new Float64Array(n * CHOLESKY_BLOCK),
      block: new Float64Array(n * CHOLESKY_BLOCK),
      strip: new Float64Array(4 * n),
    });
  }
  const instance = new WebAssembly.Instance(module, {});
  const exports = instance.exports as unknown as CholeskyExports;
  const missing = bytes - exports.memory.buffer.byteLength;
  if (missing > 0) exports.memory.grow(Math.ceil(missing / WASM_PAGE));
  const buffer = exports.memory.buffer;
  const aAt = 0;
  const panelAt = 8 * n * n;
  const panelTAt = panelAt + 8 * n * CHOLESKY_BLOCK;
  const blockAt = panelTAt + 8 * n * CHOLESKY_BLOCK;
  const stripAt = blockAt + 8 * n * CHOLESKY_BLOCK;
  return Object.freeze({
    n,
    a: new Float64Array(buffer, aAt, n * n),
    panel: new Float64Array(buffer, panelAt, n * CHOLESKY_BLOCK),
    panelT: new Float64Array(buffer, panelTAt, n * CHOLESKY_BLOCK),
    block: new Float64Array(buffer, blockAt, n * CHOLESKY_BLOCK),
    strip: new Float64Array(buffer, stripAt, 4 * n),
    kernel: Object.freeze({
      panelUpdate: (w: number, i0: number, iEnd: number, c0: number, cEnd: number) => exports.panelUpdate(aAt, n, panelAt, panelTAt, w, i0, iEnd, c0, cEnd),
      blockTimesInverse: (i0: number, h: number, i1: number) => exports.blockTimesInverse(aAt, n, i0, h, i1, blockAt, stripAt),
    }),
  });
}
