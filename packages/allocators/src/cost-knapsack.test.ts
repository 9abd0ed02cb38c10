import { quantConfig, type MatrixAllocation, type MatrixInfo, type QuantConfig } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { buildCostProblem, solveCostProblem, type CostProblem, type SizeBudget } from './cost-knapsack.js';
import { seededRandom } from './random.js';

// A format whose file is not the sum of its units: each distinct config adds a shared part, and mixing widths adds
// more (as a graph's shared nodes and per-config metadata do). The oracle is enumeration of every allocation.
const LADDER: readonly QuantConfig[] = [quantConfig(2, 64), quantConfig(4, 64), quantConfig(8, 64)];
const UNITS = 8;
const FIXED_BITS = 8 * 1000;

function problemOf(seed: number, capacityBits: number): { problem: CostProblem; exact: (choice: readonly number[]) => number; overhead: (choice: readonly number[]) => number } {
  const random = seededRandom(seed);
  const matrices: MatrixInfo[] = Array.from({ length: UNITS }, (_, u) => ({ key: `${u}.mlp.up_proj`, layer: u, module: 'mlp.up_proj', params: 1024 * (1 + Math.floor(random() * 4)) }));
  const sizeBits = matrices.map((m) => Float64Array.from(LADDER, (c) => m.params * c.bits));
  const costs = matrices.map(() => {
    const scale = 0.5 + random();
    return Float64Array.from(LADDER, (c) => scale * 4 ** -c.bits * (1 + 0.3 * random()));
  });
  const overhead = (choice: readonly number[]) => {
    const distinct = new Set(choice).size;
    const middle = choice.filter((c) => c === 1).length;
    return 8 * (300 * distinct * distinct + 211 * middle);
  };
  const additive = (choice: readonly number[]) => choice.reduce((sum, c, u) => sum + sizeBits[u]![c]!, FIXED_BITS);
  const exact = (choice: readonly number[]) => additive(choice) + overhead(choice);
  const size: SizeBudget = {
    accounting: 'test-format',
    label: 'the test file',
    includes: () => true,
    bits: (unit, config) => unit.params * config.bits,
    fixedBits: FIXED_BITS,
    capacityBits,
    exactBits: (allocated: readonly MatrixAllocation[]) => exact(allocated.map((m) => LADDER.findIndex((c) => c === m.config))),
  };
  const problem: CostProblem = { matrices, configs: matrices.map(() => LADDER), costs, sizeBits, totalParams: matrices.reduce((s, m) => s + m.params, 0), size };
  return { problem, exact, overhead };
}

function* allChoices(): Generator<number[]> {
  for (let code = 0; code < LADDER.length ** UNITS; code++) {
    const choice: number[] = [];
    for (let u = 0, rest = code; u < UNITS; u++, rest = Math.floor(rest / LADDER.length)) choice.push(rest % LADDER.length);
    yield choice;
  }
}

describe('solveCostProblem with a format whose exact file is not additive', () => {
  it('re-solves until the exact file fits, at least as well as reserving the largest overhead up front (enumeration)', () => {
    let tightened = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const { problem: probe } = problemOf(seed, 0);
      const lightest = probe.sizeBits.reduce((s, b) => s + b[0]!, 0);
      const heaviest = probe.sizeBits.reduce((s, b) => s + b[2]!, 0);
      const capacity = Math.round(lightest + (0.35 + 0.04 * seed) * (heaviest - lightest));
      const { problem, exact, overhead } = problemOf(seed, capacity);
      const limit = FIXED_BITS + capacity;
      const result = solveCostProblem(problem, 'test', { budget: 4, relativeGap: 0 });
      const choice = result.matrices.map((m) => LADDER.findIndex((c) => c === m.config));
      expect(exact(choice), `seed ${seed}`).toBeLessThanOrEqual(limit);
      // The oracles: the best allocation whose file fits (a lower bound on cost), and the best one whose units fit
      // the capacity less the largest overhead any allocation has (what the tightening never does worse than).
      let best = Infinity;
      let reserved = Infinity;
      let maxOverhead = 0;
      let additiveBest = Infinity;
      const costOf = (c: readonly number[]) => c.reduce((s, i, u) => s + problem.costs[u]![i]!, 0);
      for (const c of allChoices()) maxOverhead = Math.max(maxOverhead, overhead(c));
      for (const c of allChoices()) {
        const cost = costOf(c);
        const units = exact(c) - overhead(c) - FIXED_BITS;
        if (exact(c) <= limit) best = Math.min(best, cost);
        if (units <= capacity - maxOverhead) reserved = Math.min(reserved, cost);
        if (units <= capacity) additiveBest = Math.min(additiveBest, cost);
      }
      const cost = costOf(choice);
      expect(cost).toBeGreaterThanOrEqual(best - 1e-15);
      expect(cost).toBeLessThanOrEqual(reserved + 1e-15);
      if (additiveBest < best) tightened++;
    }
    // the instances do make the additive optimum overflow the file (the tightening is exercised)
    expect(tightened).toBeGreaterThan(6);
  });
});

describe('buildCostProblem with a format that stores some configs only for some units', () => {
  // Two modules; the format stores b3g64 only for up_proj (as GGUF stores k-quants only in rows of whole
  // super-blocks), so down_proj's rows have no b3g64 and it is offered b2g64 and b4g64 alone.
  const ladder = [quantConfig(2, 64), quantConfig(3, 64), quantConfig(4, 64)];
  const rows = [0, 1].flatMap((layer) =>
    (['mlp.up_proj', 'mlp.down_proj'] as const).flatMap((module) =>
      ladder.filter((c) => module === 'mlp.up_proj' || c.bits !== 3).map((c) => ({ layer, module, bits: c.bits, groupSize: 64, params: 4096, cost: 4 ** -c.bits * (module === 'mlp.down_proj' ? 3 : 1) })),
    ),
  );
  const size = (stores?: SizeBudget['stores']): SizeBudget => ({
    accounting: 'test-format',
    label: 'the test file',
    includes: () => true,
    bits: (unit, config) => unit.params * config.bits,
    fixedBits: 0,
    capacityBits: 4 * 4096 * 3.2,
    ...(stores ? { stores } : {}),
  });
  const stores: SizeBudget['stores'] = (unit, config) => unit.module === 'mlp.up_proj' || config.bits !== 3;

  it('offers each unit the configs its format stores and allocates within the capacity', () => {
    const problem = buildCostProblem(rows, (r) => r.cost, 'rows', ladder, size(stores));
    expect(problem.configs.map((items) => items.map((c) => c!.bits))).toEqual([[2, 3, 4], [2, 4], [2, 3, 4], [2, 4]]);
    const result = solveCostProblem(problem, 'rows', { budget: 3.2, relativeGap: 0 });
    expect(result.matrices.filter((m) => m.module === 'mlp.down_proj').every((m) => m.config!.bits !== 3)).toBe(true);
    expect(result.matrices.reduce((s, m) => s + m.params * m.config!.bits, 0)).toBeLessThanOrEqual(4 * 4096 * 3.2);
  });

  it('without that knowledge a missing row is still an error naming the matrix and the config', () => {
    expect(() => buildCostProblem(rows, (r) => r.cost, 'rows', ladder, size())).toThrow(/matrix 0\.mlp\.down_proj has no row for b3g64/);
  });
});
