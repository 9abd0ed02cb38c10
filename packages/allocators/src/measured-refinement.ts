import { InvalidOptionError, configName, type Allocation, type QuantConfig } from '@layerquant/core';
import { solveCostProblem, type CostProblem, type KnapsackAllocation, type KnapsackOptions } from './cost-knapsack.js';

/**
 * The correction of an additive allocation for interactions, by measurement. The first solution adds up each
 * matrix's own cost a_u(c) (its loss with every other matrix float). Then, around the allocation A in hand, each
 * matrix's loss change is measured with every other matrix at its chosen config, m_u(c) = L(A[u -> c]) - L(A), the
 * knapsack is solved again on costs built from them, and the new allocation's loss is measured. Rounds go on while
 * the measured loss improves; the result is the allocation with the least measured loss seen, so it is never worse
 * than the additive one (on the calibration it is measured on).
 *
 * The costs of a round (`correction`):
 * - `marginal`: m_u(c) itself. Summed over many matrices it counts every pairwise interaction twice: for a loss
 *   quadratic in the summed perturbation (a KL divergence is, near the float model), L = 1/2 X'FX with
 *   X = sum_u x_u, m_u holds the whole cross term x_u'F X_{-u}, and sum_u m_u over-predicts the change; measured on
 *   a tiny model the solutions were worse than the additive one (predicted KLD below zero).
 * - `shapley` (default): each matrix's share of the loss, 1/2 (a_u(c) + L(A[u -> c]) - L(A[u -> float])) = a_u(c) +
 *   1/2 x_u(c)'F X_{-u} for a quadratic loss: the pairwise interactions split evenly between the two matrices (the
 *   Shapley value of a game with pairwise interactions), so the shares of A add up to L(A) exactly; they need one
 *   more measurement per matrix (it back in float).
 *
 * `radius` bounds the candidates of a round: the configs within `radius` steps of a matrix's current one on its
 * own list ordered by memory (a trust region: the costs are measured where they are used; 0 = every config).
 */

/** Matrix key -> config of an allocation (absent or null: float). */
export type MatrixConfigs = ReadonlyMap<string, QuantConfig | null>;

/** What the refinement needs measured (the sensitivity package's KldMeasurer provides it, keyed by matrix key). */
export interface AllocationMeasurer {
  /** The loss of the model with `allocation` applied, everything else float. */
  lossOf(allocation: MatrixConfigs): Promise<number>;
  /** For every matrix, the loss change of moving it alone to each candidate config, the others at `reference`. */
  marginals(reference: MatrixConfigs, candidates: (key: string) => readonly (QuantConfig | null)[]): Promise<{ readonly deltas: ReadonlyMap<string, Float64Array>; readonly referenceLoss: number }>;
}

export interface RefinementOptions extends KnapsackOptions {
  /** Rounds of re-measurement at most (default 3); 0 keeps the additive solution. */
  readonly rounds?: number;
  /** Candidate configs per round: within this many steps of the current one (default 1; 0 = every config). */
  readonly radius?: number;
  /** How a round's costs are built from its measurements (default `shapley`). */
  readonly correction?: RefinementCorrection;
  /** Called after each measured allocation. */
  readonly onRound?: (round: RefinementRound) => void;
}

export type RefinementCorrection = 'shapley' | 'marginal';
export const REFINEMENT_CORRECTIONS: readonly RefinementCorrection[] = Object.freeze(['shapley', 'marginal']);

export interface RefinementRound {
  /** 0: the additive solution; r: the solution of round r's marginals. */
  readonly round: number;
  /** The loss measured for the allocation (every matrix at its config at once). */
  readonly loss: number;
  /** The loss the knapsack predicted for it (round 0: the additive sum; marginal: the reference's loss plus the chosen marginals; shapley: the chosen shares). */
  readonly predicted: number;
  /** shapley rounds: the shares of the reference allocation summed, against its measured loss (how well the costs decompose it). */
  readonly referencePredicted?: number;
  /** Units whose config changed from the previous allocation. */
  readonly changed: number;
  /** What the allocated units take, MiB in the knapsack's accounting. */
  readonly sizeMiB: number;
}

export interface RefinedAllocation extends KnapsackAllocation {
  readonly refinement: {
    readonly rounds: readonly RefinementRound[];
    /** The round whose allocation is returned (the least measured loss). */
    readonly chosen: number;
    readonly radius: number;
    readonly correction: RefinementCorrection;
    /** Why it stopped: `converged` (no config changed), `worse` (the loss did not improve), `rounds` (the limit). */
    readonly stopped: 'converged' | 'worse' | 'rounds';
  };
}

function configsOf(allocation: Allocation): Map<string, QuantConfig | null> {
  return new Map(allocation.matrices.map((m) => [m.key, m.config]));
}

const sameConfig = (a: QuantConfig | null | undefined, b: QuantConfig | null | undefined) =>
  !a || !b ? !a && !b : configName(a) === configName(b) && a.axis === b.axis && a.roundZero === b.roundZero && a.symmetric === b.symmetric;
const itemName = (c: QuantConfig | null) => (c ? configName(c) : 'float');

/** The items of a unit within `radius` steps of `current` in its list ordered by size (radius 0: all; null = float). */
export function neighbourConfigs(configs: readonly (QuantConfig | null)[], sizes: ArrayLike<number>, current: QuantConfig | null, radius: number): (QuantConfig | null)[] {
  if (radius === 0) return [...configs];
  const order = configs.map((c, i) => ({ c, size: sizes[i]! })).sort((a, b) => a.size - b.size || itemName(a.c).localeCompare(itemName(b.c)));
  const at = order.findIndex((o) => sameConfig(o.c, current));
  if (at < 0) throw new InvalidOptionError('allocation', `config ${itemName(current)} is not on the unit's ladder`);
  return order.slice(Math.max(0, at - radius), at + radius + 1).map((o) => o.c);
}

/**
 * Refines `additive` (the knapsack's solution of `problem`, whose costs are each matrix's own loss) by measured
 * marginals, as described above. The knapsack of every round is the same program (memory per matrix and config,
 * budget) with the round's marginals as costs, restricted to the candidates.
 */
export async function refineByMeasurement(
  problem: CostProblem,
  additive: KnapsackAllocation,
  measurer: AllocationMeasurer,
  method: string,
  options: RefinementOptions,
): Promise<RefinedAllocation> {
  const maxRounds = options.rounds ?? 3;
  const radius = options.radius ?? 1;
  const correction = options.correction ?? 'shapley';
  if (!Number.isInteger(maxRounds) || maxRounds < 0) throw new InvalidOptionError('rounds', `${maxRounds} must be a non-negative integer`);
  if (!Number.isInteger(radius) || radius < 0) throw new InvalidOptionError('radius', `${radius} must be a non-negative integer (0 = every config)`);
  if (!REFINEMENT_CORRECTIONS.includes(correction)) throw new InvalidOptionError('correction', `"${String(correction)}" is not one of ${REFINEMENT_CORRECTIONS.join(', ')}`);
  const index = new Map(problem.matrices.map((m, i) => [m.key, i]));
  /** a_u(c): the additive table's cost of a unit at a config (float: 0, its item's cost). */
  const itemOf = (i: number, config: QuantConfig | null) => problem.configs[i]!.findIndex((c) => sameConfig(c, config));
  const ownCost = (key: string, config: QuantConfig | null) => {
    const i = index.get(key)!;
    return problem.costs[i]![itemOf(i, config)]!;
  };
  const sizeOf = (i: number, config: QuantConfig | null) => problem.sizeBits[i]![itemOf(i, config)]!;
  const additiveSum = additive.matrices.reduce((s, m) => s + ownCost(m.key, m.config), 0);
  let current: KnapsackAllocation = additive;
  let currentLoss = await measurer.lossOf(configsOf(additive));
  const rounds: RefinementRound[] = [{ round: 0, loss: currentLoss, predicted: additiveSum, changed: additive.matrices.length, sizeMiB: additive.solver.sizeMiB }];
  options.onRound?.(rounds[0]!);
  let best = { allocation: current, loss: currentLoss, round: 0 };
  let stopped: 'converged' | 'worse' | 'rounds' = 'rounds';
  for (let round = 1; round <= maxRounds; round++) {
    const reference = configsOf(current);
    const candidates = new Map<string, (QuantConfig | null)[]>();
    for (const [i, m] of problem.matrices.entries()) {
      candidates.set(m.key, neighbourConfigs(problem.configs[i]!, problem.sizeBits[i]!, reference.get(m.key) ?? null, radius));
    }
    // shapley also measures each unit back in float (its removal from the reference), unless float is a candidate.
    const measuredItems = (key: string) => {
      const list = candidates.get(key)!;
      return correction === 'shapley' && !list.includes(null) ? [...list, null] : list;
    };
    const measured = await measurer.marginals(reference, measuredItems);
    const costs = problem.matrices.map((m) => {
      const deltas = measured.deltas.get(m.key)!;
      const list = candidates.get(m.key)!;
      if (correction === 'marginal') return Float64Array.from(list, (_, c) => deltas[c]!);
      const removal = deltas[measuredItems(m.key).indexOf(null)]!;
      return Float64Array.from(list, (config, c) => 0.5 * (ownCost(m.key, config) + deltas[c]! - removal));
    });
    const local: CostProblem = {
      ...problem,
      configs: problem.matrices.map((m) => candidates.get(m.key)!),
      costs,
      sizeBits: problem.matrices.map((m, i) => Float64Array.from(candidates.get(m.key)!, (c) => sizeOf(i, c))),
    };
    const next = solveCostProblem(local, method, options);
    const changed = next.matrices.filter((m) => !sameConfig(m.config, reference.get(m.key))).length;
    if (changed === 0) {
      stopped = 'converged';
      break;
    }
    const loss = await measurer.lossOf(configsOf(next));
    const referencePredicted =
      correction === 'shapley'
        ? problem.matrices.reduce((s, m, i) => s + costs[i]![candidates.get(m.key)!.findIndex((c) => sameConfig(c, reference.get(m.key)))]!, 0)
        : undefined;
    const entry: RefinementRound = {
      round,
      loss,
      predicted: correction === 'marginal' ? measured.referenceLoss + next.solver.objective : next.solver.objective,
      ...(referencePredicted === undefined ? {} : { referencePredicted }),
      changed,
      sizeMiB: next.solver.sizeMiB,
    };
    rounds.push(entry);
    options.onRound?.(entry);
    if (loss < best.loss) best = { allocation: next, loss, round };
    if (!(loss < currentLoss)) {
      stopped = 'worse';
      break;
    }
    current = next;
    currentLoss = loss;
  }
  // The allocation reported is the best measured one, with the additive solver report's fields kept for the program.
  return Object.freeze({
    ...best.allocation,
    method,
    refinement: Object.freeze({ rounds: Object.freeze(rounds), chosen: best.round, radius, correction, stopped }),
  });
}
