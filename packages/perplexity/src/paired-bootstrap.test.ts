import { seededRandom } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { pairedBootstrap, pairedBootstrapKld } from './paired-bootstrap.js';

/**
 * The mean-KLD paired bootstrap against a float64 reference written here: the same window draws as the perplexity
 * bootstrap (core's seededRandom, index = floor(random * n), n draws per resample), counted per window, the mean
 * KLD per scored token of each side over the drawn windows, and type-7 quantiles of the sorted differences.
 */
function reference(a: number[], b: number[], count: number[], resamples: number, seed: number) {
  const n = a.length;
  const random = seededRandom(seed);
  const diffs: number[] = [];
  for (let r = 0; r < resamples; r++) {
    const times = new Array<number>(n).fill(0);
    for (let k = 0; k < n; k++) times[Math.floor(random() * n)]! += 1;
    let sa = 0;
    let sb = 0;
    let sc = 0;
    for (let i = 0; i < n; i++) {
      sa += times[i]! * a[i]!;
      sb += times[i]! * b[i]!;
      sc += times[i]! * count[i]!;
    }
    diffs.push(sa / sc - sb / sc);
  }
  diffs.sort((x, y) => x - y);
  const at = (p: number) => {
    const pos = p * (diffs.length - 1);
    const i = Math.floor(pos);
    return i + 1 < diffs.length ? diffs[i]! * (1 - (pos - i)) + diffs[i + 1]! * (pos - i) : diffs[i]!;
  };
  const total = (x: number[]) => x.reduce((s, v) => s + v, 0);
  return { low: at(0.025), high: at(0.975), difference: total(a) / total(count) - total(b) / total(count) };
}

describe('pairedBootstrapKld', () => {
  it('equals the float64 reference on random windows of unequal lengths, and is seeded', () => {
    const random = seededRandom(3);
    const n = 41;
    const count = Array.from({ length: n }, () => 100 + Math.floor(400 * random()));
    const b = count.map((c) => c * 0.05 * (1 + random()));
    const a = b.map((x, i) => x + count[i]! * 0.01 * (random() - 0.2));
    const ours = pairedBootstrapKld({ kld: a, count }, { kld: b, count }, { resamples: 400, seed: 9 });
    const expected = reference(a, b, count, 400, 9);
    expect(ours.difference).toBeCloseTo(expected.difference, 14);
    expect(Math.abs(ours.low - expected.low)).toBeLessThan(1e-12);
    expect(Math.abs(ours.high - expected.high)).toBeLessThan(1e-12);
    expect(ours.low).toBeLessThan(ours.difference);
    expect(ours.high).toBeGreaterThan(ours.difference);
    expect(ours.low).toBeGreaterThan(0);
    expect(pairedBootstrapKld({ kld: a, count }, { kld: b, count }, { resamples: 400, seed: 10 }).low).not.toBe(ours.low);
  });

  it('refuses windows that differ in number or in scored tokens; the perplexity bootstrap is unchanged by the shared resampler', () => {
    const count = [10, 10, 10];
    expect(() => pairedBootstrapKld({ kld: [1, 2, 3], count }, { kld: [1, 2], count: [10, 10] })).toThrow(/same windows/);
    expect(() => pairedBootstrapKld({ kld: [1, 2, 3], count }, { kld: [1, 2, 3], count: [10, 10, 11] })).toThrow(/same windows/);
    // exp of a mean NLL: with all weights 1 and equal NLL on both sides the difference and interval are 0.
    const same = pairedBootstrap({ nll: [1, 2, 3], weights: [1, 1, 1] }, { nll: [1, 2, 3], weights: [1, 1, 1] }, { resamples: 20 });
    expect([same.difference, same.low, same.high]).toEqual([0, 0, 0]);
  });
});
