// Weighted least-squares fits of one block of values to a uniform grid, the numeric core of layerquant's own
// encoders (k-quants, and legacy types under an importance vector). The objective is sum_i w_i (x_i - xhat_i)^2,
// where w_i is the importance of the value's input channel (llama.cpp's imatrix: the mean squared activation), so
// the error minimized is the expected squared error of the layer's output under a diagonal activation covariance.

/** Relative steps of the scale grid searched around the range-filling scale. */
const SEARCH_STEPS = 10;
const SEARCH_SPAN = 1;

export interface AffineFit {
  /** xhat = scale * l + offset, l in [0, nmax]. */
  scale: number;
  offset: number;
  error: number;
}

/**
 * Best (scale >= 0, offset) with xhat = scale * l + offset, l = clamp(round((x - offset) / scale), 0, nmax), over a
 * grid of scales around (max - min) / nmax, each refitted by weighted least squares. `offsetAtMost0` forces
 * offset <= 0 (the k-quants store a non-negative "min" that is subtracted).
 */
export function fitAffine(
  x: Float32Array | Float64Array, w: Float32Array | Float64Array, start: number, n: number, nmax: number, offsetAtMost0: boolean,
): AffineFit {
  let min = Infinity;
  let max = -Infinity;
  let sw = 0;
  let swx = 0;
  let swxx = 0;
  for (let i = 0; i < n; i++) {
    const v = x[start + i]!;
    const wi = w[start + i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    sw += wi;
    swx += wi * v;
    swxx += wi * v * v;
  }
  if (offsetAtMost0 && min > 0) min = 0;
  if (max <= min) {
    return { scale: 0, offset: offsetAtMost0 ? min : max, error: offsetAtMost0 ? sumSquaredError(x, w, start, n, min) : 0 };
  }
  let bestScale = (max - min) / nmax;
  let bestOffset = min;
  let bestError = Infinity;
  for (let step = -SEARCH_STEPS; step <= SEARCH_STEPS; step++) {
    const iscale = (nmax + (SEARCH_SPAN * step) / SEARCH_STEPS) / (max - min);
    if (iscale <= 0) continue;
    let sl = 0;
    let sll = 0;
    let slx = 0;
    for (let i = 0; i < n; i++) {
      let l = Math.round(iscale * (x[start + i]! - min));
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      const wi = w[start + i]!;
      sl += wi * l;
      sll += wi * l * l;
      slx += wi * l * x[start + i]!;
    }
    const det = sw * sll - sl * sl;
    let scale: number;
    let offset: number;
    if (det > 0) {
      scale = (sw * slx - swx * sl) / det;
      offset = (sll * swx - sl * slx) / det;
      if (offsetAtMost0 && offset > 0) {
        offset = 0;
        scale = sll > 0 ? slx / sll : 0;
      }
    } else {
      scale = (max - min) / nmax;
      offset = min;
    }
    if (scale < 0) continue;
    // sum w (scale l + offset - x)^2 expanded in the sums already held.
    const error = scale * scale * sll + 2 * scale * offset * sl + offset * offset * sw - 2 * scale * slx - 2 * offset * swx + swxx;
    if (error < bestError) {
      bestScale = scale;
      bestOffset = offset;
      bestError = error;
    }
  }
  return { scale: bestScale, offset: bestOffset, error: bestError };
}

function sumSquaredError(x: Float32Array | Float64Array, w: Float32Array | Float64Array, start: number, n: number, value: number): number {
  let e = 0;
  for (let i = 0; i < n; i++) e += w[start + i]! * (x[start + i]! - value) ** 2;
  return e;
}

export interface SymmetricFit {
  /** xhat = scale * l, l in [lo, hi]. */
  scale: number;
  error: number;
}

/**
 * Best signed scale with xhat = scale * l, l = clamp(round(x / scale), lo, hi) (lo = -hi - 1 or -hi), over grids of
 * scales that map the largest |x| near lo or near hi, each refitted by weighted least squares.
 */
export function fitSymmetric(x: Float32Array | Float64Array, w: Float32Array | Float64Array, start: number, n: number, lo: number, hi: number): SymmetricFit {
  let amax = 0;
  let extreme = 0;
  let swxx = 0;
  for (let i = 0; i < n; i++) {
    const v = x[start + i]!;
    swxx += w[start + i]! * v * v;
    if (Math.abs(v) > amax) {
      amax = Math.abs(v);
      extreme = v;
    }
  }
  if (amax === 0) return { scale: 0, error: 0 };
  let bestScale = 0;
  let bestError = swxx;
  for (let sideIndex = 0; sideIndex < 2; sideIndex++) {
    const side = sideIndex === 0 ? lo : hi;
    if (side === 0) continue;
    for (let step = -SEARCH_STEPS; step <= SEARCH_STEPS; step++) {
      // Map the extreme value to `side` (plus a fraction of a step): its sign decides the scale's.
      const target = side + (Math.sign(side) * SEARCH_SPAN * step) / SEARCH_STEPS;
      if (Math.sign(target) !== Math.sign(side)) continue;
      const iscale = target / extreme;
      let slx = 0;
      let sll = 0;
      for (let i = 0; i < n; i++) {
        let l = Math.round(iscale * x[start + i]!);
        l = l < lo ? lo : l > hi ? hi : l;
        const wi = w[start + i]!;
        slx += wi * l * x[start + i]!;
        sll += wi * l * l;
      }
      if (sll <= 0) continue;
      const error = swxx - (slx * slx) / sll;
      if (error < bestError) {
        bestScale = slx / sll;
        bestError = error;
      }
    }
  }
  return { scale: bestScale, error: bestError };
}

/** Weighted error of a block at a given affine grid, with each value rounded to its nearest level. */
export function affineError(x: Float32Array | Float64Array, w: Float32Array | Float64Array, start: number, n: number, scale: number, offset: number, nmax: number): number {
  let e = 0;
  if (scale === 0) {
    for (let i = 0; i < n; i++) e += w[start + i]! * (x[start + i]! - offset) ** 2;
    return e;
  }
  const inv = 1 / scale;
  for (let i = 0; i < n; i++) {
    let l = Math.round((x[start + i]! - offset) * inv);
    l = l < 0 ? 0 : l > nmax ? nmax : l;
    e += w[start + i]! * (scale * l + offset - x[start + i]!) ** 2;
  }
  return e;
}

/** Weighted error of a block at a given symmetric grid, each value rounded to its nearest level. */
export function symmetricError(x: Float32Array | Float64Array, w: Float32Array | Float64Array, start: number, n: number, scale: number, lo: number, hi: number): number {
  let e = 0;
  if (scale === 0) {
    for (let i = 0; i < n; i++) e += w[start + i]! * x[start + i]! ** 2;
    return e;
  }
  const inv = 1 / scale;
  for (let i = 0; i < n; i++) {
    let l = Math.round(x[start + i]! * inv);
    l = l < lo ? lo : l > hi ? hi : l;
    e += w[start + i]! * (scale * l - x[start + i]!) ** 2;
  }
  return e;
}
