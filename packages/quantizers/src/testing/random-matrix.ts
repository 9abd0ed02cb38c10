import { seededRandom, type WeightTensor } from '@layerquant/core';

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
