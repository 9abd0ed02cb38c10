import { readFileSync } from 'node:fs';
import { BUDGET_STOPS, InvalidOptionError, InvalidDataError, configName } from '@layerquant/core';
import { llama2PaperDir, shippedOraclesDir } from '@layerquant/fixtures';
import { describe, expect, it } from 'vitest';
import {
  ablationAllocator,
  allocationConfigNames,
  allocationCsvConfigs,
  formatAllocationCsv,
  kurtBoostAllocator,
  kurtosisOutliers,
  ladderStep,
  parseAllocationCsv,
  parseFnormCsv,
  parseSensitivityCsv,
  sensiBoostAllocator,
  sensitivityOutliers,
  uniformAllocator,
  type ModelStats,
} from './index.js';

function load(dir: string): ModelStats {
  return {
    fnorm: parseFnormCsv(readFileSync(`${dir}/fnorm.csv`, 'utf8'), `${dir}/fnorm.csv`),
    sensitivity: parseSensitivityCsv(readFileSync(`${dir}/sensitivity.csv`, 'utf8'), `${dir}/sensitivity.csv`),
    source: dir,
  };
}

describe('SensiBoost and KurtBoost reproduce the authors\' Llama-2-7B allocations (expected-allocations/)', () => {
  const stats = load(llama2PaperDir);
  const cases = ['sensi', 'kurt'].flatMap((method) => [2, 3].flatMap((stop) => [0, 1].map((topM) => [method, stop, topM] as const)));
  it.each(cases)('%s-boost, boost_stop %i, top_m %i: identical config for all 224 matrices at every budget', (method, boostStop, topM) => {
    const rows = parseAllocationCsv(readFileSync(`${llama2PaperDir}/expected-allocations/${method}-boost-${boostStop}-${topM}.csv`, 'utf8'));
    const budgets = [...new Set(rows.map((r) => r.budget))];
    expect(budgets).toEqual([3.13, 3.25, 3.51, 4.13, 4.25, 4.51]);
    for (const budget of budgets) {
      const expected = Object.fromEntries(allocationCsvConfigs(rows, budget));
      const allocator = method === 'sensi' ? sensiBoostAllocator : kurtBoostAllocator;
      const allocation = allocator.allocate(stats, { budget, boostStop, topM });
      expect(Object.keys(expected)).toHaveLength(224);
      expect(allocationConfigNames(allocation)).toEqual(expected);
    }
  });
});

describe('allocation CSV in the authors\' layout', () => {
  it('writes the authors\' sensi-boost-2-1 rows at 3.25 line for line (memmb, totals and all)', () => {
    const stats = load(llama2PaperDir);
    const allocation = sensiBoostAllocator.allocate(stats, { budget: 3.25, boostStop: 2, topM: 1 });
    const ours = formatAllocationCsv(allocation, { model: 'Llama-2-7b-hf', totalParams: 6738415616 }).trim().split('\n');
    const text = readFileSync(`${llama2PaperDir}/expected-allocations/sensi-boost-2-1.csv`, 'utf8').trim().split('\n');
    expect(ours[0]).toBe(text[0]);
    expect(ours.slice(1)).toEqual(text.slice(1).filter((line) => line.split(',')[5] === '3.25'));
    expect(parseAllocationCsv(ours.join('\n'))).toHaveLength(224);
  });
});

describe('bits per weight of the boosted allocations of the shipped model (oracles.json table)', () => {
  const stats = load(shippedOraclesDir);
  const table = JSON.parse(readFileSync(`${shippedOraclesDir}/oracles.json`, 'utf8')).table as { method: string; budget: number; bpp: number }[];
  it('match for hqq (uniform), sensiboost and kurtboost at stop 2/top 1 and stop 3/all', () => {
    let checked = 0;
    for (const row of table) {
      const m = /^(sensiboost|kurtboost)-(\d)-(\d)$/.exec(row.method);
      let bpp: number;
      if (row.method === 'hqq') bpp = uniformAllocator.allocate(stats, { budget: row.budget }).totals.bpp;
      else if (m) {
        const allocator = m[1] === 'sensiboost' ? sensiBoostAllocator : kurtBoostAllocator;
        bpp = allocator.allocate(stats, { budget: row.budget, boostStop: Number(m[2]), topM: Number(m[3]) }).totals.bpp;
      } else continue;
      expect(bpp, `${row.method} @ ${row.budget}`).toBeCloseTo(row.bpp, 12);
      checked++;
    }
    expect(checked).toBe(40); // 8 budgets x (hqq + 4 boost variants)
  });
});

describe('the ladder of budget stops', () => {
  it('moves up boost_stop stops and caps at the top (8.51)', () => {
    expect(ladderStep(4, 2)).toBe(6);
    expect(ladderStep(10, 3)).toBe(11);
    const stats = load(llama2PaperDir);
    const allocation = sensiBoostAllocator.allocate(stats, { budget: 8.25, boostStop: 3, topM: 1 });
    expect(allocation.baseConfig).toBe('b8g64');
    expect(allocation.boostConfig).toBe(configName(BUDGET_STOPS[11]!.config));
    expect(allocation.totals.memoryMB).toBeGreaterThan(uniformAllocator.allocate(stats, { budget: 8.25 }).totals.memoryMB);
  });
  it('uniform gives every matrix the stop\'s config, with the paper\'s bpp and MB', () => {
    const stats = load(llama2PaperDir);
    const allocation = uniformAllocator.allocate(stats, { budget: 4.25 });
    expect(new Set(Object.values(allocationConfigNames(allocation)))).toEqual(new Set(['b4g64']));
    expect(allocation.totals.bpp).toBe(4 + 16 / 64 + 32 / (64 * 128));
    expect(allocation.totals.params).toBe(6476005376);
    expect(allocation.totals.memoryMB).toBeCloseTo((allocation.totals.bpp * 6476005376) / 8 / 2 ** 20, 9);
  });
  it('rejects a budget off the ladder, a bad boost_stop or top_m, naming the option', () => {
    const stats = load(llama2PaperDir);
    expect(() => uniformAllocator.allocate(stats, { budget: 3.3 })).toThrow(InvalidOptionError);
    expect(() => sensiBoostAllocator.allocate(stats, { budget: 3.25, boostStop: 0 })).toThrow(/boostStop/);
    expect(() => kurtBoostAllocator.allocate(stats, { budget: 3.25, topM: 1.5 })).toThrow(/topM/);
    expect(() => sensiBoostAllocator.allocate({ fnorm: stats.fnorm }, { budget: 3.25 })).toThrow(InvalidDataError);
    expect(() => sensiBoostAllocator.allocate(stats, { budget: 3.25, sensitivity: { bits: 5, groupSize: 64 } })).toThrow(/no rows for nbits=5/);
  });
  it('SensiBoost can read another sensitivity config of the table', () => {
    const stats = load(llama2PaperDir);
    const a = sensiBoostAllocator.allocate(stats, { budget: 3.25, topM: 0, sensitivity: { bits: 3, groupSize: 64 } });
    expect(a.options).toMatchObject({ sensitivityBits: 3, sensitivityGroupSize: 64 });
  });
});

describe('ablation', () => {
  const stats = load(llama2PaperDir);
  it('draws as many layers per module as the imitated method boosts, none of them an outlier, seeded', () => {
    for (const imitate of ['sensiboost', 'kurtboost'] as const) {
      const a = ablationAllocator.allocate(stats, { budget: 3.25, boostStop: 2, topM: 0, imitate, seed: 7 });
      const b = ablationAllocator.allocate(stats, { budget: 3.25, boostStop: 2, topM: 0, imitate, seed: 7 });
      expect(a).toEqual(b);
      const sensitivity = sensitivityOutliers(stats, 32, { topM: 0 });
      const kurtosis = kurtosisOutliers(stats, 32, { topM: 0 });
      const imitated = imitate === 'sensiboost' ? sensitivity : kurtosis;
      for (const [module, drawn] of Object.entries(a.boosted)) {
        const key = module as keyof typeof sensitivity;
        expect(drawn).toHaveLength(imitated[key].length);
        expect(new Set(drawn).size).toBe(drawn.length);
        for (const layer of drawn) {
          expect(layer).toBeGreaterThanOrEqual(0);
          expect(layer).toBeLessThanOrEqual(30); // the authors draw from range(max_layer)
          expect(sensitivity[key].map((o) => o.layer)).not.toContain(layer);
          expect(kurtosis[key].map((o) => o.layer)).not.toContain(layer);
        }
      }
      const boostedCount = Object.values(allocationConfigNames(a)).filter((c) => c === a.boostConfig).length;
      expect(a.boostConfig).toBe('b4g128');
      expect(boostedCount).toBe(Object.values(imitated).reduce((s, list) => s + list.length, 0));
    }
  });
  it('different seeds draw different layers', () => {
    const draws = new Set([1, 2, 3, 4].map((seed) => JSON.stringify(ablationAllocator.allocate(stats, { budget: 3.25, topM: 0, seed }).boosted)));
    expect(draws.size).toBeGreaterThan(1);
  });
});
