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
  /** ppl(method) - ppl(baseline) on all windows. */
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
  const resamples = options.resamples ?? 2000;
  const level = options.level ?? 0.95;
  if (!Number.isInteger(resamples) || resamples < 10) throw new InvalidOptionError('resamples', `${resamples} must be an integer >= 10`);
  if (!(level > 0 && level < 1)) throw new InvalidOptionError('level', `${level} must be between 0 and 1`);
  const random = seededRandom(options.seed ?? 42);
  const ppl = (nll: readonly number[], weights: readonly number[], pick?: Int32Array): number => {
    let sum = 0;
    let weight = 0;
    for (let k = 0; k < n; k++) {
      const i = pick ? pick[k]! : k;
      sum += nll[i]!;
      weight += weights[i]!;
    }
    return Math.exp(sum / weight);
  };
  const differences = new Float64Array(resamples);
  const pick = new Int32Array(n);
  for (let r = 0; r < resamples; r++) {
    for (let k = 0; k < n; k++) pick[k] = Math.floor(random() * n);
    differences[r] = ppl(a.nll, a.weights, pick) - ppl(b.nll, b.weights, pick);
  }
  differences.sort();
  return Object.freeze({
    difference: ppl(a.nll, a.weights) - ppl(b.nll, b.weights),
    low: quantile(differences, (1 - level) / 2),
    high: quantile(differences, (1 + level) / 2),
    windows: n,
    resamples,
    level,
  });
}

/** `better` when the whole interval is below 0, `worse` when above, else `tie` (the interval holds 0). */
export function verdict(interval: PairedInterval): 'better' | 'worse' | 'tie' {
  return interval.high < 0 ? 'better' : interval.low > 0 ? 'worse' : 'tie';
}
