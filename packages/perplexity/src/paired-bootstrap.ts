import { InvalidDataError, InvalidOptionError, seededRandom } from '@layerquant/core';

/** Settings of the paired bootstrap over evaluation windows. */
export interface BootstrapOptions {
  /** Resamples (2000). */
  readonly resamples?: number;
  /** Seed of the window draws (42): index = floor(random() * windows) with core's seededRandom (mulberry32). */
  readonly seed?: number;
  /** Coverage of the percentile interval (0.95). */
  readonly level?: number;
}

export interface PairedInterval {
  /** ppl(method) - ppl(baseline) on all windows (mean KLD for pairedBootstrapKld). */
  readonly difference: number;
  /** Percentile interval of the difference over resampled windows. */
  readonly low: number;
  readonly high: number;
  readonly windows: number;
  readonly resamples: number;
  readonly level: number;
}

/** Linear-interpolation quantile (type 7) of sorted values. */
function quantile(sorted: Float64Array, p: number): number {
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

/**
 * The paired resampling both statistics share: `statistic(pick)` of side a minus side b over windows drawn with
 * replacement (the same draws for both sides; `pick` undefined: all windows once).
 */
function bootstrapDifference(n: number, statistic: (side: 0 | 1, pick?: Int32Array) => number, options: BootstrapOptions): PairedInterval {
  const resamples = options.resamples ?? 2000;
  const level = options.level ?? 0.95;
  if (!Number.isInteger(resamples) || resamples < 10) throw new InvalidOptionError('resamples', `${resamples} must be an integer >= 10`);
  if (!(level > 0 && level < 1)) throw new InvalidOptionError('level', `${level} must be between 0 and 1`);
  const random = seededRandom(options.seed ?? 42);
  const differences = new Float64Array(resamples);
  const pick = new Int32Array(n);
  for (let r = 0; r < resamples; r++) {
    for (let k = 0; k < n; k++) pick[k] = Math.floor(random() * n);
    differences[r] = statistic(0, pick) - statistic(1, pick);
  }
  differences.sort();
  return Object.freeze({
    difference: statistic(0) - statistic(1),
    low: quantile(differences, (1 - level) / 2),
    high: quantile(differences, (1 + level) / 2),
    windows: n,
    resamples,
    level,
  });
}

/** sum values / sum weights over the windows `pick` draws (all once when undefined). */
function ratioOfSums(values: readonly number[], weights: readonly number[], n: number, pick?: Int32Array): number {
  let sum = 0;
  let weight = 0;
  for (let k = 0; k < n; k++) {
    const i = pick ? pick[k]! : k;
    sum += values[i]!;
    weight += weights[i]!;
  }
  return sum / weight;
}

/**
 * Paired bootstrap of the perplexity difference of two evaluations of the same windows: each resample draws
 * `windows` window indices with replacement (the same for both), and takes
 * exp(sum nll_a / sum w_a) - exp(sum nll_b / sum w_b) over the drawn windows; the interval is the
 * (1-level)/2 and (1+level)/2 quantiles (linear interpolation) of the resampled differences.
 */
export function pairedBootstrap(
  a: { readonly nll: readonly number[]; readonly weights: readonly number[] },
  b: { readonly nll: readonly number[]; readonly weights: readonly number[] },
  options: BootstrapOptions = {},
): PairedInterval {
  const n = a.nll.length;
  if (n === 0 || b.nll.length !== n || a.weights.length !== n || b.weights.length !== n) {
    throw new InvalidDataError('results', `a paired bootstrap needs the same windows on both sides (got ${n} and ${b.nll.length})`);
  }
  const sides = [a, b] as const;
  return bootstrapDifference(n, (side, pick) => Math.exp(ratioOfSums(sides[side].nll, sides[side].weights, n, pick)), options);
}

/**
 * Paired bootstrap of the mean-KLD difference of two evaluations of the same windows against the same base, with
 * the same draws as `pairedBootstrap` (same seed: the same windows are drawn for perplexity and KLD): each resample
 * takes sum kld_a / sum count_a - sum kld_b / sum count_b over the drawn windows (mean KLD per scored token).
 */
export function pairedBootstrapKld(
  a: { readonly kld: readonly number[]; readonly count: readonly number[] },
  b: { readonly kld: readonly number[]; readonly count: readonly number[] },
  options: BootstrapOptions = {},
): PairedInterval {
  const n = a.kld.length;
  if (n === 0 || b.kld.length !== n || a.count.length !== n || b.count.length !== n || a.count.some((c, i) => c !== b.count[i])) {
    throw new InvalidDataError('results', `a paired bootstrap of KLD needs the same windows with the same scored tokens on both sides (got ${n} and ${b.kld.length} windows)`);
  }
  const sides = [a, b] as const;
  return bootstrapDifference(n, (side, pick) => ratioOfSums(sides[side].kld, sides[side].count, n, pick), options);
}

/** `better` when the whole interval is below 0, `worse` when above, else `tie` (the interval holds 0). */
export function verdict(interval: PairedInterval): 'better' | 'worse' | 'tie' {
  return interval.high < 0 ? 'better' : interval.low > 0 ? 'worse' : 'tie';
}
