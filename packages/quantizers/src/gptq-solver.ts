// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers"),
// the numeric core: the Hessian's inverse Cholesky factor in float64, then the column loop with lazy batch updates in
// float32. Pure functions on typed arrays; the WebAssembly kernel (wasm/hqq-kernel.wat, `gptqRun`) repeats
// solveGptqColumns operation for operation, so both give bit-identical codes and ranges.
import { InvalidDataError, LayerquantError, type InputHessian } from '@layerquant/core';
import { CHOLESKY_BLOCK, createCholeskyWorkspace, runCholeskyRequest, type CholeskyThreads, type CholeskyWorkspace } from './cholesky-kernel.js';
import type { KernelChoice } from './quant-kernel.js';
import { roundHalfEven } from './rounding.js';

const fround = Math.fround;

/** A group whose range is below this (all zeros, or denormals) gets the range [-1, 1], as GPTQ does for all-zero groups. */
export const GPTQ_TINY_RANGE = Math.fround(1e-30);

/** How often a Hessian that is not positive definite is retried, each time with twice the dampening. */
export const GPTQ_DAMPENING_RETRIES = 12;

/** The Hessian, ready for the column loop: H^-1's upper Cholesky factor in the order the columns are quantized. */
export interface PreparedHessian {
  readonly columns: number;
  /** U [columns, columns] row-major, upper triangular, with H^-1 = U^T U (H dampened, dead columns fixed, permuted). */
  readonly inverse: Float32Array;
  /** Processing position -> original column (act-order: descending diagonal of H); null keeps the natural order. */
  readonly order: Int32Array | null;
  /** Per original column: 1 where the column never saw a non-zero input (zero diagonal): its weights are zeroed. */
  readonly dead: Uint8Array;
  readonly deadColumns: number;
  /** The dampening used, as a fraction of H's mean diagonal (more than asked when the Hessian needed retries). */
  readonly dampening: number;
  /** Retries with doubled dampening before the Cholesky factorization succeeded. */
  readonly retries: number;
}

/** A Hessian that stays not positive definite even with the largest dampening tried. */
export class HessianNotPositiveDefiniteError extends LayerquantError {
  constructor(readonly tensor: string, dampening: number) {
    super(
      'HESSIAN_NOT_POSITIVE_DEFINITE',
      `tensor "${tensor}": the input Hessian is not positive definite even with dampening ${dampening} of its mean diagonal; the calibration inputs are degenerate (check the calibration text and the checkpoint), or raise the dampening`,
    );
  }
}

/** Rows (and columns) per tile of the blocked updates: a tile of the packed panel is 64 x 64 float64, 32 KiB. */
const UPDATE_TILE = 64;

/**
 * Overwrites the symmetric positive definite `a` [n, n] (row-major; only its upper triangle is read) with U, the upper
 * triangular factor with a^-1 = U^T U (torch: `cholesky(cholesky_inverse(cholesky(a)), upper=True)`), in float64.
 * U = R^-1 where a = R R^T with R upper triangular (the Cholesky factorization taken from the last column backwards):
 * then a^-1 = R^-T R^-1, and R^-1 is upper triangular with a positive diagonal, so by uniqueness it is that factor.
 * That avoids forming a^-1 (two triangular passes instead of three). Returns false (a half overwritten) when a pivot
 * is not positive: `a` is not positive definite.
 *
 * Both passes are blocked (CHOLESKY_BLOCK columns at a time, the O(n^3) updates in cache-sized tiles of a packed
 * panel), so a 11008-column Hessian (a 7B model's down_proj) streams its 970 MB once per block instead of once per
 * column; the same sums, in another order (float64 rounding apart, the same factor).
 */
export function inverseCholeskyUpper(a: Float64Array, n: number, kernel: KernelChoice = 'auto'): boolean {
  const workspace = createCholeskyWorkspace(n, kernel);
  workspace.a.set(a.subarray(0, n * n));
  const done = inverseCholeskyUpperIn(workspace);
  a.set(workspace.a);
  return done;
}

/**
 * inverseCholeskyUpper on a workspace's matrix, in place (the WebAssembly kernel's O(n^3) loops where the workspace
 * has it; the same factor, bit for bit).
 */
export function inverseCholeskyUpperIn(workspace: CholeskyWorkspace): boolean {
  return drive(inverseCholeskySteps(workspace), runRegionHere);
}

/**
 * One O(n^3) region of the factorization, for a driver to run in this thread (runRegionHere) or split over threads
 * (runRegionOn): `solve`, the triangular solve of the rows [0, j0) above the diagonal block [j0, j1); `panel`, the
 * trailing update a[i, j] -= P[i] . P[j] for i <= j < j0 (the panel's w columns); `inverse`, the block product T of
 * the rows [i0, i0 + h) and the columns [i1, n).
 */
export type CholeskyRegion =
  | { readonly op: 'panel'; readonly workspace: CholeskyWorkspace; readonly w: number; readonly j0: number }
  | { readonly op: 'inverse'; readonly workspace: CholeskyWorkspace; readonly i0: number; readonly h: number; readonly i1: number }
  | { readonly op: 'solve'; readonly workspace: CholeskyWorkspace; readonly j0: number; readonly j1: number };

/** Runs steps to their result, each region it yields by `run`. */
function drive<T>(steps: Generator<CholeskyRegion, T, void>, run: (region: CholeskyRegion) => void): T {
  for (let step = steps.next(); ; step = steps.next()) {
    if (step.done) return step.value;
    run(step.value);
  }
}

/** The same, each region awaited (threads). */
async function driveAsync<T>(steps: Generator<CholeskyRegion, T, void>, run: (region: CholeskyRegion) => Promise<void>): Promise<T> {
  for (let step = steps.next(); ; step = steps.next()) {
    if (step.done) return step.value;
    await run(step.value);
  }
}

/** inverseCholeskyUpper's steps: false (a half overwritten) where `a` is not positive definite. */
function* inverseCholeskySteps(workspace: CholeskyWorkspace): Generator<CholeskyRegion, boolean, void> {
  if (!(yield* choleskyFromTheRight(workspace))) return false;
  yield* invertUpperInPlace(workspace);
  return true;
}

/** A region in this thread: the WebAssembly kernel's whole tiles where the workspace has it, the rest in TypeScript. */
export function runRegionHere(region: CholeskyRegion): void {
  const { a, n, panel, block, strip, kernel } = region.workspace;
  if (region.op === 'panel') {
    const { w, j0 } = region;
    for (let i0 = 0; i0 < j0; i0 += UPDATE_TILE) {
      const iEnd = Math.min(j0, i0 + UPDATE_TILE);
      for (let c0 = i0; c0 < j0; c0 += UPDATE_TILE) {
        const cEnd = Math.min(j0, c0 + UPDATE_TILE);
        kernel?.panelUpdate(w, i0, iEnd, c0, cEnd);
        subtractPanelProducts(a, n, panel, w, i0, iEnd, c0, cEnd, kernel !== undefined);
      }
    }
  } else if (region.op === 'solve') {
    if (kernel) kernel.panelSolve(region.j0, region.j1, 0, region.j0);
    else panelSolveRows(region.workspace, region.j0, region.j1);
  } else if (kernel) {
    kernel.blockTimesInverse(region.i0, region.h, region.i1, region.i1, n, 0);
  } else {
    blockTimesInverse(a, n, region.i0, region.h, region.i1, block, strip);
  }
}

/** The rows above the diagonal block [j0, j1): R[i, J] R[J, J]^T = a[i, J], a triangular solve per row, then packed. */
function panelSolveRows(workspace: CholeskyWorkspace, j0: number, j1: number): void {
  const { a, n, panel } = workspace;
  const w = j1 - j0;
  for (let i = 0; i < j0; i++) {
    for (let j = j1 - 1; j >= j0; j--) {
      const r = leftInBlock(a, n, i, j, j1) / a[j * n + j]!;
      a[i * n + j] = r;
      panel[i * w + (j - j0)] = r;
    }
  }
}

/** Threads a region is split over: the calling one and up to 3 helpers (the workspace holds a strip for each). */
function threadsOf(threads: CholeskyThreads): number {
  return Math.min(threads.count, 3) + 1;
}

/** Regions narrower than this (columns) run in the calling thread: a worker's round trip costs more than they do. */
const PARALLEL_MIN_COLUMNS = 256;

/**
 * A region split over the calling thread and `threads` (a shared workspace's WebAssembly kernel in each): the panel
 * update by row tiles, the heaviest first to the least loaded thread; the block product by column ranges of equal
 * work. Each entry is computed as runRegionHere computes it, so the factor is the same bit for bit. A workspace
 * that is not shared, or a small region, runs here.
 */
export async function runRegionOn(threads: CholeskyThreads, region: CholeskyRegion): Promise<void> {
  const { workspace } = region;
  const shared = workspace.shared;
  const parts = threadsOf(threads);
  if (!shared || parts < 2) return runRegionHere(region);
  if (region.op === 'panel') {
    const { w, j0 } = region;
    if (j0 < PARALLEL_MIN_COLUMNS) return runRegionHere(region);
    const tiles: number[][] = Array.from({ length: parts }, () => []);
    const load = new Float64Array(parts);
    for (let i0 = 0; i0 < j0; i0 += UPDATE_TILE) {
      const iEnd = Math.min(j0, i0 + UPDATE_TILE);
      const lightest = load.indexOf(Math.min(...load));
      tiles[lightest]!.push(i0, iEnd);
      load[lightest]! += (iEnd - i0) * (j0 - i0);
    }
    const helpers = tiles.slice(1).filter((t) => t.length > 0).map((t) => threads.run({ shared, op: 'panel', w, j0, tiles: t }));
    runCholeskyRequest(shared.exports, { shared, op: 'panel', w, j0, tiles: tiles[0]! });
    await Promise.all(helpers);
    // the entries outside whole 4 x 4 tiles, here, as runRegionHere does them
    const { a, n, panel } = workspace;
    for (let i0 = 0; i0 < j0; i0 += UPDATE_TILE) subtractPanelProducts(a, n, panel, w, i0, Math.min(j0, i0 + UPDATE_TILE), i0, j0, true);
    return;
  }
  if (region.op === 'solve') {
    // rows are independent: equal shares of [0, j0)
    const { j0, j1 } = region;
    if (j0 < PARALLEL_MIN_COLUMNS) return runRegionHere(region);
    const bounds = Array.from({ length: parts + 1 }, (_, p) => Math.floor((j0 * p) / parts));
    const helpers: Promise<void>[] = [];
    for (let p = 1; p < parts; p++) helpers.push(threads.run({ shared, op: 'solve', j0, j1, iStart: bounds[p]!, iEnd: bounds[p + 1]! }));
    runCholeskyRequest(shared.exports, { shared, op: 'solve', j0, j1, iStart: 0, iEnd: bounds[1]! });
    await Promise.all(helpers);
    return;
  }
  const { i0, h, i1 } = region;
  const n = workspace.n;
  if (n - i1 < PARALLEL_MIN_COLUMNS) return runRegionHere(region);
  // a column's work grows with its depth (j - i1): equal work at i1 + (n - i1) sqrt(p / parts), on the 4-column grid
  const bounds = Array.from({ length: parts + 1 }, (_, p) => (p === parts ? n : i1 + 4 * Math.floor(((n - i1) * Math.sqrt(p / parts)) / 4)));
  const helpers: Promise<void>[] = [];
  for (let p = 1; p < parts; p++) {
    if (bounds[p + 1]! > bounds[p]!) helpers.push(threads.run({ shared, op: 'inverse', i0, h, i1, jStart: bounds[p]!, jEnd: bounds[p + 1]!, strip: p }));
  }
  runCholeskyRequest(shared.exports, { shared, op: 'inverse', i0, h, i1, jStart: bounds[0]!, jEnd: bounds[1]!, strip: 0 });
  await Promise.all(helpers);
}

/** R with a = R R^T, R upper triangular, over the upper triangle of `a`, column blocks from the last one backwards. */
function* choleskyFromTheRight(workspace: CholeskyWorkspace): Generator<CholeskyRegion, boolean, void> {
  const { a, n } = workspace;
  for (let j1 = n; j1 > 0; j1 -= CHOLESKY_BLOCK) {
    const j0 = Math.max(0, j1 - CHOLESKY_BLOCK);
    const w = j1 - j0;
    // The diagonal block (every column right of it already subtracted): unblocked, column j from the right.
    for (let j = j1 - 1; j >= j0; j--) {
      const pivot = leftInBlock(a, n, j, j, j1);
      if (!(pivot > 0)) return false;
      const rjj = Math.sqrt(pivot);
      a[j * n + j] = rjj;
      for (let i = j0; i < j; i++) a[i * n + j] = leftInBlock(a, n, i, j, j1) / rjj;
    }
    if (j0 === 0) break;
    // The rows above: R[i, J] R[J, J]^T = a[i, J], a triangular solve per row, then packed (row i at i * w; the
    // WebAssembly kernel also writes the transpose).
    yield { op: 'solve', workspace, j0, j1 };
    // What is left of a, upper triangle: a[i, j] -= R[i, J] . R[j, J] for i <= j < j0, tile by tile of the panel.
    yield { op: 'panel', workspace, w, j0 };
  }
  return true;
}

/** a[i, j] less R[i, k] R[j, k] over the block's columns right of j (k < j1): what R[i, j] R[j, j] is. */
function leftInBlock(a: Float64Array, n: number, i: number, j: number, j1: number): number {
  const rowI = i * n;
  const rowJ = j * n;
  let sum = a[rowI + j]!;
  for (let k = j + 1; k < j1; k++) sum -= a[rowI + k]! * a[rowJ + k]!;
  return sum;
}

/**
 * a[i, j] -= P[i] . P[j] (rows of the packed panel, w values each) for i in [i0, iEnd), j in [c0, cEnd), j >= i - 3:
 * four rows by four columns at a time (16 sums in registers, 8 loads per 16 products), the rest one by one. Entries
 * below the diagonal that a 4 x 4 block straddling it reaches are written too; nothing reads them (the lower triangle
 * is zeroed by the inversion).
 */
function subtractPanelProducts(a: Float64Array, n: number, panel: Float64Array, w: number, i0: number, iEnd: number, c0: number, cEnd: number, wholeTilesDone: boolean): void {
  const sums = new Float64Array(16);
  let i = i0;
  for (; i + 4 <= iEnd; i += 4) {
    const p0 = i * w;
    // the first column of this band at or right of the diagonal, on the 4-aligned grid of the tile
    let j = c0 + Math.max(0, Math.floor((i - c0) / 4) * 4);
    // the whole 4 x 4 tiles, unless the WebAssembly kernel subtracted them (panelUpdate: the same tiles, the same sums)
    if (wholeTilesDone) j += Math.max(0, Math.floor((cEnd - j) / 4) * 4);
    for (; j + 4 <= cEnd; j += 4) {
      tile4x4(panel, p0, w, panel, j * w, w, 1, w, sums);
      for (let q = 0, r = i * n + j; q < 4; q++, r += n) {
        a[r] = a[r]! - sums[4 * q]!;
        a[r + 1] = a[r + 1]! - sums[4 * q + 1]!;
        a[r + 2] = a[r + 2]! - sums[4 * q + 2]!;
        a[r + 3] = a[r + 3]! - sums[4 * q + 3]!;
      }
    }
    // the columns left at the tile's end, one by one, for the four rows
    for (; j < cEnd; j++) {
      for (let r = i; r < i + 4; r++) if (j >= r) subtractDot(a, n, panel, w, r, j);
    }
  }
  // the rows left at the tile's end, one by one
  for (; i < iEnd; i++) for (let j = Math.max(i, c0); j < cEnd; j++) subtractDot(a, n, panel, w, i, j);
}

function subtractDot(a: Float64Array, n: number, panel: Float64Array, w: number, i: number, j: number): void {
  const pi = i * w;
  const pj = j * w;
  let sum = 0;
  for (let k = 0; k < w; k++) sum += panel[pi + k]! * panel[pj + k]!;
  a[i * n + j] = a[i * n + j]! - sum;
}

/**
 * U = R^-1 in place (R upper triangular with a positive diagonal, over the upper triangle of `a`; the lower triangle
 * is zeroed): rows from the bottom, a block of rows at a time. U[i, :] = -(1 / R[i, i]) sum_{k > i} R[i, k] U[k, :],
 * U[i, i] = 1 / R[i, i]; the part of the sum over the rows below the block (already U) is one product for the whole
 * block, in column tiles, the rest row by row.
 */
function* invertUpperInPlace(workspace: CholeskyWorkspace): Generator<CholeskyRegion, void, void> {
  const { a, n, block, kernel } = workspace;
  const row = new Float64Array(kernel ? 0 : n);
  for (let i1 = n; i1 > 0; i1 -= CHOLESKY_BLOCK) {
    const i0 = Math.max(0, i1 - CHOLESKY_BLOCK);
    const h = i1 - i0;
    // T[r, j] = sum_{i1 <= k <= j} R[r, k] U[k, j] for the block's rows r and the columns j >= i1 (U's rows below).
    yield { op: 'inverse', workspace, i0, h, i1 };
    if (kernel) {
      kernel.invertRows(i0, h, i1);
      continue;
    }
    // The block's rows from the bottom: the sum over the block's own rows below r (already U), then U[r, :].
    for (let r = h - 1; r >= 0; r--) {
      const i = i0 + r;
      const rowI = i * n;
      const inverseDiagonal = 1 / a[rowI + i]!;
      row.fill(0, i, i1);
      row.set(block.subarray(r * n + i1, r * n + n), i1);
      for (let k = i + 1; k < i1; k++) {
        const t = a[rowI + k]!;
        if (t === 0) continue;
        const rowK = k * n;
        for (let j = k; j < n; j++) row[j]! += t * a[rowK + j]!;
      }
      a[rowI + i] = inverseDiagonal;
      for (let j = i + 1; j < n; j++) a[rowI + j] = -row[j]! * inverseDiagonal;
      for (let j = 0; j < i; j++) a[rowI + j] = 0;
    }
  }
}

export interface HessianOptions {
  /** Dampening added to the diagonal, as a fraction of its mean (GPTQ: 0.01). */
  readonly dampening: number;
  /** Quantize columns in descending order of the diagonal (GPTQ's act-order). */
  readonly actOrder: boolean;
  /**
   * Where the factorization runs: `auto` (default) WebAssembly SIMD where available and the matrix fits wasm32's
   * 4 GiB, else TypeScript; `wasm` requires it; `typescript` is the oracle. The factor is the same bit for bit.
   */
  readonly kernel?: KernelChoice;
}

/**
 * GPTQ's preparation of H (as the reference does it): a column with a zero diagonal (an input that was zero on every
 * calibration token) is dead: its diagonal is set to 1 and its weights are zeroed by the caller; act-order sorts the
 * columns by descending diagonal (stable); `dampening x mean(diag)` is added to the diagonal; then U, H^-1's upper
 * Cholesky factor. A Hessian that is not positive definite is retried with the dampening doubled (reported), and
 * one with a NaN or infinity is refused.
 */
export function prepareHessian(hessian: InputHessian, options: HessianOptions, tensor: string): PreparedHessian {
  return drive(prepareSteps(hessian, options, tensor, 1), runRegionHere);
}

/**
 * prepareHessian with the factorization's O(n^3) regions split over the calling thread and helper threads (the
 * kernel pool's workers) on a shared WebAssembly memory: the same result, bit for bit. Where the memory cannot be
 * shared (no SharedArrayBuffer, the TypeScript kernel), everything runs in the calling thread.
 */
export function prepareHessianOn(threads: CholeskyThreads, hessian: InputHessian, options: HessianOptions, tensor: string): Promise<PreparedHessian> {
  return driveAsync(prepareSteps(hessian, options, tensor, threadsOf(threads)), (region) => runRegionOn(threads, region));
}

function* prepareSteps(hessian: InputHessian, options: HessianOptions, tensor: string, threads: number): Generator<CholeskyRegion, PreparedHessian, void> {
  const n = hessian.columns;
  const h = hessian.data;
  if (!Number.isInteger(n) || n < 1 || h.length !== n * n) {
    throw new InvalidDataError(tensor, `its input Hessian has ${h.length} values for ${n} columns; it must be [${n}, ${n}]`);
  }
  const dead = new Uint8Array(n);
  let deadColumns = 0;
  let diagonalSum = 0;
  for (let i = 0; i < n; i++) {
    const d = h[i * n + i]!;
    if (!Number.isFinite(d) || d < 0) throw new InvalidDataError(tensor, `its input Hessian has diagonal ${d} at column ${i}; a Hessian 2 X^T X / N has finite, non-negative diagonal values: the calibration inputs hold NaN or infinity`);
    if (d === 0) {
      dead[i] = 1;
      deadColumns++;
    }
    diagonalSum += d === 0 ? 1 : d;
  }
  for (let i = 0; i < h.length; i++) {
    if (!Number.isFinite(h[i]!)) throw new InvalidDataError(tensor, `its input Hessian holds ${h[i]} at [${Math.floor(i / n)}, ${i % n}]; the calibration inputs hold NaN or infinity`);
  }
  let order: Int32Array | null = null;
  if (options.actOrder) {
    const diagonal = (c: number) => (dead[c] ? 1 : h[c * n + c]!);
    order = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => diagonal(b) - diagonal(a) || a - b);
  }
  const meanDiagonal = diagonalSum / n;
  const workspace = createCholeskyWorkspace(n, options.kernel ?? 'auto', threads);
  const { a } = workspace;
  let dampening = options.dampening;
  for (let retries = 0; retries <= GPTQ_DAMPENING_RETRIES; retries++, dampening *= 2) {
    const lambda = dampening * meanDiagonal;
    // The upper triangle of the (permuted, dead-fixed, dampened) H; the factorization reads nothing else.
    for (let i = 0; i < n; i++) {
      const oi = order ? order[i]! : i;
      for (let j = i; j < n; j++) {
        const oj = order ? order[j]! : j;
        a[i * n + j] = oi === oj ? (dead[oi] ? 1 : h[oi * n + oi]!) + lambda : h[oi * n + oj]!;
      }
    }
    if (yield* inverseCholeskySteps(workspace)) {
      return Object.freeze({ columns: n, inverse: Float32Array.from(a), order, dead, deadColumns, dampening, retries });
    }
  }
  throw new HessianNotPositiveDefiniteError(tensor, dampening / 2);
}

/**
 * One GPTQ problem for a kernel, in the order the columns are quantized. Groups are rows of a group table ([groups]
 * x [rows] ranges); each processed column names its group. Ranges are `low = min(0, min w)`, `high = max(0, max w)`
 * over the group's weights (GPTQ's grid always holds 0).
 */
export interface GptqProblem {
  readonly rows: number;
  readonly columns: number;
  /** [columns][rows] column-major weights; updated in place (the error feedback). */
  readonly weights: Float32Array;
  /** U [columns, columns] (PreparedHessian.inverse). */
  readonly inverse: Float32Array;
  readonly groupSize: number;
  /** Group-table row of each column. */
  readonly groupOf: Int32Array;
  /** 1 where the column opens its group: the range is taken there from the current weights of the next groupSize columns. */
  readonly rangeAt: Uint8Array;
  /** Largest code of each column (2^bits - 1; 0: the column quantizes to 0). */
  readonly maxq: Float32Array;
  /** Ends of the lazy batches, ascending, the last one `columns`. A column opening a group never lies in a batch the group overruns. */
  readonly blockEnds: Int32Array;
  readonly symmetric: boolean;
  /** [groups][rows] group ranges: given for groups no column opens (static groups), written for the others. */
  readonly low: Float32Array;
  readonly high: Float32Array;
  /** Out: [columns][rows] codes. */
  readonly codes: Uint8Array;
}

/**
 * A group's range as the grid uses it: symmetric makes it [-m, m] with m = max |w| (the reference keeps low = 0 for a
 * group without negative weights; we do not); an empty or tiny range becomes [-1, 1], as GPTQ does for all-zero
 * groups (every weight then rounds to the code of 0).
 */
export function settleRange(low: number, high: number, symmetric: boolean): [number, number] {
  // + 0 turns a -0 into +0, so the result does not depend on the scan order (the SIMD kernel scans lanes)
  low += 0;
  high += 0;
  if (symmetric) {
    high = Math.max(-low, high);
    low = -high;
  }
  if (fround(high - low) < GPTQ_TINY_RANGE) return [-1, 1];
  return [low, high];
}

/**
 * The grid of a range at `maxq` (fp32, as GPTQ's quantizer computes it): step `(high - low) / maxq`, stored as
 * layerquant's quantizing scale `s = fp32(1 / step)` and dequantized with `fp32(1 / s)`; integer zero
 * `round(-low * s)` (symmetric: `(maxq + 1) / 2`). maxq 0 (a 0-bit column): every code 0, value 0.
 */
export function gptqGrid(low: number, high: number, maxq: number, symmetric: boolean): { scale: number; zero: number; step: number } {
  return gridOfRange(low, fround(high - low), maxq, symmetric);
}

/** gptqGrid of a range given as its low end and its fp32 width (what BAQ stores per group). */
export function gridOfRange(low: number, range: number, maxq: number, symmetric: boolean): { scale: number; zero: number; step: number } {
  if (maxq === 0) return { scale: 0, zero: 0, step: 0 };
  const s = fround(1 / fround(range / maxq));
  const zero = symmetric ? (maxq + 1) / 2 : roundHalfEven(fround(-low * s)) + 0;
  return { scale: s, zero, step: fround(1 / s) };
}

/**
 * The column loop of GPTQ on a problem, in TypeScript (the oracle of the WebAssembly kernel). For each batch of
 * columns: each column is quantized on its group's grid, its error `e = (w - q) / U[c, c]` is fed back to the
 * batch's later columns (`w_j -= e U[c, j]`), and at the batch's end to every later column at once (the lazy batch
 * update `W[:, end:] -= E U[batch, end:]`). Every operation is fp32; each weight receives its updates in column order.
 */
export function solveGptqColumns(p: GptqProblem): void {
  const { rows, columns, weights: w, inverse: u, groupSize, groupOf, rangeAt, maxq, blockEnds, symmetric, low, high, codes } = p;
  let largestBlock = 0;
  for (let b = 0, start = 0; b < blockEnds.length; start = blockEnds[b++]!) largestBlock = Math.max(largestBlock, blockEnds[b]! - start);
  const error = new Float32Array(largestBlock * rows);
  const scale = new Float32Array(rows);
  const zero = new Float32Array(rows);
  const step = new Float32Array(rows);
  let gridGroup = -1;
  let gridMaxq = -1;
  let start = 0;
  for (let b = 0; b < blockEnds.length; b++) {
    const end = blockEnds[b]!;
    for (let c = start; c < end; c++) {
      const group = groupOf[c]!;
      const g0 = group * rows;
      if (rangeAt[c]) {
        for (let r = 0; r < rows; r++) {
          let lo = 0;
          let hi = 0;
          for (let j = c; j < c + groupSize; j++) {
            const v = w[j * rows + r]!;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
          }
          const [l, h] = settleRange(lo, hi, symmetric);
          low[g0 + r] = l;
          high[g0 + r] = h;
        }
      }
      const m = maxq[c]!;
      // the grids change with the group (a range just taken) or the column's width, not from column to column
      if (rangeAt[c] || group !== gridGroup || m !== gridMaxq) {
        for (let r = 0; r < rows; r++) {
          const grid = gptqGrid(low[g0 + r]!, high[g0 + r]!, m, symmetric);
          scale[r] = grid.scale;
          zero[r] = grid.zero;
          step[r] = grid.step;
        }
        gridGroup = group;
        gridMaxq = m;
      }
      const column = c * rows;
      const diagonal = u[c * columns + c]!;
      const e0 = (c - start) * rows;
      for (let r = 0; r < rows; r++) {
        const x = w[column + r]!;
        const q = Math.min(Math.max(roundHalfEven(fround(fround(x * scale[r]!) + zero[r]!)), 0), m);
        const value = fround(fround(q - zero[r]!) * step[r]!);
        codes[column + r] = q;
        error[e0 + r] = fround(fround(x - value) / diagonal);
      }
      for (let j = c + 1; j < end; j++) {
        const f = u[c * columns + j]!;
        const target = j * rows;
        for (let r = 0; r < rows; r++) w[target + r] = fround(w[target + r]! - fround(error[e0 + r]! * f));
      }
    }
    for (let j = end; j < columns; j++) {
      const target = j * rows;
      for (let k = 0; k < end - start; k++) {
        const f = u[(start + k) * columns + j]!;
        const e0 = k * rows;
        for (let r = 0; r < rows; r++) w[target + r] = fround(w[target + r]! - fround(error[e0 + r]! * f));
      }
    }
    start = end;
  }
}

/**
 * Ends of the lazy batches of `blockSize` columns. With groups fixed as they are reached, a batch ends before a group
 * that would overrun it, so every group opens in a batch that holds it whole or at the batch's start: its range is
 * then taken from fully updated weights.
 */
export function gptqBlockEnds(columns: number, blockSize: number, groupSize: number, dynamicGroups: boolean): Int32Array {
  const ends: number[] = [];
  for (let start = 0; start < columns; ) {
    let end = Math.min(start + blockSize, columns);
    if (dynamicGroups) {
      const firstInside = Math.ceil((start + 1) / groupSize) * groupSize;
      for (let g = firstInside; g < end; g += groupSize) {
        if (g + groupSize > end && end < columns) {
          end = g;
          break;
        }
      }
    }
    ends.push(end);
    start = end;
  }
  return Int32Array.from(ends);
}

/**
 * T[r, j] = sum_{k = i1..j} R[i0 + r, k] U[k, j] into block[r * n + j], for r < h and j >= i1 (the rows k >= i1 of `a`
 * hold U, zero left of their diagonal, so the sum may run to the end of a group of four columns). Four columns at a
 * time: U's strip packed contiguous, then four rows by four columns in registers (8 loads per 16 products).
 */
function blockTimesInverse(a: Float64Array, n: number, i0: number, h: number, i1: number, block: Float64Array, strip: Float64Array): void {
  const sums = new Float64Array(16);
  for (let j = i1; j < n; j += 4) {
    const cols = Math.min(4, n - j);
    const depth = j + cols - i1;
    for (let k = 0; k < depth; k++) {
      const from = (i1 + k) * n + j;
      const to = 4 * k;
      for (let c = 0; c < 4; c++) strip[to + c] = c < cols ? a[from + c]! : 0;
    }
    let r = 0;
    for (; r + 4 <= h; r += 4) {
      tile4x4(a, (i0 + r) * n + i1, n, strip, 0, 1, 4, depth, sums);
      for (let q = 0; q < 4; q++) for (let c = 0; c < cols; c++) block[(r + q) * n + j + c] = sums[4 * q + c]!;
    }
    for (; r < h; r++) {
      const x = (i0 + r) * n + i1;
      for (let c = 0; c < cols; c++) {
        let sum = 0;
        for (let k = 0; k < depth; k++) sum += a[x + k]! * strip[4 * k + c]!;
        block[r * n + j + c] = sum;
      }
    }
  }
}

/**
 * The 4 x 4 products of four rows of x and four columns of y over `depth` terms, in registers:
 * sums[4 q + c] = sum_k x[x0 + q xRow + k] * y[y0 + c yColumn + k yStep] (8 loads per 16 products).
 */
function tile4x4(x: Float64Array, x0: number, xRow: number, y: Float64Array, y0: number, yColumn: number, yStep: number, depth: number, sums: Float64Array): void {
  const x1 = x0 + xRow;
  const x2 = x1 + xRow;
  const x3 = x2 + xRow;
  let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
  let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
  for (let k = 0, yk = y0; k < depth; k++, yk += yStep) {
    const a0 = x[x0 + k]!, a1 = x[x1 + k]!, a2 = x[x2 + k]!, a3 = x[x3 + k]!;
    const b0 = y[yk]!, b1 = y[yk + yColumn]!, b2 = y[yk + 2 * yColumn]!, b3 = y[yk + 3 * yColumn]!;
    s00 += a0 * b0; s01 += a0 * b1; s02 += a0 * b2; s03 += a0 * b3;
    s10 += a1 * b0; s11 += a1 * b1; s12 += a1 * b2; s13 += a1 * b3;
    s20 += a2 * b0; s21 += a2 * b1; s22 += a2 * b2; s23 += a2 * b3;
    s30 += a3 * b0; s31 += a3 * b1; s32 += a3 * b2; s33 += a3 * b3;
  }
  sums[0] = s00; sums[1] = s01; sums[2] = s02; sums[3] = s03;
  sums[4] = s10; sums[5] = s11; sums[6] = s12; sums[7] = s13;
  sums[8] = s20; sums[9] = s21; sums[10] = s22; sums[11] = s23;
  sums[12] = s30; sums[13] = s31; sums[14] = s32; sums[15] = s33;
}
