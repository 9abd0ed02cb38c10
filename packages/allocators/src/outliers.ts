import { InvalidDataError, InvalidOptionError, LINEAR_MODULES, type LinearModule } from '@layerquant/core';

/**
 * Outlier layers (paper section "SensiBoost / KurtBoost"): per module type, the change of a metric from one
 * layer to the next, a z-score against a trimmed mean and deviation, and the layers whose change stands out.
 */

/** How consecutive layers are compared: `ratio` S[i+1]/S[i] (sensitivity), `difference` S[i+1]-S[i] (kurtosis). */
export type LayerChange = 'ratio' | 'difference';

/** D_i = S[i+1] / S[i]: the authors' "divide" change, used for activation sensitivity. */
export function consecutiveLayerRatios(values: ArrayLike<number>): Float64Array {
  const out = new Float64Array(Math.max(0, values.length - 1));
  for (let i = 0; i < out.length; i++) out[i] = values[i + 1]! / values[i]!;
  return out;
}

/** D_i = S[i+1] - S[i]: the authors' "subtract" change, used for kurtosis. */
export function consecutiveLayerDifferences(values: ArrayLike<number>): Float64Array {
  const out = new Float64Array(Math.max(0, values.length - 1));
  for (let i = 0; i < out.length; i++) out[i] = values[i + 1]! - values[i]!;
  return out;
}

/**
 * Mean and sample deviation (ddof = 1) after dropping the k = floor(proportion * n) smallest and k largest
 * values, as scipy.stats.mstats.trimmed_mean / trimmed_std with limits (p, p) do.
 */
export function trimmedMeanAndDeviation(values: ArrayLike<number>, proportion = 0.05): { mean: number; deviation: number } {
  const n = values.length;
  const k = Math.trunc(proportion * n);
  const sorted = Float64Array.from(values).sort();
  const kept = sorted.subarray(k, n - k);
  let sum = 0;
  for (const v of kept) sum += v;
  const mean = sum / kept.length;
  let squares = 0;
  for (const v of kept) squares += (v - mean) * (v - mean);
  return { mean, deviation: Math.sqrt(squares / (kept.length - 1)) };
}

/** z_i = |D_i - mu| / sigma over all D, with mu, sigma trimmed. */
export function trimmedZScores(changes: ArrayLike<number>, proportion = 0.05): Float64Array {
  const { mean, deviation } = trimmedMeanAndDeviation(changes, proportion);
  const z = new Float64Array(changes.length);
  for (let i = 0; i < z.length; i++) z[i] = Math.abs(changes[i]! - mean) / deviation;
  return z;
}

export interface OutlierLayer {
  /** The layer whose metric jumped: i + 1 for change D_i. */
  readonly layer: number;
  readonly zScore: number;
}

export interface OutlierOptions {
  readonly change: LayerChange;
  /** Keep only the `topM` largest z-scores; 0 keeps all. The authors' default is 1. */
  readonly topM?: number;
  /** z-score above which a change is an outlier (3). */
  readonly threshold?: number;
  /** Proportion trimmed from each end for mu and sigma (0.05). */
  readonly trim?: number;
}

/**
 * Outlier layers of one module type, most extreme first (ties keep layer order, as Python's stable sort).
 * `values[l]` is the metric of layer l, layers ascending.
 */
export function detectOutlierLayers(values: ArrayLike<number>, options: OutlierOptions): OutlierLayer[] {
  const topM = options.topM ?? 1;
  const threshold = options.threshold ?? 3;
  if (!Number.isInteger(topM) || topM < 0) throw new InvalidOptionError('topM', `${topM} must be an integer >= 0 (0 = all outliers)`);
  if (values.length < 4) {
    throw new InvalidDataError('outlier detection', `needs at least 4 layers to estimate a deviation, got ${values.length}`);
  }
  const changes = options.change === 'ratio' ? consecutiveLayerRatios(values) : consecutiveLayerDifferences(values);
  const z = trimmedZScores(changes, options.trim ?? 0.05);
  const outliers: OutlierLayer[] = [];
  for (let i = 0; i < z.length; i++) if (z[i]! > threshold) outliers.push({ layer: i + 1, zScore: z[i]! });
  outliers.sort((a, b) => b.zScore - a.zScore);
  return topM > 0 ? outliers.slice(0, topM) : outliers;
}

export type ModuleOutliers = Readonly<Record<LinearModule, readonly OutlierLayer[]>>;

/** `detectOutlierLayers` for every module type. */
export function detectModuleOutliers(series: Readonly<Record<LinearModule, ArrayLike<number>>>, options: OutlierOptions): ModuleOutliers {
  const result = {} as Record<LinearModule, readonly OutlierLayer[]>;
  for (const module of LINEAR_MODULES) result[module] = Object.freeze(detectOutlierLayers(series[module], options));
  return Object.freeze(result);
}

/** Just the layer numbers, in z order. */
export function outlierLayerNumbers(outliers: ModuleOutliers): Record<LinearModule, number[]> {
  const result = {} as Record<LinearModule, number[]>;
  for (const module of LINEAR_MODULES) result[module] = outliers[module].map((o) => o.layer);
  return result;
}
