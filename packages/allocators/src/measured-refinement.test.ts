import { bitsPerWeight, quantConfig, type QuantConfig } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { buildCostProblem, solveCostProblem } from './cost-knapsack.js';
import { neighbourConfigs, refineByMeasurement, type AllocationMeasurer, type MatrixConfigs, type RefinementRound } from './measured-refinement.js';
import { seededRandom } from './random.js';
import { allocateMethod, expandMethodList, refineMethod } from './registry.js';
import { syntheticStats } from './testing/synthetic-stats.js';

/**
 * A loss with known interactions, as a KL divergence is near the float model: L = 1/2 |sum_u x_u(c_u)|^2, each unit's
 * perturbation a fixed random direction (shared in part by every unit: correlated errors, so the loss is
 * super-additive) scaled by 2^-bits. Its exact properties are the oracle.
 */
function quadraticLoss(units: number, dims: number, shared: number, seed: number) {
  const random = seededRandom(seed);
  const common = Array.from({ length: dims }, () => random() - 0.5);
  const directions = Array.from({ length: units }, () => Array.from({ length: dims }, (_, d) => shared * common[d]! + (random() - 0.5)));
  const scale = Array.from({ length: units }, () => 0.5 + 2 * random());
  const perturbation = (u: number, config: QuantConfig | null) => (config ? directions[u]!.map((v) => v * scale[u]! * 2 ** -config.bits) : new Array(dims).fill(0));
  const loss = (configs: readonly (QuantConfig | null)[]) => {
    const total = new Array(dims).fill(0);
    configs.forEach((c, u) => perturbation(u, c).forEach((v, d) => (total[d] += v)));
    return 0.5 * total.reduce((s, v) => s + v * v, 0);
  };
  return { loss };
}

const LADDER = [quantConfig(2, 64), quantConfig(3, 64), quantConfig(4, 64), quantConfig(8, 64)];

function setup(shared: number, units = 12, seed = 3) {
  const keys = Array.from({ length: units }, (_, u) => `${Math.floor(u / 7)}.${['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'][u % 7]}`);
  const { loss } = quadraticLoss(units, 16, shared, seed);
  const configsOf = (allocation: MatrixConfigs) => keys.map((k) => allocation.get(k) ?? null);
  let measurements = 0;
  const measurer: AllocationMeasurer = {
    lossOf: async (allocation) => loss(configsOf(allocation)),
    marginals: async (reference, candidates) => {
      const base = configsOf(reference);
      const referenceLoss = loss(base);
      const deltas = new Map(
        keys.map((k, u) => [
          k,
          Float64Array.from(candidates(k), (c) => {
            measurements++;
            const moved = [...base];
            moved[u] = c;
            return loss(moved) - referenceLoss;
          }),
        ]),
      );
      return { deltas, referenceLoss };
    },
  };
  const rows = keys.flatMap((key, u) => {
    const [layer, module] = [Number(key.split('.')[0]), key.slice(key.indexOf('.') + 1)];
    return LADDER.map((c) => {
      const alone = keys.map((_, v) => (v === u ? c : null));
      return { layer, module: module as 'mlp.up_proj', bits: c.bits, groupSize: c.groupSize, params: 4096, cost: loss(alone) };
    });
  });
  const problem = buildCostProblem(rows, (r) => r.cost, 'quadratic');
  return { measurer, problem, loss, keys, configsOf, measured: () => measurements };
}

/** The least loss of any allocation within the budget, by enumeration (4^units allocations). */
function bestByEnumeration(units: number, budget: number, loss: (configs: readonly (QuantConfig | null)[]) => number): number {
  let best = Infinity;
  const choice = new Array<number>(units).fill(0);
  for (let n = 0; n < LADDER.length ** units; n++) {
    let rest = n;
    let bits = 0;
    for (let u = 0; u < units; u++) {
      choice[u] = rest % LADDER.length;
      rest = Math.floor(rest / LADDER.length);
      bits += bitsPerWeight(LADDER[choice[u]!]!);
    }
    if (bits / units > budget + 1e-12) continue;
    best = Math.min(best, loss(choice.map((c) => LADDER[c]!)));
  }
  return best;
}

describe('refineByMeasurement (a quadratic loss with correlated errors as the oracle)', () => {
  it('shapley shares of an allocation add up to its loss exactly; marginals count each interaction twice', async () => {
    const { measurer, problem } = setup(1.5);
    const budget = 3.3;
    const additive = solveCostProblem(problem, 'kld', { budget });
    for (const correction of ['shapley', 'marginal'] as const) {
      const rounds: RefinementRound[] = [];
      await refineByMeasurement(problem, additive, measurer, 'kld', { budget, rounds: 1, radius: 0, correction, onRound: (r) => rounds.push(r) });
      expect(rounds[0]!.round).toBe(0);
      // Errors that share a direction: the additive sum underestimates the loss of quantizing everything.
      expect(rounds[0]!.loss).toBeGreaterThan(1.2 * rounds[0]!.predicted);
      if (correction === 'shapley' && rounds[1]) {
        expect(Math.abs(rounds[1].referencePredicted! - rounds[0]!.loss)).toBeLessThan(1e-12 * rounds[0]!.loss);
        // The prediction of the next allocation misses only the interactions among the units that changed.
        expect(rounds[1].predicted).toBeGreaterThan(0);
      }
    }
  });

  it('never returns an allocation worse than the additive one, within the budget; improves it here', async () => {
    for (const [shared, correction, radius] of [[1.5, 'shapley', 1], [1.5, 'shapley', 0], [0.2, 'shapley', 1], [1.5, 'marginal', 1]] as const) {
      const { measurer, problem, loss, configsOf } = setup(shared);
      const budget = 3.1;
      const additive = solveCostProblem(problem, 'kld', { budget });
      const refined = await refineByMeasurement(problem, additive, measurer, 'kld', { budget, rounds: 4, radius, correction });
      const additiveLoss = loss(configsOf(new Map(additive.matrices.map((m) => [m.key, m.config]))));
      const refinedLoss = loss(configsOf(new Map(refined.matrices.map((m) => [m.key, m.config]))));
      expect(refinedLoss, `${correction} radius ${radius} shared ${shared}`).toBeLessThanOrEqual(additiveLoss);
      expect(refined.refinement.rounds.find((r) => r.round === refined.refinement.chosen)!.loss).toBe(refinedLoss);
      expect(refined.totals.bpp).toBeLessThanOrEqual(budget + 1e-12);
    }
  });

  it('closes the gap to the best allocation (by enumeration) where the additive solution misses it', async () => {
    const units = 7;
    const gaps: Record<string, number[]> = { additive: [], marginal: [], shapley: [], both: [] };
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      for (const budget of [2.6, 3.1, 3.6]) {
        const { measurer, problem, loss, configsOf } = setup(0.3, units, seed);
        const best = bestByEnumeration(units, budget, loss);
        const lossOf = (a: { matrices: readonly { key: string; config: QuantConfig | null }[] }) => loss(configsOf(new Map(a.matrices.map((m) => [m.key, m.config]))));
        const additive = solveCostProblem(problem, 'kld', { budget });
        gaps.additive!.push(lossOf(additive) / best - 1);
        for (const correction of ['marginal', 'shapley', 'both'] as const) {
          const refined = await refineByMeasurement(problem, additive, measurer, 'kld', { budget, rounds: 5, radius: 1, correction });
          expect(lossOf(refined)).toBeLessThanOrEqual(lossOf(additive));
          gaps[correction]!.push(lossOf(refined) / best - 1);
        }
      }
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    console.log(`quadratic loss, 7 units, 18 instances: mean excess over the best allocation: additive ${(100 * mean(gaps.additive!)).toFixed(2)}%, marginal ${(100 * mean(gaps.marginal!)).toFixed(2)}%, shapley ${(100 * mean(gaps.shapley!)).toFixed(2)}%, both ${(100 * mean(gaps.both!)).toFixed(2)}%`);
    expect(mean(gaps.additive!)).toBeGreaterThan(0.01);
    expect(mean(gaps.marginal!)).toBeLessThan(0.25 * mean(gaps.additive!));
    expect(mean(gaps.marginal!)).toBeLessThanOrEqual(mean(gaps.shapley!));
    expect(mean(gaps.both!)).toBeLessThan(0.25 * mean(gaps.additive!));
  });

  it('rounds 0 keeps the additive solution; a converged round stops', async () => {
    const { measurer, problem, measured } = setup(1.5);
    const additive = solveCostProblem(problem, 'kld', { budget: 3.1 });
    const none = await refineByMeasurement(problem, additive, measurer, 'kld', { budget: 3.1, rounds: 0 });
    expect(none.matrices).toEqual(additive.matrices);
    expect(none.refinement).toMatchObject({ chosen: 0, stopped: 'rounds' });
    expect(measured()).toBe(0);
    const many = await refineByMeasurement(problem, additive, measurer, 'kld', { budget: 3.1, rounds: 20, radius: 1 });
    expect(['converged', 'worse']).toContain(many.refinement.stopped);
    await expect(refineByMeasurement(problem, additive, measurer, 'kld', { budget: 3.1, radius: -1 })).rejects.toThrow(/option "radius"/);
  });

  it('neighbourConfigs: the items within radius steps by size, float included where it is an item', () => {
    const configs = [quantConfig(8, 64), quantConfig(2, 64), null, quantConfig(4, 64)];
    const sizes = [8, 2, 16, 4];
    expect(neighbourConfigs(configs, sizes, quantConfig(4, 64), 1)).toEqual([quantConfig(2, 64), quantConfig(4, 64), quantConfig(8, 64)]);
    expect(neighbourConfigs(configs, sizes, quantConfig(8, 64), 1)).toEqual([quantConfig(4, 64), quantConfig(8, 64), null]);
    expect(neighbourConfigs(configs, sizes, quantConfig(2, 64), 0)).toHaveLength(4);
    expect(() => neighbourConfigs(configs, sizes, quantConfig(3, 64), 1)).toThrow(/b3g64 is not on the unit's ladder/);
  });
});


describe('the kld plug-in through the host (allocateMethod, then refineMethod)', () => {
  it('refines the additive allocation with a measurer, checked like any allocation; a throwing refine is a PluginError', async () => {
    const stats = syntheticStats({ layers: 2, configs: LADDER });
    const [method] = expandMethodList('kld');
    const context = { budget: 3.1, configs: LADDER };
    const first = allocateMethod(method!, stats, context);
    expect(first.method).toBe('kld');
    // The synthetic table's own costs as the loss: additive, so a correction round finds nothing to change.
    const cost = new Map(stats.kld!.rows.map((r) => [`${r.layer}.${r.module}|b${r.bits}g${r.groupSize}`, r.deltaKld]));
    const lossOf = (allocation: MatrixConfigs) => [...allocation].reduce((s, [key, c]) => s + (c ? cost.get(`${key}|b${c.bits}g${c.groupSize}`)! : 0), 0);
    const measurer: AllocationMeasurer = {
      lossOf: async (allocation) => lossOf(allocation),
      marginals: async (reference, candidates) => ({
        referenceLoss: lossOf(reference),
        deltas: new Map([...reference.keys()].map((key) => [key, Float64Array.from(candidates(key), (c) => lossOf(new Map(reference).set(key, c)) - lossOf(reference))])),
      }),
    };
    const rounds: RefinementRound[] = [];
    const refined = await refineMethod(method!, first, stats, context, measurer, (r) => rounds.push(r));
    expect(refined.matrices.map((m) => m.config)).toEqual(first.matrices.map((m) => m.config));
    expect(rounds[0]!.loss).toBeCloseTo(rounds[0]!.predicted, 12);
    expect(rounds.length).toBe(1); // converged: the additive solution is the best for an additive loss
    // A plug-in without refine: the first allocation as it is.
    const [mxq] = expandMethodList('mxq');
    const plain = allocateMethod(mxq!, stats, context);
    expect(await refineMethod(mxq!, plain, stats, context, measurer)).toBe(plain);
    // A measurer that fails with an untyped error: the plug-in is named.
    const broken: AllocationMeasurer = { ...measurer, lossOf: async () => { throw new TypeError('boom'); } };
    await expect(refineMethod(method!, first, stats, context, broken)).rejects.toThrow(/allocator "kld" failed in refine\(\): TypeError: boom/);
  });
});
