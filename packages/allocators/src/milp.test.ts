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
  solveMultipleChoiceKnapsack,
  type FnormRow,
  type KnapsackClass,
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
 * Whether `choice` is the only optimum: classes with the same items and different choices can swap (not unique);
 * otherwise for every distinct (class, chosen item) and every other item, the best solution with that class
 * forced to the other item (solved to a proven gap of 0) must cost more.
 */
function uniqueOptimum(classes: KnapsackClass[], capacity: number, choice: Int32Array, objective: number): boolean {
  const signature = (c: KnapsackClass) => `${Array.from(c.weights).join(',')}|${Array.from(c.costs).join(',')}`;
  const chosen = new Map<string, number>();
  const groups = new Map<string, number>();
  for (let i = 0; i < classes.length; i++) {
    const sig = signature(classes[i]!);
    const seen = chosen.get(sig);
    if (seen !== undefined && seen !== choice[i]) return false;
    chosen.set(sig, choice[i]!);
    if (!groups.has(sig)) groups.set(sig, i);
  }
  for (const i of groups.values()) {
    const own = classes[i]!;
    for (let j = 0; j < own.costs.length; j++) {
      if (j === choice[i]) continue;
      const forced = classes.map((c, k) => (k === i ? { weights: [own.weights[j]!], costs: [own.costs[j]!] } : c));
      const result = solveMultipleChoiceKnapsack({ classes: forced, capacity }, { relativeGap: 0 });
      if (result.status === 'optimal' && result.objective <= objective * (1 + 1e-12)) return false;
    }
  }
  return true;
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
  const overruns: string[] = [];
  for (const method of ['sensi-milp', 'kurt-milp'] as const) {
    for (const topM of [1, 2, 3]) {
      it(`${method}-${topM}: at every budget within it, cost <= theirs (= where theirs is in budget and optimal), identical where the optimum is unique`, () => {
        const rows = parseAllocationCsv(readFileSync(`${llama2ExpectedAllocationsDir}/${method}-${topM}.csv`, 'utf8'));
        const budgets = [...new Set(rows.map((r) => r.budget))].sort((a, b) => a - b);
        expect(budgets).toHaveLength(21);
        expect(budgets[0]).toBe(3.07);
        expect(budgets[20]).toBe(6.89);
        const outliers = outlierKeys(method, topM);
        const allocator = method === 'sensi-milp' ? sensiMilpAllocator : kurtMilpAllocator;
        let identical = 0;
        let unique = 0;
        for (const budget of budgets) {
          const theirs = evaluate(allocationCsvConfigs(rows, budget), outliers);
          expect(theirs.matrices).toBe(224);
          const allocation = allocator.allocate(stats, { budget, topM, relativeGap: 0 });
          const configs = new Map(allocation.matrices.map((m) => [m.key, configName(m.config!)]));
          const ours = evaluate(configs, outliers);
          expect(ours.matrices).toBe(224);
          expect(ours.bits, `${budget}: ours within the budget`).toBeLessThanOrEqual(limitBits(budget));
          expect(allocation.totals.bpp).toBeLessThanOrEqual(budget);
          expect(ours.cost).toBeCloseTo(allocation.solver.objective, 9);
          expect(allocation.solver.gap).toBe(0);
          if (theirs.bits > limitBits(budget)) {
            overruns.push(`${method}-${topM}@${budget}`);
            continue; // over their own budget: not comparable (asserted below)
          }
          expect(ours.cost, `${budget}: ours no worse than theirs`).toBeLessThanOrEqual(theirs.cost * (1 + 1e-12));
          // HiGHS ran under a time limit: theirs is optimal where it reaches our proven bound.
          const theirsOptimal = theirs.cost <= allocation.solver.bound * (1 + 1e-9);
          if (theirsOptimal) expect(ours.cost).toBeCloseTo(theirs.cost, 9);
          // Uniqueness needs the exact program: weights in bits, our costs.
          const classes: KnapsackClass[] = [];
          const choice = new Int32Array(224);
          allocation.matrices.forEach((m, i) => {
            const items = fnorm.rows.filter((r) => r.layer === m.layer && r.module === m.module);
            classes.push({ weights: items.map((r) => Math.round(r.memoryMB * BITS_PER_MB)), costs: items.map((r) => theirCost(r, outliers.has(m.key))) });
            choice[i] = items.findIndex((r) => configName(r) === configs.get(m.key));
          });
          // A different allocation of the same (optimal) cost within the budget is itself a proof of non-uniqueness.
          const sameAsTheirs = [...configs].every(([key, c]) => allocationCsvConfigs(rows, budget).get(key) === c);
          const otherOptimum = theirsOptimal && !sameAsTheirs;
          if (!otherOptimum && uniqueOptimum(classes, limitBits(budget), choice, ours.cost)) {
            unique++;
            expect(allocationCsvConfigs(rows, budget), `${budget}: the unique optimum`).toEqual(configs);
            identical++;
          }
        }
        expect(unique).toBe(identical);
      }, 120_000);
    }
  }

  it('theirs exceeds their own budget in the paper accounting exactly where the file says (sensi-milp-1 at 3.11 and 3.25, ...)', () => {
    // Collected by the cases above; the two the issue names must be among them, and each one is asserted over.
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
