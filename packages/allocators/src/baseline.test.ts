import { BUDGET_STOPS, bitsPerWeight, parseConfigList } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { allocateMethod, extraMemoryPercent, matricesOf, parseMethodName, uniformBaseline } from './index.js';
import { syntheticStats } from './testing/synthetic-stats.js';

const stats = syntheticStats({ layers: 4 });
const params = matricesOf(stats).reduce((s, m) => s + m.params, 0);

describe('the HQQ uniform baseline of extra memory', () => {
  it('is every matrix at the stop of the budget; none between stops unless floored to the stop below', () => {
    const stop = BUDGET_STOPS.find((s) => s.budget === 3.25)!;
    const at = uniformBaseline(stats, { budget: 3.25 })!;
    expect(at.matrices.every((m) => m.config !== null && m.config.bits === stop.config.bits && m.config.groupSize === stop.config.groupSize)).toBe(true);
    // Paper accounting computed here: params x bits per weight of the stop's config, in MiB.
    expect(at.totals.memoryMB).toBeCloseTo((params * bitsPerWeight(stop.config)) / 8 / 2 ** 20, 9);
    expect(uniformBaseline(stats, { budget: 3.3 })).toBeUndefined();
    expect(uniformBaseline(stats, { budget: 3.3, floorToStop: true })!.budget).toBe(3.25);
    const ladder = parseConfigList('b2g64,b4g64');
    expect(uniformBaseline(stats, { budget: bitsPerWeight(ladder[1]!), configs: ladder })!.matrices[0]!.config!.bits).toBe(4);
  });

  it('extra memory is the allocation over the baseline in percent, NaN without one', () => {
    const higher = allocateMethod(parseMethodName('hqq'), stats, { budget: 4.25 });
    const baseline = uniformBaseline(stats, { budget: 3.25 })!;
    // Every matrix at b4g64 against every matrix at b3g64: the ratio of the two configs' bits per weight.
    const [b3, b4] = parseConfigList('b3g64,b4g64');
    expect(extraMemoryPercent(higher, baseline)).toBeCloseTo(100 * (bitsPerWeight(b4!) / bitsPerWeight(b3!) - 1), 9);
    expect(extraMemoryPercent(baseline, baseline)).toBe(0);
    expect(extraMemoryPercent(higher, undefined)).toBeNaN();
  });
});
