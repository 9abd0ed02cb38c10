/**
 * Minimum-cost multiple-choice knapsack: pick exactly one item per class, total weight <= capacity, least
 * total cost. The solver follows Pisinger's approach for the MCKP ("A minimal algorithm for the multiple-choice
 * knapsack problem", 1995) in spirit:
 *
 * 1. Drop dominated items and take each class's lower convex hull; the LP relaxation is then solved greedily
 *    by taking hull increments in order of cost saved per unit of weight (Sinha-Zoltners). The increment that
 *    does not fit fixes the dual price lambda of the capacity.
 * 2. A greedy incumbent; reduced costs r = c + lambda*w - min_class(c + lambda*w) bound every solution:
 *    cost >= LP + sum(r).
 * 3. Search below a cutoff: items with LP + r >= cutoff are fixed out (most classes keep one item), the classes
 *    left free are enumerated by dynamic programming over (weight, cost) states with dominance pruning, each
 *    state bounded by the exact LP of the classes still to add (suffix hulls) and cut when that bound reaches
 *    the cutoff. The cutoff starts just above the LP bound and doubles its distance until a solution turns
 *    up below it (then that solution is optimal) or it reaches the incumbent less the gap asked for.
 *
 * Everything pruned is pruned against a recorded bound, so the reported `bound` is a proof: no solution
 * costs less. Pure function on typed arrays; no dependencies.
 */

export interface KnapsackClass {
  readonly weights: ArrayLike<number>;
  readonly costs: ArrayLike<number>;
}

export interface MultipleChoiceKnapsack {
  readonly classes: readonly KnapsackClass[];
  readonly capacity: number;
}

export interface KnapsackSolverOptions {
  /** Stop when (objective - bound) / |objective| <= this; 0 asks for a proof of exact optimality. */
  readonly relativeGap?: number;
  /** Give up (throw) when the dynamic program holds more states than this. */
  readonly maxStates?: number;
}

export interface KnapsackSolution {
  /**
   * `optimal`: proven optimal (gap 0: the bound meets the objective, or the LP relaxation's solution is integral);
   * `gap`: the search stopped at the relative gap asked for, `gap` > 0 says how far from proven it may be.
   */
  readonly status: 'optimal' | 'gap';
  /** Index of the chosen item in each class. */
  readonly choice: Int32Array;
  readonly objective: number;
  readonly weight: number;
  /** Proven lower bound on the cost of every feasible solution. */
  readonly bound: number;
  /** (objective - bound) / max(|objective|, 1e-300). */
  readonly gap: number;
  /** Value of the LP relaxation. */
  readonly lpBound: number;
  /** Dynamic-programming states generated (the "nodes" of the search). */
  readonly nodes: number;
  /** Classes left free after reduced-cost fixing. */
  readonly freeClasses: number;
  readonly seconds: number;
}

export interface KnapsackInfeasible {
  readonly status: 'infeasible';
  /** The least total weight any solution has (every class at its lightest item). */
  readonly minimumWeight: number;
}

interface Item {
  readonly index: number;
  readonly weight: number;
  readonly cost: number;
}

/** Items that no other item of the class beats in both weight and cost, by weight ascending (cost descending). */
export function paretoItems(weights: ArrayLike<number>, costs: ArrayLike<number>): Item[] {
  const items: Item[] = [];
  for (let j = 0; j < weights.length; j++) items.push({ index: j, weight: weights[j]!, cost: costs[j]! });
  items.sort((a, b) => a.weight - b.weight || a.cost - b.cost || a.index - b.index);
  const kept: Item[] = [];
  for (const item of items) {
    if (kept.length === 0 || item.cost < kept[kept.length - 1]!.cost) {
      if (kept.length > 0 && kept[kept.length - 1]!.weight === item.weight) continue;
      kept.push(item);
    }
  }
  return kept;
}

/** Lower convex hull of Pareto items (weight ascending): the items an LP solution can use. */
export function lowerConvexHull(items: readonly Item[]): Item[] {
  const hull: Item[] = [];
  for (const item of items) {
    while (hull.length >= 2) {
      const a = hull[hull.length - 2]!;
      const b = hull[hull.length - 1]!;
      // b is above the segment a-item (or on it): drop it.
      const cross = (b.weight - a.weight) * (item.cost - a.cost) - (b.cost - a.cost) * (item.weight - a.weight);
      if (cross <= 0) hull.pop();
      else break;
    }
    hull.push(item);
  }
  return hull;
}

interface Increment {
  readonly classIndex: number;
  readonly deltaWeight: number;
  readonly deltaCost: number;
  /** Cost saved per unit of weight (> 0). */
  readonly efficiency: number;
}

function hullIncrements(classIndex: number, hull: readonly Item[]): Increment[] {
  const out: Increment[] = [];
  for (let h = 1; h < hull.length; h++) {
    const deltaWeight = hull[h]!.weight - hull[h - 1]!.weight;
    const deltaCost = hull[h]!.cost - hull[h - 1]!.cost;
    out.push({ classIndex, deltaWeight, deltaCost, efficiency: -deltaCost / deltaWeight });
  }
  return out;
}

const byEfficiency = (a: Increment, b: Increment): number => b.efficiency - a.efficiency || a.classIndex - b.classIndex;

/**
 * LP value of a set of classes as a function of capacity: the lightest items plus hull increments taken in
 * order of efficiency. Stored as cumulative sums so one evaluation is a binary search.
 */
class LinearRelaxation {
  readonly baseWeight: number;
  readonly baseCost: number;
  private readonly cumulativeWeight: Float64Array;
  private readonly cumulativeCost: Float64Array;
  private readonly efficiency: Float64Array;

  constructor(baseWeight: number, baseCost: number, increments: readonly Increment[]) {
    this.baseWeight = baseWeight;
    this.baseCost = baseCost;
    const n = increments.length;
    this.cumulativeWeight = new Float64Array(n + 1);
    this.cumulativeCost = new Float64Array(n + 1);
    this.efficiency = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const inc = increments[i]!;
      this.cumulativeWeight[i + 1] = this.cumulativeWeight[i]! + inc.deltaWeight;
      this.cumulativeCost[i + 1] = this.cumulativeCost[i]! + inc.deltaCost;
      this.efficiency[i] = inc.efficiency;
    }
  }

  /** Least LP cost within `capacity`; +Infinity when even the lightest items do not fit. */
  value(capacity: number): number {
    const room = capacity - this.baseWeight;
    if (room < 0) return Number.POSITIVE_INFINITY;
    const cw = this.cumulativeWeight;
    const n = cw.length - 1;
    if (room >= cw[n]!) return this.baseCost + this.cumulativeCost[n]!;
    // largest t with cw[t] <= room
    let lo = 0;
    let hi = n;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (cw[mid]! <= room) lo = mid;
      else hi = mid;
    }
    return this.baseCost + this.cumulativeCost[lo]! - this.efficiency[lo]! * (room - cw[lo]!);
  }
}

/** Merges two lists sorted by efficiency (descending). */
function mergeIncrements(a: readonly Increment[], b: readonly Increment[]): Increment[] {
  const out: Increment[] = new Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = byEfficiency(a[i]!, b[j]!) <= 0 ? a[i++]! : b[j++]!;
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}

export class KnapsackSearchLimitError extends Error {
  constructor(readonly states: number) {
    super(`the multiple-choice knapsack search exceeded ${states} states; raise maxStates or the relative gap`);
  }
}

/** About this many items are left open by the first, narrowest search (then the cutoff doubles). */
const INITIALLY_FREE = 16;

/** Pareto items of every class, after checking each class has matching, finite weights and costs. */
function checkedParetoItems(classes: readonly KnapsackClass[]): Item[][] {
  return classes.map((c, i) => {
    if (c.weights.length !== c.costs.length || c.weights.length === 0) {
      throw new RangeError(`class ${i}: needs as many weights as costs, at least one`);
    }
    for (let j = 0; j < c.weights.length; j++) {
      if (!Number.isFinite(c.weights[j]!) || !Number.isFinite(c.costs[j]!)) throw new RangeError(`class ${i} item ${j}: weight and cost must be finite`);
    }
    return paretoItems(c.weights, c.costs);
  });
}

/** The LP relaxation solved greedily (phase 1): its integer part, the increment that breaks it and its dual price. */
interface Relaxation {
  /** Hull increments of every class, by efficiency. */
  readonly increments: readonly Increment[];
  /** Hull position of each class in the LP's integer part. */
  readonly position: Int32Array;
  readonly weight: number;
  readonly cost: number;
  /** Dual price of the capacity (the breaking increment's efficiency; 0 when every increment fits). */
  readonly lambda: number;
  readonly bound: number;
  /** Whether an increment did not fit (else the LP solution is integral, hence optimal). */
  readonly broke: boolean;
  readonly breakIndex: number;
}

function solveRelaxation(pareto: readonly Item[][], hulls: readonly Item[][], capacity: number, minimumWeight: number): Relaxation {
  const n = pareto.length;
  const increments: Increment[] = [];
  for (let i = 0; i < n; i++) increments.push(...hullIncrements(i, hulls[i]!));
  increments.sort(byEfficiency);

  const position = new Int32Array(n);
  let weight = minimumWeight;
  let cost = 0;
  for (const items of pareto) cost += items[0]!.cost;
  let lambda = 0;
  let bound = cost;
  let broke = false;
  let breakIndex = increments.length;
  for (let t = 0; t < increments.length; t++) {
    const inc = increments[t]!;
    if (weight + inc.deltaWeight <= capacity) {
      weight += inc.deltaWeight;
      cost += inc.deltaCost;
      position[inc.classIndex]!++;
    } else {
      lambda = inc.efficiency;
      bound = cost - lambda * (capacity - weight);
      broke = true;
      breakIndex = t;
      break;
    }
  }
  if (!broke) bound = cost;
  return { increments, position, weight, cost, lambda, bound, broke, breakIndex };
}

interface Solution {
  readonly cost: number;
  readonly weight: number;
  /** Index into each class's Pareto items. */
  readonly choice: Int32Array;
}

/**
 * The incumbent (phase 2): the LP's integer part, then the greedy pass on through the increments that still fit,
 * then a few best single-class moves. It only has to be decent: the search proves the optimum.
 */
function greedyIncumbent(pareto: readonly Item[][], hulls: readonly Item[][], relaxation: Relaxation, capacity: number): Solution {
  const n = pareto.length;
  const { increments, broke, breakIndex } = relaxation;
  const position = Int32Array.from(relaxation.position);
  let weight = relaxation.weight;
  let cost = relaxation.cost;
  if (broke) {
    const blocked = new Uint8Array(n);
    for (let t = breakIndex; t < increments.length; t++) {
      const inc = increments[t]!;
      const i = inc.classIndex;
      if (blocked[i] || hulls[i]![position[i]! + 1] === undefined) continue;
      if (weight + inc.deltaWeight <= capacity) {
        weight += inc.deltaWeight;
        cost += inc.deltaCost;
        position[i]!++;
      } else blocked[i] = 1;
    }
  }
  const choice = new Int32Array(n);
  weight = 0;
  cost = 0;
  for (let i = 0; i < n; i++) {
    const item = hulls[i]![position[i]!]!;
    choice[i] = pareto[i]!.indexOf(item);
    weight += item.weight;
    cost += item.cost;
  }
  for (let round = 0; round < 8 && broke; round++) {
    let bestGain = 0;
    let bestClass = -1;
    let bestItem = -1;
    for (let i = 0; i < n; i++) {
      const current = pareto[i]![choice[i]!]!;
      const items = pareto[i]!;
      for (let j = choice[i]! + 1; j < items.length; j++) {
        const extra = items[j]!.weight - current.weight;
        if (weight + extra > capacity) break;
        const gain = current.cost - items[j]!.cost;
        if (gain > bestGain) {
          bestGain = gain;
          bestClass = i;
          bestItem = j;
        }
      }
    }
    if (bestClass < 0) break;
    const from = pareto[bestClass]![choice[bestClass]!]!;
    const to = pareto[bestClass]![bestItem]!;
    weight += to.weight - from.weight;
    cost += to.cost - from.cost;
    choice[bestClass] = bestItem;
  }
  return { cost, weight, choice };
}

/**
 * Reduced costs at the LP's dual price (phase 3): r = c + lambda*w - min_class(c + lambda*w); any solution costs at
 * least `lagrangeanBound` + the sum of its items' r.
 */
function reducedCosts(pareto: readonly Item[][], lambda: number, capacity: number): { reduced: Float64Array[]; lagrangeanBound: number } {
  const reduced: Float64Array[] = [];
  let lagrangeanBase = 0;
  for (const list of pareto) {
    let best = Number.POSITIVE_INFINITY;
    for (const item of list) best = Math.min(best, item.cost + lambda * item.weight);
    lagrangeanBase += best;
    reduced.push(Float64Array.from(list, (item) => item.cost + lambda * item.weight - best));
  }
  return { reduced, lagrangeanBound: lagrangeanBase - lambda * capacity };
}

/** What the search below a cutoff reads: the Pareto items, their reduced costs, the capacity and the state limit. */
interface SearchProblem {
  readonly pareto: readonly Item[][];
  readonly reduced: readonly Float64Array[];
  readonly lagrangeanBound: number;
  readonly capacity: number;
  readonly maxStates: number;
}

interface SearchOutcome {
  readonly found: Solution | undefined;
  /** Least bound of anything cut off. */
  readonly prunedBound: number;
  readonly nodes: number;
  readonly freeClasses: number;
}

/** Solves a minimum-cost multiple-choice knapsack to a proven relative gap. */
export function solveMultipleChoiceKnapsack(
  problem: MultipleChoiceKnapsack,
  options: KnapsackSolverOptions = {},
): KnapsackSolution | KnapsackInfeasible {
  const started = performance.now();
  const relativeGap = options.relativeGap ?? 1e-6;
  const maxStates = options.maxStates ?? 5_000_000;
  const { classes, capacity } = problem;
  const n = classes.length;

  // 1. Pareto items, hulls, LP relaxation.
  const pareto = checkedParetoItems(classes);
  let minimumWeight = 0;
  for (const items of pareto) minimumWeight += items[0]!.weight;
  if (minimumWeight > capacity) return { status: 'infeasible', minimumWeight };
  const hulls = pareto.map((items) => lowerConvexHull(items));
  const relaxation = solveRelaxation(pareto, hulls, capacity, minimumWeight);
  const { lambda, broke } = relaxation;
  const lpBound = relaxation.bound;

  // 2. Incumbent.
  const greedy = greedyIncumbent(pareto, hulls, relaxation, capacity);
  let incumbent = greedy.cost;
  let incumbentWeight = greedy.weight;
  let incumbentChoice: Int32Array = greedy.choice;

  const tolerance = (value: number): number => relativeGap * Math.abs(value);
  let prunedBound = Number.POSITIVE_INFINITY; // least bound of anything cut off
  const finish = (nodes: number, freeClasses: number, integralRelaxation = false): KnapsackSolution => {
    if (!(incumbentWeight <= capacity)) throw new Error(`internal error: solution weight ${incumbentWeight} exceeds capacity ${capacity}`);
    // An integral LP solution is the optimum itself: its value is the bound (lpBound may differ in the last bits).
    const bound = integralRelaxation ? incumbent : Math.max(lpBound, Math.min(incumbent, prunedBound));
    const gap = (incumbent - bound) / Math.max(Math.abs(incumbent), 1e-300);
    const original = new Int32Array(n);
    for (let i = 0; i < n; i++) original[i] = pareto[i]![incumbentChoice[i]!]!.index;
    return {
      status: gap <= 0 ? 'optimal' : 'gap',
      choice: original,
      objective: incumbent,
      weight: incumbentWeight,
      bound,
      gap: Math.max(gap, 0),
      lpBound,
      nodes,
      freeClasses,
      seconds: (performance.now() - started) / 1000,
    };
  };
  if (!broke || incumbent - lpBound <= tolerance(incumbent)) {
    prunedBound = lpBound;
    return finish(0, 0, !broke);
  }

  // 3. Reduced costs at the LP's dual price.
  const { reduced, lagrangeanBound } = reducedCosts(pareto, lambda, capacity);
  const search: SearchProblem = { pareto, reduced, lagrangeanBound, capacity, maxStates };

  // 4. Search below a cutoff that starts just above the LP bound and widens until it holds a solution or
  //    reaches the incumbent: a narrow cutoff fixes almost every class, so the search stays small.
  let nodes = 0;
  let freeClasses = 0;
  const lowerBound = Math.max(lpBound, lagrangeanBound);
  let width = initialWidth(reduced, 2 * tolerance(incumbent), incumbent - lowerBound);
  for (;;) {
    const target = incumbent - tolerance(incumbent);
    const cutoff = Math.min(target, lowerBound + width);
    const outcome = searchBelow(search, cutoff);
    nodes += outcome.nodes;
    freeClasses = Math.max(freeClasses, outcome.freeClasses);
    if (outcome.found && outcome.found.cost < incumbent) {
      incumbent = outcome.found.cost;
      incumbentWeight = outcome.found.weight;
      incumbentChoice = outcome.found.choice;
    }
    if (outcome.found || cutoff >= target) {
      // Everything not found was cut off with a bound >= its recorded bound.
      prunedBound = Math.min(prunedBound, outcome.prunedBound);
      return finish(nodes, freeClasses);
    }
    width *= 2;
  }
}

/**
 * The first width of the search's cutoff above the lower bound: a small quantile of the positive reduced costs, so
 * that only a few items start open; never zero, so that doubling reaches the incumbent in a bounded number of rounds.
 */
function initialWidth(reduced: readonly Float64Array[], twiceTolerance: number, distance: number): number {
  const positive: number[] = [];
  for (const r of reduced) for (const v of r) if (v > 0) positive.push(v);
  positive.sort((a, b) => a - b);
  return Math.max(twiceTolerance, positive[Math.min(positive.length - 1, INITIALLY_FREE)] ?? 0, 1e-9 * distance, Number.MIN_VALUE);
}

/** Reduced-cost fixing: each class's items whose bound is below the cutoff; classes left with one are fixed. */
interface Fixing {
  readonly candidates: number[][];
  readonly fixedWeight: number;
  readonly fixedCost: number;
  /** Classes with more than one candidate, in search order. */
  readonly free: number[];
  readonly cutBound: number;
  /** A class with no candidate: nothing lies below the cutoff. */
  readonly empty: boolean;
}

function fixBelow(search: SearchProblem, cutoff: number): Fixing {
  const { pareto, reduced, lagrangeanBound } = search;
  let cutBound = Number.POSITIVE_INFINITY;
  const candidates: number[][] = [];
  let fixedWeight = 0;
  let fixedCost = 0;
  const free: number[] = [];
  for (let i = 0; i < pareto.length; i++) {
    const kept: number[] = [];
    for (let j = 0; j < pareto[i]!.length; j++) {
      const itemBound = lagrangeanBound + reduced[i]![j]!;
      if (itemBound < cutoff) kept.push(j);
      else cutBound = Math.min(cutBound, itemBound);
    }
    candidates.push(kept);
    if (kept.length === 1) {
      fixedWeight += pareto[i]![kept[0]!]!.weight;
      fixedCost += pareto[i]![kept[0]!]!.cost;
    } else if (kept.length > 1) free.push(i);
    else return { candidates, fixedWeight, fixedCost, free, cutBound, empty: true };
  }
  // Classes whose alternatives cost most go first (few of their branches survive the bound); the classes
  // with near-ties come last, where the exact LP of the short suffix prunes hardest. Fewer states overall.
  const smallestAlternative = (i: number): number => {
    let second = Number.POSITIVE_INFINITY;
    for (const j of candidates[i]!) if (reduced[i]![j]! > 0) second = Math.min(second, reduced[i]![j]!);
    return second;
  };
  free.sort((a, b) => smallestAlternative(b) - smallestAlternative(a) || a - b);
  return { candidates, fixedWeight, fixedCost, free, cutBound, empty: false };
}

/** Exact LP relaxations of the suffixes free[k..] over their candidate items, with their least weights. */
function suffixRelaxations(pareto: readonly Item[][], fixing: Fixing): { suffix: LinearRelaxation[]; minimumWeight: Float64Array } {
  const { free, candidates } = fixing;
  const f = free.length;
  const suffix: LinearRelaxation[] = new Array(f + 1);
  const minimumWeight = new Float64Array(f + 1);
  let merged: Increment[] = [];
  let baseWeight = 0;
  let baseCost = 0;
  suffix[f] = new LinearRelaxation(0, 0, []);
  for (let k = f - 1; k >= 0; k--) {
    const i = free[k]!;
    const hull = lowerConvexHull(candidates[i]!.map((j) => pareto[i]![j]!));
    baseWeight += hull[0]!.weight;
    baseCost += hull[0]!.cost;
    merged = mergeIncrements(merged, hullIncrements(i, hull).sort(byEfficiency));
    suffix[k] = new LinearRelaxation(baseWeight, baseCost, merged);
    minimumWeight[k] = baseWeight;
  }
  return { suffix, minimumWeight };
}

/** The (weight, cost) states after some classes, each with its parent state and chosen item. */
interface States {
  readonly weight: Float64Array;
  readonly cost: Float64Array;
  readonly parent: Int32Array;
  readonly item: Int32Array;
}

/**
 * One step of the dynamic program: every state extended by every candidate of class `i`, cut where it cannot be
 * completed within capacity or where its bound (its cost plus the LP of the classes after it) reaches the cutoff,
 * then pruned by dominance (kept only if cheaper than every lighter state). Returns the states and the least bound cut.
 */
function extendStates(
  search: SearchProblem,
  states: Pick<States, 'weight' | 'cost'>,
  i: number,
  options: readonly number[],
  next: LinearRelaxation,
  nextMinimum: number,
  cutoff: number,
): { states: States; cutBound: number; generated: number } {
  const { pareto, capacity } = search;
  let cutBound = Number.POSITIVE_INFINITY;
  let generated = 0;
  const count = states.weight.length * options.length;
  const childWeight = new Float64Array(count);
  const childCost = new Float64Array(count);
  const childParent = new Int32Array(count);
  const childItem = new Int32Array(count);
  let m = 0;
  for (let s = 0; s < states.weight.length; s++) {
    for (const j of options) {
      const item = pareto[i]![j]!;
      const w = states.weight[s]! + item.weight;
      generated++;
      if (w + nextMinimum > capacity) continue; // cannot be completed within capacity
      const c = states.cost[s]! + item.cost;
      const bound = c + next.value(capacity - w);
      if (bound >= cutoff) {
        cutBound = Math.min(cutBound, bound);
        continue;
      }
      childWeight[m] = w;
      childCost[m] = c;
      childParent[m] = s;
      childItem[m] = j;
      m++;
    }
  }
  // Dominance: by weight then cost, keep a state only if it is cheaper than every lighter one.
  const order = new Int32Array(m);
  for (let t = 0; t < m; t++) order[t] = t;
  order.sort((a, b) => childWeight[a]! - childWeight[b]! || childCost[a]! - childCost[b]!);
  const keptWeight = new Float64Array(m);
  const keptCost = new Float64Array(m);
  const keptParent = new Int32Array(m);
  const keptItem = new Int32Array(m);
  let size = 0;
  let cheapest = Number.POSITIVE_INFINITY;
  for (let t = 0; t < m; t++) {
    const o = order[t]!;
    if (childCost[o]! < cheapest) {
      cheapest = childCost[o]!;
      keptWeight[size] = childWeight[o]!;
      keptCost[size] = childCost[o]!;
      keptParent[size] = childParent[o]!;
      keptItem[size] = childItem[o]!;
      size++;
    }
  }
  if (size > search.maxStates) throw new KnapsackSearchLimitError(search.maxStates);
  return {
    states: { weight: keptWeight.slice(0, size), cost: keptCost.slice(0, size), parent: keptParent.slice(0, size), item: keptItem.slice(0, size) },
    cutBound,
    generated,
  };
}

/**
 * The best solution below `cutoff`, if any (phase 4): reduced-cost fixing, then dynamic programming over the classes
 * left free with (weight, cost) states pruned by dominance and by the exact LP of the classes still to add.
 */
function searchBelow(search: SearchProblem, cutoff: number): SearchOutcome {
  const { pareto, capacity } = search;
  const n = pareto.length;
  const fixing = fixBelow(search, cutoff);
  let cutBound = fixing.cutBound;
  if (fixing.empty) return { found: undefined, prunedBound: cutBound, nodes: 0, freeClasses: 0 };
  const { free, candidates } = fixing;
  const f = free.length;
  const { suffix, minimumWeight } = suffixRelaxations(pareto, fixing);

  let stateWeight: Float64Array = Float64Array.of(fixing.fixedWeight);
  let stateCost: Float64Array = Float64Array.of(fixing.fixedCost);
  const parents: Int32Array[] = [];
  const chosen: Int32Array[] = [];
  let generated = 0;
  for (let k = 0; k < f; k++) {
    const step = extendStates(search, { weight: stateWeight, cost: stateCost }, free[k]!, candidates[free[k]!]!, suffix[k + 1]!, minimumWeight[k + 1]!, cutoff);
    cutBound = Math.min(cutBound, step.cutBound);
    generated += step.generated;
    stateWeight = step.states.weight;
    stateCost = step.states.cost;
    parents.push(step.states.parent);
    chosen.push(step.states.item);
    if (stateWeight.length === 0) return { found: undefined, prunedBound: cutBound, nodes: generated, freeClasses: f };
  }
  // Every final state is complete and feasible; the cheapest one is the best solution below the cutoff.
  if (stateCost.length === 0) return { found: undefined, prunedBound: cutBound, nodes: generated, freeClasses: f };
  let best = 0;
  for (let s = 1; s < stateCost.length; s++) if (stateCost[s]! < stateCost[best]!) best = s;
  if (f === 0 && !(stateCost[0]! < cutoff)) return { found: undefined, prunedBound: Math.min(cutBound, stateCost[0]!), nodes: generated, freeClasses: 0 };
  const solution = new Int32Array(n);
  for (let c = 0; c < n; c++) if (candidates[c]!.length === 1) solution[c] = candidates[c]![0]!;
  let s = best;
  for (let k = f - 1; k >= 0; k--) {
    solution[free[k]!] = chosen[k]![s]!;
    s = parents[k]![s]!;
  }
  if (f === 0 && stateWeight[0]! > capacity) return { found: undefined, prunedBound: cutBound, nodes: generated, freeClasses: 0 };
  return { found: { cost: stateCost[best]!, weight: stateWeight[best]!, choice: solution }, prunedBound: cutBound, nodes: generated, freeClasses: f };
}
