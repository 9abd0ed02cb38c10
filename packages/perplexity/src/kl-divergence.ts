import { InvalidDataError, InvalidOptionError } from '@layerquant/core';

/**
 * KL divergence of a model's next-token distribution from a base (float) model's on the same tokens, with the
 * statistics llama.cpp's `llama-perplexity --kl-divergence` prints (tools/perplexity/perplexity.cpp): PPL(Q) and
 * PPL(base) with their errors, their ln-ratio, ratio and difference with errors (through the covariance of the two
 * per-token NLLs), mean KLD with its error, median, percentiles, minimum and maximum; the probability each model
 * gives the actual next token (Δp = p - p_base: mean with error, RMS with error, percentiles); and how often both
 * models rank the same token first ("same top p", with its binomial error).
 *
 * Where this differs from llama.cpp, on purpose: every sum is float64 and runs over the whole vocabulary (llama.cpp
 * stores base log-probabilities in 16 bits over the 16 nats below the maximum and drops the terms below that);
 * per-token values are kept as float64 and percentiles interpolate in float64 (llama.cpp: float32). The tokens are
 * the scored positions of the evaluation protocol, the ones perplexity scores (llama.cpp scores the second half of
 * each window).
 */

/** One position: both models' next-token distributions and the actual next token. */
export interface PositionComparison {
  /** -log p(target) under the model compared. */
  readonly nll: number;
  /** -log p_base(target). */
  readonly nllBase: number;
  /** KL(base || model) = sum_i p_base(i) (log p_base(i) - log p(i)), over the whole vocabulary. */
  readonly kld: number;
  /** p(target) - p_base(target). */
  readonly pDiff: number;
  /** Whether the most likely token (first index on ties) is the same under both. */
  readonly sameTop: boolean;
}

/** Max, first argmax and log-sum-exp (max + log sum exp(x - max), float64) of one logits row. */
export function logSumExpRow(row: ArrayLike<number>, begin = 0, length = row.length - begin): { max: number; argmax: number; lse: number } {
  let max = -Infinity;
  let argmax = 0;
  for (let j = 0; j < length; j++) {
    const v = row[begin + j]!;
    if (v > max) {
      max = v;
      argmax = j;
    }
  }
  let sum = 0;
  for (let j = 0; j < length; j++) sum += Math.exp(row[begin + j]! - max);
  return { max, argmax, lse: max + Math.log(sum) };
}

/**
 * Compares one position of a base model's logits with a model's (rows of `vocab` values at `baseOffset` and
 * `offset`), in float64. Non-finite logits are a typed error naming the position.
 */
export function comparePosition(
  baseLogits: ArrayLike<number>,
  baseOffset: number,
  logits: ArrayLike<number>,
  offset: number,
  vocab: number,
  target: number,
): PositionComparison {
  if (!Number.isInteger(target) || target < 0 || target >= vocab) throw new InvalidOptionError('targets', `token id ${target} is outside the vocabulary [0, ${vocab})`);
  const base = logSumExpRow(baseLogits, baseOffset, vocab);
  const model = logSumExpRow(logits, offset, vocab);
  if (!Number.isFinite(base.lse) || !Number.isFinite(model.lse)) {
    throw new InvalidDataError(Number.isFinite(base.lse) ? 'logits' : 'base logits', 'hold a value that is not a finite number; the model produced NaN or infinite logits');
  }
  // sum_i p_b(i) (lp_b(i) - lp(i)) with lp_b(i) - lp(i) = (zb_i - lse_b) - (z_i - lse).
  const shift = model.lse - base.lse;
  let kld = 0;
  for (let j = 0; j < vocab; j++) {
    const logBase = baseLogits[baseOffset + j]! - base.lse;
    kld += Math.exp(logBase) * (baseLogits[baseOffset + j]! - logits[offset + j]! + shift);
  }
  const nll = model.lse - logits[offset + target]!;
  const nllBase = base.lse - baseLogits[baseOffset + target]!;
  return { nll, nllBase, kld, pDiff: Math.exp(-nll) - Math.exp(-nllBase), sameTop: model.argmax === base.argmax };
}

/** A value and its standard error. */
export interface Estimate {
  readonly value: number;
  readonly error: number;
}

/** The quantiles llama.cpp prints for KLD (fractions), highest first. */
export const KLD_QUANTILES = Object.freeze([0.999, 0.99, 0.95, 0.9, 0.1, 0.05, 0.01, 0.001]);
/** The quantiles llama.cpp prints for Δp. */
export const DELTA_P_QUANTILES = Object.freeze([0.999, 0.99, 0.95, 0.9, 0.75, 0.25, 0.1, 0.05, 0.01, 0.001]);

/** Distribution of per-token values: mean with its error, median, quantiles (fraction -> value), extremes. */
export interface Distribution {
  readonly mean: number;
  readonly error: number;
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** Quantile by its fraction's string ('0.999', '0.01'), linear interpolation between order statistics. */
  readonly quantiles: Readonly<Record<string, number>>;
}

export interface KldStatistics {
  /** Scored tokens. */
  readonly tokens: number;
  /** Perplexity of the model and of the base, exp(mean NLL), error ppl * stderr(NLL). */
  readonly ppl: Estimate;
  readonly pplBase: Estimate;
  /** Correlation of the two models' per-token NLLs (what the ratio's error uses). */
  readonly nllCorrelation: number;
  /** mean NLL - mean NLL_base, with the paired error. */
  readonly lnPplRatio: Estimate;
  /** PPL(Q) / PPL(base) = exp(lnPplRatio). */
  readonly pplRatio: Estimate;
  /** PPL(Q) - PPL(base). */
  readonly pplDifference: Estimate;
  readonly kld: Distribution;
  /** Δp = p(target) - p_base(target), as a fraction (not percent). */
  readonly deltaP: Distribution;
  /** Root mean square of Δp, with its error. */
  readonly rmsDeltaP: Estimate;
  /** Fraction of tokens whose most likely next token is the same under both models. */
  readonly sameTop: Estimate;
}

/**
 * The statistics a report keeps of a KL-divergence run (an experiment's cell, the notebook's live measurement): mean
 * KLD with its error, median, 99% and 99.9%, maximum, same top with its error, RMS Δp, the perplexity ratio.
 */
export interface KldSummary {
  readonly mean: number;
  readonly error: number;
  readonly median: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  /** Fraction of tokens whose most likely next token is the base's, with its error. */
  readonly sameTop: number;
  readonly sameTopError: number;
  /** Root mean square of p(target) - p_base(target). */
  readonly rmsDeltaP: number;
  /** PPL(model) / PPL(base) with its error. */
  readonly pplRatio: number;
  readonly pplRatioError: number;
}

export function kldSummary(s: KldStatistics): KldSummary {
  return {
    mean: s.kld.mean,
    error: s.kld.error,
    median: s.kld.median,
    p99: s.kld.quantiles['0.99']!,
    p999: s.kld.quantiles['0.999']!,
    max: s.kld.max,
    sameTop: s.sameTop.value,
    sameTopError: s.sameTop.error,
    rmsDeltaP: s.rmsDeltaP.value,
    pplRatio: s.pplRatio.value,
    pplRatioError: s.pplRatio.error,
  };
}

/** Per evaluation window: the sums the paired bootstrap resamples (mean KLD = sum kld / count over windows). */
export interface WindowKld {
  readonly kld: readonly number[];
  readonly count: readonly number[];
}

/** llama.cpp's mean_and_uncertainty: the mean and its standard error (0 with 10 values or fewer). */
function meanAndError(sum: number, sum2: number, count: number): Estimate {
  if (count < 1) return { value: 0, error: 0 };
  const mean = sum / count;
  const variance = sum2 / count - mean * mean;
  return { value: mean, error: variance > 0 && count > 10 ? Math.sqrt(variance / (count - 1)) : 0 };
}

/** llama.cpp's covariance of two means (0 below 10 values). */
function covarianceOfMeans(sumA: number, sumB: number, sumAB: number, count: number): number {
  if (count < 10) return 0;
  return (sumAB / count - (sumA / count) * (sumB / count)) / (count - 1);
}

/** Linear interpolation between the order statistics of sorted values at fraction f of (n - 1) (torch.quantile's 'linear'). */
export function sortedQuantile(sorted: ArrayLike<number>, fraction: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  if (fraction <= 0) return sorted[0]!;
  if (fraction >= 1) return sorted[n - 1]!;
  const position = fraction * (n - 1);
  const low = Math.floor(position);
  const high = Math.min(low + 1, n - 1);
  const t = position - low;
  return (1 - t) * sorted[low]! + t * sorted[high]!;
}

function distribution(values: Float64Array, sum: number, sum2: number, fractions: readonly number[]): Distribution {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  const { value: mean, error } = meanAndError(sum, sum2, n);
  const median = n % 2 === 0 ? 0.5 * (sorted[n / 2]! + sorted[n / 2 - 1]!) : sorted[(n - 1) / 2]!;
  return Object.freeze({
    mean,
    error,
    median,
    min: sorted[0]!,
    max: sorted[n - 1]!,
    quantiles: Object.freeze(Object.fromEntries(fractions.map((f) => [String(f), sortedQuantile(sorted, f)]))),
  });
}

/**
 * Accumulates positions (in any order) and windows, and gives the statistics. Memory: two float64 values per scored
 * token (KLD and Δp, for the percentiles), never a vocabulary-sized row.
 */
export class KldAccumulator {
  private kldValues = new Float64Array(1024);
  private pDiffValues = new Float64Array(1024);
  private count = 0;
  private sumNll = 0;
  private sumNll2 = 0;
  private sumNllBase = 0;
  private sumNllBase2 = 0;
  private sumNllNllBase = 0;
  private sumKld = 0;
  private sumKld2 = 0;
  private sumPDiff = 0;
  private sumPDiff2 = 0;
  private sumPDiff4 = 0;
  private sameTop = 0;
  private readonly windowKld: number[] = [];
  private readonly windowCount: number[] = [];

  /** Adds one position. */
  add(p: PositionComparison): void {
    if (this.count === this.kldValues.length) {
      const grow = (a: Float64Array) => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.kldValues = grow(this.kldValues);
      this.pDiffValues = grow(this.pDiffValues);
    }
    this.kldValues[this.count] = p.kld;
    this.pDiffValues[this.count] = p.pDiff;
    this.count++;
    this.sumNll += p.nll;
    this.sumNll2 += p.nll * p.nll;
    this.sumNllBase += p.nllBase;
    this.sumNllBase2 += p.nllBase * p.nllBase;
    this.sumNllNllBase += p.nll * p.nllBase;
    this.sumKld += p.kld;
    this.sumKld2 += p.kld * p.kld;
    this.sumPDiff += p.pDiff;
    const d2 = p.pDiff * p.pDiff;
    this.sumPDiff2 += d2;
    this.sumPDiff4 += d2 * d2;
    if (p.sameTop) this.sameTop++;
  }

  /**
   * Adds the scored positions of one window: `baseLogits` and `logits` hold `rows` rows of `vocab` values (the
   * positions whose next token is scored), `targets[r]` the token after row r. Returns the window's KLD sum.
   */
  addWindow(baseLogits: ArrayLike<number>, logits: ArrayLike<number>, vocab: number, targets: ArrayLike<number>): number {
    const rows = targets.length;
    if (baseLogits.length !== rows * vocab || logits.length !== rows * vocab) {
      throw new InvalidOptionError('logits', `${logits.length} model and ${baseLogits.length} base values for ${rows} positions of ${vocab}; give [positions, vocab] for both`);
    }
    let sum = 0;
    for (let r = 0; r < rows; r++) {
      const p = comparePosition(baseLogits, r * vocab, logits, r * vocab, vocab, targets[r]!);
      this.add(p);
      sum += p.kld;
    }
    this.windowKld.push(sum);
    this.windowCount.push(rows);
    return sum;
  }

  get tokens(): number {
    return this.count;
  }

  /** Per window KLD sums and scored counts, in the order windows were added. */
  windows(): WindowKld {
    return Object.freeze({ kld: Object.freeze([...this.windowKld]), count: Object.freeze([...this.windowCount]) });
  }

  statistics(): KldStatistics {
    const n = this.count;
    if (n === 0) throw new InvalidDataError('KL divergence', 'no position was scored; evaluate at least one window');
    const nll = meanAndError(this.sumNll, this.sumNll2, n);
    const nllBase = meanAndError(this.sumNllBase, this.sumNllBase2, n);
    const cov = covarianceOfMeans(this.sumNll, this.sumNllBase, this.sumNllNllBase, n);
    const ppl = Math.exp(nll.value);
    const pplBase = Math.exp(nllBase.value);
    const pplError = ppl * nll.error;
    const pplBaseError = pplBase * nllBase.error;
    const lnRatio = nll.value - nllBase.value;
    const lnRatioError = Math.sqrt(Math.max(0, nll.error * nll.error + nllBase.error * nllBase.error - 2 * cov));
    const pplCov = ppl * pplBase * cov;
    const mse = meanAndError(this.sumPDiff2, this.sumPDiff4, n);
    const rms = Math.sqrt(mse.value);
    const sameTop = this.sameTop / n;
    const values = (a: Float64Array) => a.subarray(0, n);
    return Object.freeze({
      tokens: n,
      ppl: { value: ppl, error: pplError },
      pplBase: { value: pplBase, error: pplBaseError },
      nllCorrelation: nll.error > 0 && nllBase.error > 0 ? cov / (nll.error * nllBase.error) : Number.NaN,
      lnPplRatio: { value: lnRatio, error: lnRatioError },
      pplRatio: { value: Math.exp(lnRatio), error: Math.exp(lnRatio) * lnRatioError },
      pplDifference: { value: ppl - pplBase, error: Math.sqrt(Math.max(0, pplError * pplError + pplBaseError * pplBaseError - 2 * pplCov)) },
      kld: distribution(values(this.kldValues), this.sumKld, this.sumKld2, KLD_QUANTILES),
      deltaP: distribution(values(this.pDiffValues), this.sumPDiff, this.sumPDiff2, DELTA_P_QUANTILES),
      rmsDeltaP: { value: rms, error: rms > 0 ? (0.5 / rms) * mse.error : 0 },
      sameTop: { value: sameTop, error: n > 1 ? Math.sqrt((sameTop * (1 - sameTop)) / (n - 1)) : 0 },
    });
  }
}
