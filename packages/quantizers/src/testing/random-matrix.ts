import { seededRandom, type InputHessian, type WeightTensor } from '@layerquant/core';

/** core's one seeded generator (mulberry32); re-exported for the quantizer tests. */
export { seededRandom };

/** A [rows, columns] float32 matrix of roughly Gaussian values times `scale`, with a few outliers when `outliers`. */
export function randomMatrix(rows: number, columns: number, seed: number, scale = 0.02, outliers = 0): WeightTensor {
  const random = seededRandom(seed);
  const data = new Float32Array(rows * columns);
  for (let i = 0; i < data.length; i++) {
    // sum of uniforms: cheap, bell-shaped
    data[i] = (random() + random() + random() + random() - 2) * scale;
  }
  for (let i = 0; i < outliers; i++) data[Math.floor(random() * data.length)] = (random() - 0.5) * 40 * scale;
  return { name: `random.${seed}.weight`, dtype: 'F32', shape: [rows, columns], data };
}

/**
 * Inputs X [samples, columns] of a linear layer with correlated columns of unequal scale (as real activations have),
 * and their Hessian `H = 2 X^T X / samples` (float64): test data for calibrated quantizers. `deadColumns` inputs
 * are zero on every sample.
 */
export function randomInputs(columns: number, samples: number, seed: number, deadColumns: readonly number[] = []): { inputs: Float32Array; hessian: InputHessian } {
  const random = seededRandom(seed);
  const normal = () => random() + random() + random() + random() - 2;
  const scales = Float64Array.from({ length: columns }, () => 0.3 + 2 * random() ** 2);
  const inputs = new Float32Array(samples * columns);
  for (let n = 0; n < samples; n++) {
    // a shared factor per sample correlates the columns
    const shared = normal();
    let previous = 0;
    for (let c = 0; c < columns; c++) {
      const value = (normal() + 0.6 * shared + 0.4 * previous) * scales[c]!;
      previous = value / scales[c]!;
      inputs[n * columns + c] = deadColumns.includes(c) ? 0 : value;
    }
  }
  return { inputs, hessian: hessianOfInputs(inputs, samples, columns) };
}

/** `2 X^T X / samples` in float64, the plain way (an oracle for the pipeline's collection). */
export function hessianOfInputs(inputs: Float32Array, samples: number, columns: number): InputHessian {
  const data = new Float64Array(columns * columns);
  for (let n = 0; n < samples; n++) {
    const row = n * columns;
    for (let i = 0; i < columns; i++) {
      const xi = inputs[row + i]!;
      if (xi === 0) continue;
      for (let j = 0; j < columns; j++) data[i * columns + j]! += xi * inputs[row + j]!;
    }
  }
  for (let i = 0; i < data.length; i++) data[i]! *= 2 / samples;
  return { columns, samples, data };
}

/**
 * tr((W - V) H (W - V)^T) in float64, over the rows of `weights` ([rows, hessian.columns], row-major): the summed
 * squared output error of V in place of W on inputs whose Hessian is H (times N/2), GPTQ's objective.
 */
export function hessianWeightedError(weights: ArrayLike<number>, values: ArrayLike<number>, hessian: InputHessian): number {
  const n = hessian.columns;
  const h = hessian.data;
  const d = new Float64Array(n);
  let total = 0;
  for (let r = 0; r < weights.length / n; r++) {
    for (let j = 0; j < n; j++) d[j] = weights[r * n + j]! - values[r * n + j]!;
    for (let i = 0; i < n; i++) {
      if (d[i] === 0) continue;
      let hd = 0;
      for (let j = 0; j < n; j++) hd += h[i * n + j]! * d[j]!;
      total += d[i]! * hd;
    }
  }
  return total;
}
