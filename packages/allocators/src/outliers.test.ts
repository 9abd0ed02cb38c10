import { readFileSync } from 'node:fs';
import { llama2PaperDir, shippedOraclesDir } from '@layerquant/fixtures';
import { describe, expect, it } from 'vitest';
import {
  consecutiveLayerDifferences,
  consecutiveLayerRatios,
  detectOutlierLayers,
  kurtosisOutliers,
  parseFnormCsv,
  parseSensitivityCsv,
  sensitivityOutliers,
  trimmedMeanAndDeviation,
  type ModelStats,
} from './index.js';

const BASE = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8, 3, 2, 7, 9.5, 50];

/** np.resize(BASE, n) * np.linspace(1, 2, n), the input of the scipy figures below. */
function sample(n: number): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => BASE[i % BASE.length]! * (1 + i / (n - 1)));
}

describe('trimmedMeanAndDeviation', () => {
  // scipy.stats.mstats.trimmed_mean / trimmed_std(limits=(0.05, 0.05), ddof=1), scipy 1.x via /usr/bin/python3.
  const scipy: [number, number, number][] = [
    [31, 7.228735632183907, 3.8553583011173593],
    [32, 7.536021505376344, 4.291693315476733],
    [19, 7.6228070175438605, 4.906099719107842],
    [20, 7.412280701754387, 4.23569297725364],
    [40, 6.987535612535613, 3.7924448804722557],
  ];
  it.each(scipy)('matches scipy for n = %i (k = floor(0.05 n) trimmed each end)', (n, mean, deviation) => {
    const result = trimmedMeanAndDeviation(sample(n));
    expect(result.mean).toBeCloseTo(mean, 12);
    expect(result.deviation).toBeCloseTo(deviation, 12);
  });
});

describe('consecutive layer changes', () => {
  it('are ratios for sensitivity and differences for kurtosis', () => {
    expect([...consecutiveLayerRatios([1, 2, 8])]).toEqual([2, 4]);
    expect([...consecutiveLayerDifferences([1, 2, 8])]).toEqual([1, 6]);
  });
});

describe('detectOutlierLayers', () => {
  it('reports layer i+1 of a jump D_i, most extreme first, and top_m keeps the first ones', () => {
    const values = Float64Array.from({ length: 32 }, (_, i) => 1 + 0.01 * Math.sin(i));
    values[5] = 3; // D_4 and D_5 jump
    values[20] = 1.5;
    const all = detectOutlierLayers(values, { change: 'difference', topM: 0 });
    expect(all.map((o) => o.layer).sort((a, b) => a - b)).toEqual([5, 6, 20, 21]);
    for (let i = 1; i < all.length; i++) expect(all[i - 1]!.zScore).toBeGreaterThanOrEqual(all[i]!.zScore);
    expect(all.slice(0, 2).map((o) => o.layer).sort()).toEqual([5, 6]);
    expect(detectOutlierLayers(values, { change: 'difference', topM: 1 })).toEqual([all[0]]);
    expect(detectOutlierLayers(values, { change: 'difference', topM: 2, threshold: 1e9 })).toEqual([]);
  });
  it('rejects a bad top_m and too few layers', () => {
    expect(() => detectOutlierLayers([1, 2, 3, 4, 5], { change: 'ratio', topM: -1 })).toThrow(/topM/);
    expect(() => detectOutlierLayers([1, 2, 3], { change: 'ratio' })).toThrow(/at least 4 layers/);
  });
});

function load(dir: string): ModelStats {
  return {
    fnorm: parseFnormCsv(readFileSync(`${dir}/fnorm.csv`, 'utf8'), `${dir}/fnorm.csv`),
    sensitivity: parseSensitivityCsv(readFileSync(`${dir}/sensitivity.csv`, 'utf8'), `${dir}/sensitivity.csv`),
    source: dir,
  };
}
const layers = (outliers: Record<string, readonly { layer: number }[]>): Record<string, number[]> =>
  Object.fromEntries(Object.entries(outliers).map(([m, list]) => [m, list.map((o) => o.layer)]));

describe('outlier layers of the shipped model match the PyTorch oracle (oracles.json)', () => {
  const stats = load(shippedOraclesDir);
  const oracle = JSON.parse(readFileSync(`${shippedOraclesDir}/oracles.json`, 'utf8')).outliers as Record<string, Record<string, Record<string, number[]>>>;
  it.each([1, 0])('SensiBoost and KurtBoost, top_m = %i', (topM) => {
    expect(layers(sensitivityOutliers(stats, 32, { topM }))).toEqual(oracle.sensiboost![String(topM)]);
    expect(layers(kurtosisOutliers(stats, 32, { topM }))).toEqual(oracle.kurtboost![String(topM)]);
  });
});

describe('outlier layers of Llama-2-7B (the authors\' data)', () => {
  it('SensiBoost top_m=1: q/k/v -> layer 31; o, gate/up, down -> layer 1 (SPEC example)', () => {
    const stats = load(llama2PaperDir);
    expect(layers(sensitivityOutliers(stats, 32, { topM: 1 }))).toEqual({
      'self_attn.q_proj': [31],
      'self_attn.k_proj': [31],
      'self_attn.v_proj': [31],
      'self_attn.o_proj': [1],
      'mlp.gate_proj': [1],
      'mlp.up_proj': [1],
      'mlp.down_proj': [1],
    });
  });
});
