import { InvalidOptionError, configName, type Allocation, type QuantConfig } from '@layerquant/core';
import { solveCostProblem, type CostProblem, type KnapsackAllocation, type KnapsackOptions } from './cost-knapsack.js';

/**
 * The correction of an additive allocation for interactions, by measurement. The first solution adds up each
 * unit's own cost a_u(c) (its loss with every other unit float). Then, around the allocation A in hand, each unit's
 * loss change is measured with every other unit at its chosen config, m_u(c) = L(A[u -> c]) - L(A), the knapsack is
 * solved again on costs built from them, and the new allocation's loss is measured. Rounds go on while the measured
 * loss improves; the result is the allocation with the least measured loss seen, so it is never worse than the
 * additive one (on the calibration it is measured on).
 *
 * The costs of a round (`correction`):
 * - `marginal` (default): m_u(c) itself, the first-order model of a change around A: exact when one unit moves; when
 *   several move it misses only the interactions among the units that moved (second order in the step).
 * - `shapley`: each unit's share of the loss, 1/2 (a_u(c) + L(A[u -> c]) - L(A[u -> float])) = a_u(c) +
 *   1/2 x_u(c)'F X_{-u} for a loss quadratic in the summed perturbation, L = 1/2 X'FX (a KL divergence is, near the
 *   float model): the shares of A add up to L(A) exactly, but a change is charged half its interaction with the
 *   units that stay, and needs one more measurement per unit (it back in float).
 * - `both` (default): each proposes a step from the same measurements (shapley's one more per unit), both steps are
 *   measured and the better kept.
 * Measured on a quadratic loss with correlated errors against the best allocation found by enumeration
 * (measured-refinement.test.ts), marginal closed most of the additive solution's gap, shapley less; on a tiny random
 * Llama (sensitivity's kld-refinement.test.ts) shapley's step was the one that cut the KLD at one budget, marginal's at
 * another: neither dominates, so both are tried.
 *
 * A step whose measured loss is not lower than A's is retried, up to `retries` times, with a penalty on every change
 * in the knapsack (a proximal trust region: changes whose predicted gain is below the penalty drop out), starting
 * at the step's predicted gain per change and growing fourfold; the marginals are not measured again for a retry.
 * `radius` bounds the candidates of a round: the configs within `radius` steps of a unit's current one on its own
 * list ordered by size (the costs are measured where they are used; 0 = every config).
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
  /** How a round's costs are built from its measurements (default `both`: each proposes a step, the better is kept). */
  readonly correction?: RefinementCorrection | 'both';
  /** Shorter steps tried when a round's step is not better, each one more loss measurement (default 3). */
  readonly retries?: number;
  /** Called after each measured allocation. */
  readonly onRound?: (round: RefinementRound) => void;
}

export type RefinementCorrection = 'marginal' | 'shapley';
export const REFINEMENT_CORRECTIONS: readonly (RefinementCorrection | 'both')[] = Object.freeze(['both', 'marginal', 'shapley']);

export interface RefinementRound {
  /** 0: the additive solution; then every allocation measured after it, in order (a round's retries included). */
  readonly round: number;
  /** The cost model that proposed it (absent for the additive solution). */
  readonly correction?: RefinementCorrection;
  /** The loss measured for the allocation (every matrix at its config at once). */
  readonly loss: number;
  /** The loss the knapsack predicted for it (round 0: the additive sum; marginal: the reference's loss plus the chosen marginals; shapley: the chosen shares). */
  readonly predicted: number;
  /** The reference's loss as the round's costs put it (marginal: measured; shapley: its shares summed). */
  readonly referencePredicted?: number;
  /** The penalty every change carried in the knapsack (0: the full step; more after a step that was not better). */
  readonly penalty?: number;
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
    readonly correction: RefinementCorrection | 'both';
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
  const correction = options.correction ?? 'both';
  const retries = options.retries ?? 3;
  if (!Number.isInteger(retries) || retries < 0) throw new InvalidOptionError('retries', `${retries} must be a non-negative integer`);
  if (!Number.isInteger(maxRounds) || maxRounds < 0) throw new InvalidOptionError('rounds', `${maxRounds} must be a non-negative integer`);
  if (!Number.isInteger(radius) || radius < 0) throw new InvalidOptionError('radius', `${radius} must be a non-negative integer (0 = every config)`);
  if (!REFINEMENT_CORRECTIONS.includes(correction)) throw new InvalidOptionError('correction', `"${String(correction)}" is not one of ${REFINEMENT_CORRECTIONS.join(', ')}`);
  const corrections: RefinementCorrection[] = correction === 'both' ? ['marginal', 'shapley'] : [correction];
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
  let step = 0;
  for (let round = 1; round <= maxRounds; round++) {
    const reference = configsOf(current);
    const candidates = new Map<string, (QuantConfig | null)[]>();
    for (const [i, m] of problem.matrices.entries()) {
      candidates.set(m.key, neighbourConfigs(problem.configs[i]!, problem.sizeBits[i]!, reference.get(m.key) ?? null, radius));
    }
    // shapley also measures each unit back in float (its removal from the reference), unless float is a candidate.
    const withRemoval = corrections.includes('shapley');
    const measuredItems = (key: string) => {
      // Units the program does not allocate (embeddings under the paper's accounting) stay as they are: nothing to measure.
      const list = candidates.get(key) ?? [];
      return withRemoval && list.length > 0 && !list.includes(null) ? [...list, null] : list;
    };
    const measured = await measurer.marginals(reference, measuredItems);
    const costsOf = (kind: RefinementCorrection) =>
      problem.matrices.map((m) => {
        const deltas = measured.deltas.get(m.key)!;
        const list = candidates.get(m.key)!;
        if (kind === 'marginal') return Float64Array.from(list, (_, c) => deltas[c]!);
        const removal = deltas[measuredItems(m.key).indexOf(null)]!;
        return Float64Array.from(list, (config, c) => 0.5 * (ownCost(m.key, config) + deltas[c]! - removal));
      });
    const isCurrent = problem.matrices.map((m) => candidates.get(m.key)!.map((c) => sameConfig(c, reference.get(m.key))));
    const models = corrections.map((kind) => {
      const costs = costsOf(kind);
      // What the costs say the reference's loss is (marginal: measured; shapley: its shares summed).
      const referencePredicted = kind === 'marginal' ? measured.referenceLoss : problem.matrices.reduce((sum, _, i) => sum + costs[i]![isCurrent[i]!.indexOf(true)]!, 0);
      return { kind, costs, referencePredicted };
    });
    /** A round's knapsack with `penalty` added to every change (a proximal term: the larger, the fewer changes). */
    const solveWith = (costs: readonly Float64Array[], penalty: number) =>
      solveCostProblem(
        {
          ...problem,
          configs: problem.matrices.map((m) => candidates.get(m.key)!),
          costs: costs.map((list, i) => Float64Array.from(list, (cost, c) => cost + (isCurrent[i]![c] ? 0 : penalty))),
          sizeBits: problem.matrices.map((m, i) => Float64Array.from(candidates.get(m.key)!, (c) => sizeOf(i, c))),
        },
        method,
        options,
      );
    // Each cost model proposes a step, every step is measured and the best taken if it beats the reference. When none
    // does, the steps are retried with a penalty on every change (the marginals are not measured again): changes
    // whose predicted gain is below the penalty drop out, the steps get shorter.
    let penalty = 0;
    let outcome: 'accepted' | 'converged' | 'worse' = 'converged';
    for (let attempt = 0; attempt <= retries && outcome !== 'accepted'; attempt++) {
      let gainPerChange = 0;
      const seen = new Set<string>();
      for (const model of models) {
        const next = solveWith(model.costs, penalty);
        const moved = next.matrices.filter((m) => !sameConfig(m.config, reference.get(m.key)));
        const fingerprint = next.matrices.map((m) => itemName(m.config)).join(',');
        if (moved.length === 0 || seen.has(fingerprint)) continue;
        seen.add(fingerprint);
        const loss = await measurer.lossOf(configsOf(next));
        // Predicted: the reference plus the chosen changes (marginal), the chosen shares (shapley); penalties left out.
        const chosenCost = next.matrices.reduce((sum, m, i) => sum + model.costs[i]![candidates.get(m.key)!.findIndex((c) => sameConfig(c, m.config))]!, 0);
        const predicted = model.kind === 'marginal' ? measured.referenceLoss + chosenCost : chosenCost;
        const entry: RefinementRound = { round: ++step, correction: model.kind, loss, predicted, referencePredicted: model.referencePredicted, changed: moved.length, penalty, sizeMiB: next.solver.sizeMiB };
        rounds.push(entry);
        options.onRound?.(entry);
        if (loss < best.loss) best = { allocation: next, loss, round: step };
        if (loss < currentLoss) {
          current = next;
          currentLoss = loss;
          outcome = 'accepted';
        } else if (outcome !== 'accepted') outcome = 'worse';
        gainPerChange = Math.max(gainPerChange, (model.referencePredicted - predicted) / moved.length);
      }
      if (seen.size === 0) break;
      // The largest gain a step predicted per change, then four times the last penalty.
      penalty = penalty === 0 ? (gainPerChange > 0 ? gainPerChange : Math.abs(currentLoss) / problem.matrices.length) : 4 * penalty;
    }
    if (outcome !== 'accepted') {
      stopped = outcome;
      break;
    }
  }
  // The allocation reported is the best measured one, with the additive solver report's fields kept for the program.
  return Object.freeze({
    ...best.allocation,
    method,
    refinement: Object.freeze({ rounds: Object.freeze(rounds), chosen: best.round, radius, correction, stopped }),
  });
}
