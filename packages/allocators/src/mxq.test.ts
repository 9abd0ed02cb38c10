import { readFileSync } from 'node:fs';
import { InfeasibleBudgetError, bitsPerWeight, configName, quantConfig } from '@layerquant/core';
import { llama2PaperDir, shippedOraclesDir } from '@layerquant/fixtures';
import { describe, expect, it } from 'vitest';
import { allocationCsvConfigs, buildMxqProblem, mxqAllocator, parseAllocationCsv, parseFnormCsv, solveMxq, type FnormTable } from './index.js';

const llama2 = parseFnormCsv(readFileSync(`${llama2PaperDir}/fnorm.csv`, 'utf8'));
const shipped = parseFnormCsv(readFileSync(`${shippedOraclesDir}/fnorm.csv`, 'utf8'));

/** Sum of fnorm and of memmb of an allocation given as config names, read from the table (independent of the solver). */
function evaluate(table: FnormTable, configs: ReadonlyMap<string, string> | Record<string, string | null>): { fnorm: number; memoryMB: number; matrices: number } {
  const get = (key: string): string | null | undefined => (configs instanceof Map ? configs.get(key) : (configs as Record<string, string | null>)[key]);
  let fnorm = 0;
  let memoryMB = 0;
  let matrices = 0;
  for (const r of table.rows) {
    if (get(`${r.layer}.${r.module}`) === configName(r)) {
      fnorm += r.fnorm;
      memoryMB += r.memoryMB;
      matrices++;
    }
  }
  return { fnorm, memoryMB, matrices };
}

describe('MXQ on Llama-2-7B against the authors\' allocations (expected-allocations/mxq1.csv)', () => {
  const rows = parseAllocationCsv(readFileSync(`${llama2PaperDir}/expected-allocations/mxq1.csv`, 'utf8'));
  const problem = buildMxqProblem(llama2);
  const totalParams = 6476005376;
  it.each([2.13, 2.51, 3.13, 3.25, 3.51, 4.13, 4.25, 4.51])('budget %s: within the memory limit, fnorm no worse than theirs, gap <= 1e-6', (budget) => {
    const theirs = evaluate(llama2, allocationCsvConfigs(rows, budget));
    expect(theirs.matrices).toBe(224);
    const allocation = solveMxq(problem, { budget });
    const ours = evaluate(llama2, Object.fromEntries(allocation.matrices.map((m) => [m.key, configName(m.config!)])));
    const limitMB = (budget * totalParams) / 8 / 2 ** 20;
    expect(ours.matrices).toBe(224);
    expect(ours.memoryMB).toBeLessThanOrEqual(limitMB);
    expect(allocation.totals.bpp).toBeLessThanOrEqual(budget);
    expect(allocation.totals.memoryMB).toBeCloseTo(ours.memoryMB, 6);
    expect(ours.fnorm).toBeCloseTo(allocation.solver.objective, 6);
    expect(ours.fnorm).toBeLessThanOrEqual(theirs.fnorm + 1e-9);
    expect(allocation.solver.gap).toBeLessThanOrEqual(1e-6);
    expect(allocation.solver.bound).toBeLessThanOrEqual(allocation.solver.objective);
    expect(allocation.solver.bound).toBeGreaterThanOrEqual(allocation.solver.lpBound - 1e-9);
  });
  it('at 2.25 theirs is over the limit by 0.98 MB; at their memory as the budget ours is no worse', () => {
    const theirs = evaluate(llama2, allocationCsvConfigs(rows, 2.25));
    const limitMB = (2.25 * totalParams) / 8 / 2 ** 20;
    expect(theirs.memoryMB - limitMB).toBeCloseTo(0.982177734375, 9);
    const atLimit = solveMxq(problem, { budget: 2.25 });
    expect(evaluate(llama2, Object.fromEntries(atLimit.matrices.map((m) => [m.key, configName(m.config!)]))).memoryMB).toBeLessThanOrEqual(limitMB);
    const atTheirMemory = solveMxq(problem, { budget: (theirs.memoryMB * 8 * 2 ** 20) / totalParams });
    expect(atTheirMemory.solver.objective).toBeLessThanOrEqual(theirs.fnorm + 1e-9);
  });
  it('finds 4694.77 at 3.13 where the authors stopped at 4697.60, and matches their 4195.60 at 3.25', () => {
    expect(evaluate(llama2, allocationCsvConfigs(rows, 3.13)).fnorm).toBeCloseTo(4697.6, 2);
    expect(solveMxq(problem, { budget: 3.13 }).solver.objective).toBeCloseTo(4694.77, 2);
    expect(solveMxq(problem, { budget: 3.25 }).solver.objective).toBeCloseTo(4195.6, 2);
  });
});

describe('MXQ on the shipped model against the PyTorch/scipy oracle (oracles.json table objective)', () => {
  const table = JSON.parse(readFileSync(`${shippedOraclesDir}/oracles.json`, 'utf8')).table as { method: string; budget: number; bpp: number; objective?: number }[];
  const mxqRows = table.filter((r) => r.method === 'mxq');
  it('has the oracle objective (or a better one) at every budget', () => {
    expect(mxqRows).toHaveLength(8);
    for (const row of mxqRows) {
      const allocation = mxqAllocator.allocate({ fnorm: shipped }, { budget: row.budget });
      expect(allocation.solver.objective, `budget ${row.budget}`).toBeLessThanOrEqual(row.objective! * (1 + 1e-12));
      // scipy's HiGHS stops at a relative gap of 1e-4: ours may only be better by that much.
      expect(allocation.solver.objective).toBeGreaterThanOrEqual(row.objective! * (1 - 1e-4));
      expect(allocation.totals.bpp).toBeLessThanOrEqual(row.budget);
    }
  });
});

describe('MXQ edge cases', () => {
  const problem = buildMxqProblem(llama2);
  it('an infeasible budget names the smallest feasible one, which is feasible', () => {
    const cheapest = bitsPerWeight(quantConfig(2, 128)); // 2.126953125
    let error: unknown;
    try {
      solveMxq(problem, { budget: 2 });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InfeasibleBudgetError);
    const smallest = (error as InfeasibleBudgetError).smallestFeasible;
    expect(smallest).toBe(Math.ceil(cheapest * 1e4) / 1e4);
    expect((error as Error).message).toContain(String(smallest));
    expect(solveMxq(problem, { budget: smallest }).totals.bpp).toBeCloseTo(cheapest, 12);
    expect(() => solveMxq(problem, { budget: smallest - 2e-4 })).toThrow(InfeasibleBudgetError);
  });
  it('a budget above the richest config gives every matrix its least-error config', () => {
    const allocation = solveMxq(problem, { budget: 9 });
    expect(allocation.solver.gap).toBe(0);
    expect(new Set(allocation.matrices.map((m) => m.config!.bits))).toEqual(new Set([8]));
  });
  it('rejects a non-positive budget and a table-less input', () => {
    expect(() => solveMxq(problem, { budget: 0 })).toThrow(/option "budget"/);
    expect(() => mxqAllocator.allocate({}, { budget: 3 })).toThrow(/needs the fnorm table/);
  });
});
