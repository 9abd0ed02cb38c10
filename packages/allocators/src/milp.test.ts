import { readFileSync } from 'node:fs';
import { configName, matrixKey, type LinearModule } from '@layerquant/core';
import { llama2ExpectedAllocationsDir, llama2PaperDir } from '@layerquant/fixtures';
import { describe, expect, it } from 'vitest';
import {
  allocationCsvConfigs,
  kurtMilpAllocator,
  kurtosisOutliers,
  parseAllocationCsv,
  parseFnormCsv,
  parseSensitivityCsv,
  sensiMilpAllocator,
  sensitivityOutliers,
  type FnormRow,
  type ModelStats,
} from './index.js';

const fnorm = parseFnormCsv(readFileSync(`${llama2PaperDir}/fnorm.csv`, 'utf8'));
const stats: ModelStats = { fnorm, sensitivity: parseSensitivityCsv(readFileSync(`${llama2PaperDir}/sensitivity.csv`, 'utf8')) };
const TOTAL_PARAMS = 6476005376;
const BITS_PER_MB = 8 * 2 ** 20;


/** The authors' `_set_cost_factor`, written out again here from optimizer.py (independent of milpCost). */
function theirCost(r: FnormRow, outlier: boolean): number {
  const bpp = r.bits + (2 * r.metaBits) / r.groupSize + 32 / r.groupSize / r.metaGroupSize;
  const penalty = r.bits < 3 ? 4 : r.bits < 4 ? 2 : 1;
  return ((penalty * (outlier ? 2 : 1)) / bpp) * 100 * (r.params / (fnorm.rows.reduce((s, x) => s + x.params, 0) / 12));
}

/** Outlier matrices per top_m; top_m 1 and all are checked against the authors' own boost allocations below. */
function outlierKeys(method: 'sensi-milp' | 'kurt-milp', topM: number): Set<string> {
  const found = method === 'sensi-milp' ? sensitivityOutliers(stats, 32, { topM }) : kurtosisOutliers(stats, 32, { topM });
  const keys = new Set<string>();
  for (const [module, list] of Object.entries(found)) for (const o of list) keys.add(matrixKey(o.layer, module as LinearModule));
  return keys;
}

/** Objective and memory of an allocation given as config names, summed from the table in float64. */
function evaluate(configs: ReadonlyMap<string, string>, outliers: Set<string>): { cost: number; memoryMB: number; bits: number; matrices: number } {
  let cost = 0;
  let memoryMB = 0;
  let bits = 0;
  let matrices = 0;
  for (const r of fnorm.rows) {
    const key = matrixKey(r.layer, r.module);
    if (configs.get(key) !== configName(r)) continue;
    cost += theirCost(r, outliers.has(key));
    memoryMB += r.memoryMB;
    bits += Math.round(r.memoryMB * BITS_PER_MB);
    matrices++;
  }
  return { cost, memoryMB, bits, matrices };
}

/**
 * A proof that an optimal allocation is not the only optimum, or undefined: two matrices whose items are identical
 * (same params, memory and cost of every config) at different configs can swap; another allocation of the same
 * proven-optimal cost within the budget is a second optimum.
 */
function nonUniquenessProof(items: Map<string, string>, configs: ReadonlyMap<string, string>, otherOptimum?: ReadonlyMap<string, string>): string | undefined {
  const bySignature = new Map<string, string>();
  for (const [key, signature] of items) {
    const seen = bySignature.get(signature);
    if (seen !== undefined && configs.get(seen) !== configs.get(key)) return `swap ${seen} (${configs.get(seen)}) and ${key} (${configs.get(key)})`;
    if (seen === undefined) bySignature.set(signature, key);
  }
  if (otherOptimum && [...configs].some(([key, c]) => otherOptimum.get(key) !== c)) return 'theirs is another optimum';
  return undefined;
}

describe('sensi-milp and kurt-milp on Llama-2-7B against the authors\' allocations (expected-allocations/{sensi,kurt}-milp-M.csv)', () => {
  it('the outlier layers of top_m 1 and all are those the authors boost in sensi-boost-2-M / kurt-boost-2-M', () => {
    for (const [method, boost] of [['sensi-milp', 'sensi-boost'], ['kurt-milp', 'kurt-boost']] as const) {
      for (const [topM, file] of [[1, 1], [0, 0]] as const) {
        const rows = parseAllocationCsv(readFileSync(`${llama2ExpectedAllocationsDir}/${boost}-2-${file}.csv`, 'utf8'));
        const configs = allocationCsvConfigs(rows, 3.25);
        const boosted = new Set([...configs].filter(([, c]) => c !== 'b3g64').map(([k]) => k));
        expect(boosted, `${boost}-2-${file}`).toEqual(outlierKeys(method, topM));
      }
    }
  });

  const limitBits = (budget: number) => Math.floor(((budget * TOTAL_PARAMS) / 8 / 2 ** 20) * BITS_PER_MB * (1 + 1e-12));
  /** Their allocations that exceed their own budget in the paper accounting (`method-topM@budget`), from the files alone. */
  const overrunsOf = (method: 'sensi-milp' | 'kurt-milp', topM: number): string[] => {
    const rows = parseAllocationCsv(readFileSync(`${llama2ExpectedAllocationsDir}/${method}-${topM}.csv`, 'utf8'));
    const budgets = [...new Set(rows.map((r) => r.budget))].sort((a, b) => a - b);
    return budgets.filter((budget) => evaluate(allocationCsvConfigs(rows, budget), new Set()).bits > limitBits(budget)).map((budget) => `${method}-${topM}@${budget}`);
  };
  // Every file the authors published: top_m 1, 2 and 3 (2 and 3 take about a minute more on 2 cores: their costs tie a lot).
  const topMs = [1, 2, 3];
  for (const method of ['sensi-milp', 'kurt-milp'] as const) {
    for (const topM of topMs) {
      it(`${method}-${topM}: at every budget within it, cost <= theirs (= where theirs is in budget and optimal), identical unless a second optimum is proven`, () => {
        const rows = parseAllocationCsv(readFileSync(`${llama2ExpectedAllocationsDir}/${method}-${topM}.csv`, 'utf8'));
        const budgets = [...new Set(rows.map((r) => r.budget))].sort((a, b) => a - b);
        expect(budgets).toHaveLength(21);
        expect(budgets[0]).toBe(3.07);
        expect(budgets[20]).toBe(6.89);
        const outliers = outlierKeys(method, topM);
        const allocator = method === 'sensi-milp' ? sensiMilpAllocator : kurtMilpAllocator;
        let optimal = 0;
        let overrun = 0;
        for (const budget of budgets) {
          const theirs = evaluate(allocationCsvConfigs(rows, budget), outliers);
          expect(theirs.matrices).toBe(224);
          const allocation = allocator.allocate(stats, { budget, topM });
          const configs = new Map(allocation.matrices.map((m) => [m.key, configName(m.config!)]));
          const ours = evaluate(configs, outliers);
          expect(ours.matrices).toBe(224);
          expect(ours.bits, `${budget}: ours within the budget`).toBeLessThanOrEqual(limitBits(budget));
          expect(allocation.totals.bpp).toBeLessThanOrEqual(budget);
          expect(ours.cost).toBeCloseTo(allocation.solver.objective, 9);
          expect(allocation.solver.gap).toBeLessThanOrEqual(1e-6);
          expect(allocation.solver.bound).toBeLessThanOrEqual(ours.cost * (1 + 1e-12));
          if (theirs.bits > limitBits(budget)) {
            overrun++;
            continue; // over their own budget: not comparable (the test below checks where)
          }
          expect(ours.cost, `${budget}: ours no worse than theirs`).toBeLessThanOrEqual(theirs.cost * (1 + 1e-12));
          // HiGHS ran under a time limit: theirs is optimal where it reaches our proven bound; ours then equals it.
          const theirsOptimal = theirs.cost <= allocation.solver.bound * (1 + 1e-12);
          if (theirsOptimal) {
            optimal++;
            expect(ours.cost).toBeCloseTo(theirs.cost, 9);
          }
          // Identical matrix for matrix unless the optimum is provably not unique.
          const signatures = new Map(
            allocation.matrices.map((m) => [
              m.key,
              fnorm.rows.filter((r) => r.layer === m.layer && r.module === m.module).map((r) => `${configName(r)}:${r.memoryMB}:${theirCost(r, outliers.has(m.key))}`).join('|'),
            ]),
          );
          const theirConfigs = allocationCsvConfigs(rows, budget);
          const same = [...configs].every(([key, c]) => theirConfigs.get(key) === c);
          const proof = same ? undefined : nonUniquenessProof(signatures, configs, theirsOptimal ? theirConfigs : undefined);
          if (!same) expect(proof, `${budget}: differs from theirs without a second optimum`).toBeDefined();
        }
        // Most of their allocations are optimal (HiGHS reached the bound); the budgets skipped as over their own budget
        // are exactly the files' overruns (the test below checks which they are).
        expect(optimal).toBeGreaterThan(10);
        expect(overrun).toBe(overrunsOf(method, topM).length);
        // ~4 s on a quiet 2-core machine; minutes when it is shared and loaded.
      }, 600_000);
    }
  }

  it('theirs exceeds their own budget in the paper accounting exactly where the file says (sensi-milp-1 at 3.11 and 3.25, ...)', () => {
    // Found from the files alone (no other test needs to run first); the two the issue names must be among them.
    const overruns = (['sensi-milp', 'kurt-milp'] as const).flatMap((method) => topMs.flatMap((topM) => overrunsOf(method, topM)));
    const check = (method: string, topM: number, budget: number) => {
      const rows = parseAllocationCsv(readFileSync(`${llama2ExpectedAllocationsDir}/${method}-${topM}.csv`, 'utf8'));
      const theirs = evaluate(allocationCsvConfigs(rows, budget), new Set());
      return theirs.memoryMB - (budget * TOTAL_PARAMS) / 8 / 2 ** 20;
    };
    expect(check('sensi-milp', 1, 3.11)).toBeCloseTo(5.342, 3);
    expect(check('sensi-milp', 1, 3.25)).toBeCloseTo(1.883, 3);
    expect(overruns).toContain('sensi-milp-1@3.11');
    expect(overruns).toContain('sensi-milp-1@3.25');
    for (const name of overruns) {
      const [, method, topM, budget] = /^(.+)-(\d)@(.+)$/.exec(name)!;
      expect(check(method!, Number(topM), Number(budget)), name).toBeGreaterThan(0);
    }
  });
});
