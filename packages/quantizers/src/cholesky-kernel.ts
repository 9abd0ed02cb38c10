// Where GPTQ's Hessian preparation keeps its matrix: plain typed arrays (the TypeScript oracle), or the memory of a
// WebAssembly SIMD module (wasm/cholesky-kernel.wat) whose functions run inverseCholeskyUpper's solves, updates and
// inverse in place, shared with the kernel pool's workers where it has them. Both give bit-identical factors (tested).
import { InvalidOptionError } from '@layerquant/core';
import { CHOLESKY_KERNEL_WASM_BASE64, CHOLESKY_KERNEL_WASM_BASE64_SHARED } from './cholesky-kernel-wasm.generated.js';
import { decodeBase64, type KernelChoice } from './quant-kernel.js';

/** Columns per block of the blocked factorization and inversion (a panel of 64 float64 per row: 512 bytes). */
export const CHOLESKY_BLOCK = 64;

export interface CholeskyExports {
  readonly memory?: WebAssembly.Memory;
  panelUpdate(a: number, n: number, p: number, pt: number, w: number, i0: number, iEnd: number, c0: number, cEnd: number): void;
  blockTimesInverse(a: number, n: number, i0: number, h: number, i1: number, jStart: number, jEnd: number, block: number, strip: number): void;
  panelSolve(a: number, n: number, p: number, pt: number, j0: number, j1: number, iStart: number, iEnd: number): void;
  invertRows(a: number, n: number, i0: number, h: number, i1: number, block: number, row: number): void;
}

/** The WebAssembly calls, on the workspace's own byte offsets. */
export interface CholeskyKernelCalls {
  /** a[i, j] -= P[i] . P[j] for the whole 4 x 4 tiles of [i0, iEnd) x [c0, cEnd) at or right of the diagonal band. */
  panelUpdate(w: number, i0: number, iEnd: number, c0: number, cEnd: number): void;
  /** blockTimesInverse of the TypeScript, into `block`, for the columns [jStart, jEnd), with thread `strip`'s strip. */
  blockTimesInverse(i0: number, h: number, i1: number, jStart: number, jEnd: number, strip: number): void;
  /** The triangular solve of the rows [iStart, iEnd) above the diagonal block [j0, j1), into a, the panel and its transpose. */
  panelSolve(j0: number, j1: number, iStart: number, iEnd: number): void;
  /** The inverse's rows of the block [i0, i0 + h) from the block product (invertUpperInPlace's row loop). */
  invertRows(i0: number, h: number, i1: number): void;
}

/** Byte offsets of a workspace's arrays in its WebAssembly memory. */
export interface CholeskyLayout {
  readonly n: number;
  readonly aAt: number;
  readonly panelAt: number;
  readonly panelTAt: number;
  readonly blockAt: number;
  /** Strip s (one per thread) at stripAt + s * 32 n. */
  readonly stripAt: number;
  /** The inverse's row scratch, n float64 (the calling thread's). */
  readonly rowAt: number;
}

/** What a worker needs to run a shared workspace's regions: its memory, the shared module and the layout. */
export interface SharedCholesky {
  /** Tells workspaces apart (a worker keeps one instance per memory). */
  readonly key: number;
  readonly memory: WebAssembly.Memory;
  readonly module: WebAssembly.Module;
  readonly layout: CholeskyLayout;
}

/** One thread's part of a region: whole-tile panel updates of row tiles, or block-product columns. */
export type CholeskyRequest =
  | { readonly shared: SharedCholesky; readonly op: 'panel'; readonly w: number; readonly j0: number; readonly tiles: readonly number[] }
  | { readonly shared: SharedCholesky; readonly op: 'inverse'; readonly i0: number; readonly h: number; readonly i1: number; readonly jStart: number; readonly jEnd: number; readonly strip: number }
  | { readonly shared: SharedCholesky; readonly op: 'solve'; readonly j0: number; readonly j1: number; readonly iStart: number; readonly iEnd: number };

/** Helper threads (the kernel pool's workers) that run requests on a shared workspace. */
export interface CholeskyThreads {
  /** Threads besides the calling one. */
  readonly count: number;
  run(request: CholeskyRequest): Promise<void>;
}

/** Runs a request with a kernel instance over the request's memory (the calling thread's, or a worker's). */
export function runCholeskyRequest(kernel: CholeskyExports, request: CholeskyRequest): void {
  const { n, aAt, panelAt, panelTAt, blockAt, stripAt } = request.shared.layout;
  if (request.op === 'panel') {
    const { tiles, w, j0 } = request;
    for (let t = 0; t < tiles.length; t += 2) kernel.panelUpdate(aAt, n, panelAt, panelTAt, w, tiles[t]!, tiles[t + 1]!, tiles[t]!, j0);
  } else if (request.op === 'solve') {
    kernel.panelSolve(aAt, n, panelAt, panelTAt, request.j0, request.j1, request.iStart, request.iEnd);
  } else {
    // the strip's address as workspaceOver computes it (this function is posted to workers as source: no helpers)
    kernel.blockTimesInverse(aAt, n, request.i0, request.h, request.i1, request.jStart, request.jEnd, blockAt, stripAt + request.strip * 32 * n);
  }
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
  /** Where the memory is shared (threads): what the workers need, and this thread's instance. */
  readonly shared?: SharedCholesky & { readonly exports: CholeskyExports };
}

const modules = new Map<string, WebAssembly.Module | null>();

/** A compiled module of the generated base64, or null where this runtime cannot (no SIMD, no shared memory). */
function compiledModule(base64: string): WebAssembly.Module | null {
  if (!modules.has(base64)) {
    try {
      modules.set(base64, new WebAssembly.Module(decodeBase64(base64)));
    } catch {
      modules.set(base64, null);
    }
  }
  return modules.get(base64)!;
}

let nextSharedKey = 1;

/** wasm32 memory: 65536 pages of 64 KiB. */
const WASM_PAGE = 65536;
const WASM_MAX_BYTES = 65536 * WASM_PAGE;

/** Bytes of a WebAssembly workspace for n columns, or Infinity where it does not fit wasm32's 4 GiB (n above about 23,000). */
export function choleskyWasmBytes(n: number, threads = 1): number {
  const bytes = 8 * (n * n + 3 * n * CHOLESKY_BLOCK + 4 * n * threads + n);
  return bytes <= WASM_MAX_BYTES - WASM_PAGE ? bytes : Number.POSITIVE_INFINITY;
}

/**
 * A workspace for n columns. `auto` puts it in WebAssembly memory where SIMD is available and it fits wasm32 (else
 * typed arrays); `wasm` requires that (a typed error otherwise); `typescript` never uses it. With `threads` above 1
 * the memory is shared (SharedArrayBuffer) so that helper threads run regions on it; where the runtime cannot share
 * it, the workspace is a plain one (the calling thread does everything, with the same result).
 */
export function createCholeskyWorkspace(n: number, choice: KernelChoice = 'auto', threads = 1): CholeskyWorkspace {
  if (threads > 1 && choice !== 'typescript') {
    const shared = sharedWorkspace(n, threads);
    if (shared) return shared;
  }
  const module = choice === 'typescript' ? null : compiledModule(CHOLESKY_KERNEL_WASM_BASE64);
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
  const exports = instance.exports as unknown as CholeskyExports & { readonly memory: WebAssembly.Memory };
  const missing = bytes - exports.memory.buffer.byteLength;
  if (missing > 0) exports.memory.grow(Math.ceil(missing / WASM_PAGE));
  return workspaceOver(exports.memory.buffer, choleskyLayout(n, 1), exports);
}

function choleskyLayout(n: number, threads: number): CholeskyLayout {
  const panelAt = 8 * n * n;
  const panelTAt = panelAt + 8 * n * CHOLESKY_BLOCK;
  const blockAt = panelTAt + 8 * n * CHOLESKY_BLOCK;
  const stripAt = blockAt + 8 * n * CHOLESKY_BLOCK;
  return Object.freeze({ n, aAt: 0, panelAt, panelTAt, blockAt, stripAt, rowAt: stripAt + 32 * n * threads });
}

function workspaceOver(buffer: ArrayBufferLike, layout: CholeskyLayout, exports: CholeskyExports, shared?: CholeskyWorkspace['shared']): CholeskyWorkspace {
  const { n, aAt, panelAt, panelTAt, blockAt, stripAt, rowAt } = layout;
  return Object.freeze({
    n,
    a: new Float64Array(buffer, aAt, n * n),
    panel: new Float64Array(buffer, panelAt, n * CHOLESKY_BLOCK),
    panelT: new Float64Array(buffer, panelTAt, n * CHOLESKY_BLOCK),
    block: new Float64Array(buffer, blockAt, n * CHOLESKY_BLOCK),
    strip: new Float64Array(buffer, stripAt, 4 * n),
    kernel: Object.freeze({
      panelUpdate: (w: number, i0: number, iEnd: number, c0: number, cEnd: number) => exports.panelUpdate(aAt, n, panelAt, panelTAt, w, i0, iEnd, c0, cEnd),
      blockTimesInverse: (i0: number, h: number, i1: number, jStart: number, jEnd: number, strip: number) =>
        exports.blockTimesInverse(aAt, n, i0, h, i1, jStart, jEnd, blockAt, stripAt + strip * 32 * n),
      panelSolve: (j0: number, j1: number, iStart: number, iEnd: number) => exports.panelSolve(aAt, n, panelAt, panelTAt, j0, j1, iStart, iEnd),
      invertRows: (i0: number, h: number, i1: number) => exports.invertRows(aAt, n, i0, h, i1, blockAt, rowAt),
    }),
    ...(shared ? { shared } : {}),
  });
}

/** A workspace in a shared memory of exactly its size (strips for `threads`), or undefined where none can be made. */
function sharedWorkspace(n: number, threads: number): CholeskyWorkspace | undefined {
  const module = compiledModule(CHOLESKY_KERNEL_WASM_BASE64_SHARED);
  const bytes = choleskyWasmBytes(n, threads);
  if (!module || !Number.isFinite(bytes) || typeof SharedArrayBuffer === 'undefined') return undefined;
  try {
    const pages = Math.ceil(bytes / WASM_PAGE);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as CholeskyExports;
    const layout = choleskyLayout(n, threads);
    return workspaceOver(memory.buffer, layout, exports, Object.freeze({ key: nextSharedKey++, memory, module, layout, exports }));
  } catch {
    return undefined;
  }
}
