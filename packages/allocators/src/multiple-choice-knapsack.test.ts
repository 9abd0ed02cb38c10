import { describe, expect, it } from 'vitest';
import { lowerConvexHull, paretoItems, seededRandom, solveMultipleChoiceKnapsack, type KnapsackClass } from './index.js';

/** Exhaustive search: the oracle for small instances. */
function bruteForce(classes: readonly KnapsackClass[], capacity: number): number {
  let best = Number.POSITIVE_INFINITY;
  const visit = (i: number, weight: number, cost: number): void => {
    if (weight > capacity) return;
    if (i === classes.length) {
      best = Math.min(best, cost);
      return;
    }
    const c = classes[i]!;
    for (let j = 0; j < c.weights.length; j++) visit(i + 1, weight + c.weights[j]!, cost + c.costs[j]!);
  };
  visit(0, 0, 0);
  return best;
}

function randomInstance(seed: number, classes: number, items: number, integerWeights: boolean): { classes: KnapsackClass[]; capacity: number } {
  const random = seededRandom(seed);
  const list: KnapsackClass[] = [];
  let minimum = 0;
  let maximum = 0;
  for (let i = 0; i < classes; i++) {
    const weights = Float64Array.from({ length: items }, () => (integerWeights ? 1 + Math.floor(random() * 20) : 0.5 + random() * 10));
    // Costs fall with weight plus noise, so the instance has dominated and non-convex items.
    const costs = Float64Array.from(weights, (w) => 100 / w + random() * 8);
    list.push({ weights, costs });
    minimum += Math.min(...weights);
    maximum += Math.max(...weights);
  }
  return { classes: list, capacity: minimum + (maximum - minimum) * (0.2 + 0.6 * random()) };
}

describe('solveMultipleChoiceKnapsack', () => {
  it('finds the exhaustive optimum on 200 random instances (gap 0 asked)', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const { classes, capacity } = randomInstance(seed, 3 + (seed % 5), 2 + (seed % 4), seed % 2 === 0);
      const expected = bruteForce(classes, capacity);
      const result = solveMultipleChoiceKnapsack({ classes, capacity }, { relativeGap: 0 });
      if (result.status !== 'optimal') throw new Error(`seed ${seed}: ${result.status}`);
      expect(result.objective, `seed ${seed}`).toBeCloseTo(expected, 9);
      expect(result.bound).toBeLessThanOrEqual(expected + 1e-9);
      expect(result.lpBound).toBeLessThanOrEqual(expected + 1e-9);
      expect(result.weight).toBeLessThanOrEqual(capacity);
      // The choice is a real solution with the reported cost and weight.
      let weight = 0;
      let cost = 0;
      classes.forEach((c, i) => {
        weight += c.weights[result.choice[i]!]!;
        cost += c.costs[result.choice[i]!]!;
      });
      expect(weight).toBeCloseTo(result.weight, 9);
      expect(cost).toBeCloseTo(result.objective, 9);
    }
  });
  it('matches an exact dynamic program over integer capacity on 60 larger instances with tied costs', () => {
    for (let seed = 1000; seed < 1060; seed++) {
      const random = seededRandom(seed);
      const classes: KnapsackClass[] = [];
      let minimum = 0;
      let maximum = 0;
      for (let i = 0; i < 40; i++) {
        const weights = Float64Array.from({ length: 6 }, () => 1 + Math.floor(random() * 20));
        // Costs rounded to quarters, as the authors' bf16 fnorm values are: many exact ties.
        const costs = Float64Array.from(weights, (w) => Math.round((60 / w + random() * 4) * 4) / 4);
        classes.push({ weights, costs });
        minimum += Math.min(...weights);
        maximum += Math.max(...weights);
      }
      const capacity = Math.floor(minimum + (maximum - minimum) * random());
      // best[w] = least cost with total weight exactly w, class by class.
      let best = new Float64Array(capacity + 1).fill(Number.POSITIVE_INFINITY);
      best[0] = 0;
      for (const c of classes) {
        const next = new Float64Array(capacity + 1).fill(Number.POSITIVE_INFINITY);
        for (let w = 0; w <= capacity; w++) {
          if (best[w] === Number.POSITIVE_INFINITY) continue;
          for (let j = 0; j < c.weights.length; j++) {
            const v = w + c.weights[j]!;
            if (v <= capacity) next[v] = Math.min(next[v]!, best[w]! + c.costs[j]!);
          }
        }
        best = next;
      }
      const expected = Math.min(...best);
      const result = solveMultipleChoiceKnapsack({ classes, capacity }, { relativeGap: 0 });
      if (result.status !== 'optimal') throw new Error(`seed ${seed}: infeasible`);
      expect(result.objective, `seed ${seed}`).toBeCloseTo(expected, 9);
      expect(result.weight).toBeLessThanOrEqual(capacity);
      expect(result.gap).toBeLessThanOrEqual(1e-12);
    }
  });
  it('stays within the relative gap asked and proves it, reporting optimal only at a proven optimum', () => {
    let stoppedAtGap = 0;
    for (let seed = 300; seed < 340; seed++) {
      const { classes, capacity } = randomInstance(seed, 8, 5, false);
      const expected = bruteForce(classes, capacity);
      const result = solveMultipleChoiceKnapsack({ classes, capacity }, { relativeGap: 1e-2 });
      if (result.status === 'infeasible') throw new Error('infeasible');
      expect(result.gap).toBeLessThanOrEqual(1e-2);
      // Optimal only when proven (gap 0); a search stopped short of the proof says so, with its gap.
      expect(result.status).toBe(result.gap === 0 ? 'optimal' : 'gap');
      if (result.status === 'gap') {
        expect(result.gap).toBeGreaterThan(0);
        expect(result.objective).toBeGreaterThan(result.bound);
      }
      if (result.status === 'optimal') expect(result.objective).toBeCloseTo(expected, 9);
      stoppedAtGap += result.status === 'gap' ? 1 : 0;
      expect(result.bound).toBeLessThanOrEqual(expected + 1e-9);
      expect(result.objective).toBeLessThanOrEqual(expected * (1 + 1e-2) + 1e-9);
    }
    // At a 1% gap some searches stop before the proof: those must not claim optimality.
    expect(stoppedAtGap).toBeGreaterThan(0);
  });
  it('reports infeasibility with the least possible weight', () => {
    const classes = [
      { weights: [3, 5], costs: [2, 1] },
      { weights: [4, 2], costs: [1, 3] },
    ];
    expect(solveMultipleChoiceKnapsack({ classes, capacity: 4.5 })).toEqual({ status: 'infeasible', minimumWeight: 5 });
    const result = solveMultipleChoiceKnapsack({ classes, capacity: 5 });
    expect(result).toMatchObject({ status: 'optimal', objective: 5, weight: 5 });
  });
  it('takes the cheapest items when the capacity allows everything', () => {
    const classes = [
      { weights: [1, 2, 3], costs: [3, 2, 1] },
      { weights: [1, 9], costs: [5, 4] },
    ];
    expect(solveMultipleChoiceKnapsack({ classes, capacity: 100 })).toMatchObject({ objective: 5, gap: 0, bound: 5 });
  });
});

describe('pareto items and convex hull', () => {
  it('drop dominated and LP-dominated items', () => {
    const items = paretoItems([1, 2, 2, 3, 4, 5], [10, 6, 7, 5.5, 2, 2]);
    expect(items.map((i) => i.index)).toEqual([0, 1, 3, 4]);
    expect(lowerConvexHull(items).map((i) => i.index)).toEqual([0, 1, 4]);
  });
});
