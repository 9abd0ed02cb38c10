import { InvalidDataError } from '@layerquant/core';

/**
 * Pearson (not excess) kurtosis of all values, biased: `m4 / m2^2` with central moments over n (normal = 3),
 * as the authors compute it (`scipy.stats.kurtosis(w, fisher=False, bias=True)`).
 * Two passes in float64 (mean first, then the moments), so float32 weights lose nothing to cancellation.
 */
export function pearsonKurtosis(values: ArrayLike<number>, source = 'matrix'): number {
  const n = values.length;
  if (n === 0) throw new InvalidDataError(source, 'has no values; kurtosis needs at least one');
  let sum = 0;
  for (let i = 0; i < n; i++) sum += values[i]!;
  const mean = sum / n;
  let m2 = 0;
  let m4 = 0;
  for (let i = 0; i < n; i++) {
    const d = values[i]! - mean;
    const d2 = d * d;
    m2 += d2;
    m4 += d2 * d2;
  }
  m2 /= n;
  m4 /= n;
  if (!Number.isFinite(m4)) throw new InvalidDataError(source, 'has non-finite values; kurtosis is undefined');
  // A constant matrix has no spread: scipy answers NaN, which no table can use; say so instead.
  if (m2 === 0) throw new InvalidDataError(source, 'is constant (zero variance); kurtosis is undefined');
  return m4 / (m2 * m2);
}

/** Kurtosis of one weight matrix (any shape; all its values). */
export function kurtosis(matrix: { readonly name?: string; readonly data: ArrayLike<number> } | ArrayLike<number>): number {
  if ('data' in matrix && typeof matrix.data === 'object') return pearsonKurtosis(matrix.data, matrix.name ? `tensor "${matrix.name}"` : 'matrix');
  return pearsonKurtosis(matrix as ArrayLike<number>);
}
