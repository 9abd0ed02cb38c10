import { readFileSync } from 'node:fs';
import loadHighs from 'highs';
import { llama2PaperDir, shippedOraclesDir } from '@layerquant/fixtures';
import { describe, expect, it } from 'vitest';
import { buildMxqProblem, parseFnormCsv, solveMxq, type MxqProblem } from './index.js';

/**
 * Cross-check of the dedicated MXQ solver against the general MILP solver HiGHS (WebAssembly), on the
 * authors' formulation: one-hot binaries per matrix, one memory row in MB.
 */
function lpText(problem: MxqProblem, budget: number): string {
  const objective: string[] = [];
  const memory: string[] = [];
  const oneHot: string[] = [];
  const binaries: string[] = [];
  problem.fnorm.forEach((costs, i) => {
    const vars: string[] = [];
    costs.forEach((cost, j) => {
      const name = `x${i}_${j}`;
      objective.push(`+ ${cost} ${name}`);
      memory.push(`+ ${problem.sizeBits[i]![j]! / 8 / 2 ** 20} ${name}`);
      vars.push(name);
      binaries.push(name);
    });
    oneHot.push(` one${i}: ${vars.join(' + ')} = 1`);
  });
  const limitMB = (budget * problem.totalParams) / 8 / 2 ** 20;
  return [
    'Minimize',
    ` obj: ${objective.join(' ')}`,
    'Subject To',
    ` memory: ${memory.join(' ')} <= ${limitMB}`,
    ...oneHot,
    'Binary',
    ` ${binaries.join(' ')}`,
    'End',
  ].join('\n');
}

interface HighsResult {
  status: string;
  primal: number;
  dual: number;
  memoryMB: number;
}

async function solveWithHighs(problem: MxqProblem, budget: number, timeLimit: number): Promise<HighsResult> {
  const highs = await loadHighs();
  return highs.withModel({ format: 'lp', data: lpText(problem, budget) }, (model) => {
    model.options.set({ output_flag: false, time_limit: timeLimit, mip_rel_gap: 1e-6 });
    model.run();
    const values = model.getSolution().colValue;
    let memoryMB = 0;
    let k = 0;
    problem.sizeBits.forEach((list) => list.forEach((bits) => (memoryMB += values[k++]! > 0.5 ? bits / 8 / 2 ** 20 : 0)));
    return {
      status: String(model.getModelStatus()),
      primal: model.getObjectiveValue(),
      dual: Number(model.info.get('mip_dual_bound')),
      memoryMB,
    };
  });
}

describe('MXQ agrees with HiGHS', () => {
  const llama2 = buildMxqProblem(parseFnormCsv(readFileSync(`${llama2PaperDir}/fnorm.csv`, 'utf8')));
  const shipped = buildMxqProblem(parseFnormCsv(readFileSync(`${shippedOraclesDir}/fnorm.csv`, 'utf8')));
  const cases: { name: string; problem: MxqProblem; budget: number }[] = [
    { name: 'Llama-2-7B', problem: llama2, budget: 2.51 },
    { name: 'Llama-2-7B', problem: llama2, budget: 3.13 },
    { name: 'Llama-2-7B', problem: llama2, budget: 4.25 },
    { name: 'llama-brown-26m', problem: shipped, budget: 2.25 },
    { name: 'llama-brown-26m', problem: shipped, budget: 3.51 },
  ];
  it.each(cases)('$name at budget $budget: ours <= HiGHS incumbent, >= HiGHS proven bound; HiGHS >= our bound', async ({ problem, budget }) => {
    const ours = solveMxq(problem, { budget });
    const theirs = await solveWithHighs(problem, budget, 6);
    const limitMB = (budget * problem.totalParams) / 8 / 2 ** 20;
    expect(Number.isFinite(theirs.primal)).toBe(true);
    // HiGHS accepts rows violated by up to its feasibility tolerance; compare only when it kept the limit.
    if (theirs.memoryMB <= limitMB) expect(ours.solver.objective).toBeLessThanOrEqual(theirs.primal * (1 + 1e-9));
    expect(ours.solver.objective).toBeGreaterThanOrEqual(theirs.dual - 1e-6 * Math.abs(theirs.dual));
    expect(theirs.primal).toBeGreaterThanOrEqual(ours.solver.bound - 1e-6 * Math.abs(ours.solver.bound));
    expect(ours.solver.gap).toBeLessThanOrEqual(1e-6);
  });
});
