import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InvalidDataError, createRegistry, matrixTensorName } from '@layerquant/core';
import { parseFnormCsv } from '@layerquant/allocators';
import { shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { openCheckpoint } from '@layerquant/tensor-io';
import { kurtosis, pearsonKurtosis } from './kurtosis.js';
import { seededRandom } from './calibration.js';
import { SENSITIVITY_METRICS, kurtosisMetric } from './metrics.js';

/** Exactly rounded float64 sum (Shewchuk's algorithm, as Python's math.fsum). */
function exactSum(values: Iterable<number>): number {
  const partials: number[] = [];
  for (let x of values) {
    let i = 0;
    for (let y of partials) {
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) partials[i++] = lo;
      x = hi;
    }
    partials.length = i;
    partials.push(x);
  }
  return partials.reduce((a, b) => a + b, 0);
}

/** The float64 oracle: central moments from exactly rounded sums. */
function exactKurtosis(values: Float32Array): number {
  const n = values.length;
  const mean = exactSum(values) / n;
  const d = Array.from(values, (v) => v - mean);
  const m2 = exactSum(d.map((x) => x * x)) / n;
  const m4 = exactSum(d.map((x) => x ** 4)) / n;
  return m4 / (m2 * m2);
}

describe('kurtosis (Pearson, biased)', () => {
  it('equals an exactly summed float64 computation within 1e-9 relative, with heavy tails and a large offset', () => {
    const random = seededRandom(7);
    const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    const heavy = new Float32Array(65536).map(() => 12 + normal() / Math.sqrt(Math.abs(normal()) + 0.05));
    const uniform = new Float32Array(4096).map(() => random() - 0.5);
    for (const values of [heavy, uniform]) {
      const expected = exactKurtosis(values);
      expect(Math.abs(kurtosis(values) / expected - 1)).toBeLessThan(1e-9);
    }
    // Known values: uniform -> 1.8, two points -> 1.
    expect(kurtosis(uniform)).toBeCloseTo(1.8, 1);
    expect(pearsonKurtosis([1, -1, 1, -1])).toBe(1);
  });

  it('reproduces the kurtosis column of the shipped oracle fnorm.csv for all 224 matrices within 1e-9', async () => {
    const oracle = parseFnormCsv(readFileSync(`${shippedOraclesDir}/fnorm.csv`, 'utf8'));
    const checkpoint = await openCheckpoint(shippedModelDir);
    const seen = new Set<string>();
    let worst = 0;
    for (const row of oracle.rows) {
      const name = matrixTensorName(row.layer, row.module);
      if (seen.has(name)) continue;
      seen.add(name);
      const weight = await checkpoint.read(name);
      worst = Math.max(worst, Math.abs(kurtosis(weight) / row.kurtosis! - 1));
    }
    expect(seen.size).toBe(224);
    expect(worst).toBeLessThan(1e-9);

    // The same through the metric plug-in, as an app's registry holds it.
    const registry = createRegistry('sensitivity metric', SENSITIVITY_METRICS);
    expect(registry.ids()).toEqual(['activation-sensitivity', 'fnorm', 'kurtosis', 'measured', 'kld']);
    const table = await kurtosisMetric.measure(checkpoint, {});
    expect(table.rows).toHaveLength(224);
    expect(table.rows.find((r) => r.layer === 0 && r.module === 'self_attn.q_proj')!.kurtosis).toBe(kurtosis(await checkpoint.read(matrixTensorName(0, 'self_attn.q_proj'))));
    await checkpoint.close();
  });

  it('rejects empty, constant and non-finite matrices with the tensor named', () => {
    expect(() => kurtosis(new Float32Array(0))).toThrow(InvalidDataError);
    expect(() => kurtosis({ name: 'model.layers.0.mlp.up_proj.weight', data: new Float32Array(8).fill(0.5) })).toThrow(/mlp\.up_proj.*constant/);
    expect(() => kurtosis(new Float32Array([1, Number.NaN, 2]))).toThrow(/non-finite/);
  });
});
