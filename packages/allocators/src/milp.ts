import { InvalidDataError, InvalidOptionError, LINEAR_MODULES, matrixKey, type LinearModule } from '@layerquant/core';
import { kurtosisOutliers, sensitivityOutliers, type StatsAllocator } from './boost.js';
import { PAPER_SIZES, buildCostProblem, solveCostProblem, type KnapsackAllocation, type KnapsackOptions } from './cost-knapsack.js';
import type { ModuleOutliers } from './outliers.js';
import { kurtosisByModule, matricesOf, type FnormRow, type FnormTable, type ModelStats, type SensitivitySelection } from './stats.js';

/**
 * The authors' follow-up allocators (schnell18/hqq `hqq/utils/optimizer.py`, `load_precomputed_metrics`): MXQ's
 * knapsack with another cost per (matrix, config) row, solved here by our multiple-choice knapsack solver to a
 * proven gap instead of HiGHS under a time limit.
 */

export interface MilpOptions extends KnapsackOptions {
  /** Outlier layers kept per module, most extreme first; 0 = all (1). */
  readonly topM?: number;
  /** Cost multiplier of outlier matrices (2). */
  readonly factor?: number;
  /** The authors' ablation: no outlier gets the factor, so only bit width and size set the cost (false). */
  readonly ablation?: boolean;
  /** z-score threshold (3) and trimmed proportion (0.05) of the outlier test. */
  readonly threshold?: number;
  readonly trim?: number;
  /** sensi-milp: which rows of sensitivity.csv (b4g64 as SensiBoost). */
  readonly sensitivity?: SensitivitySelection;
}

export interface MilpAllocation extends KnapsackAllocation {
  /** Matrices whose cost carries the factor (none in the ablation). */
  readonly outliers?: ModuleOutliers;
}

function fnormOf(input: ModelStats, method: string): { table: FnormTable; source: string } {
  if (!input.fnorm) throw new InvalidDataError(input.source ?? 'statistics', `${method} needs the fnorm table (fnorm.csv: memmb, params and fnorm per matrix and config)`);
  return { table: input.fnorm, source: `${input.source ?? '.'}/fnorm.csv` };
}

function positive(value: number, option: string): number {
  if (!Number.isFinite(value) || value <= 0) throw new InvalidOptionError(option, `${value} must be a positive number`);
  return value;
}

/** `low_bit_penalty`: 4 below 3 bits, 2 below 4 bits, else 1. */
export function lowBitPenalty(bits: number): number {
  return bits < 3 ? 4 : bits < 4 ? 2 : 1;
}

/** bpp of a row from its own meta settings: `b1 + 2*b2/g1 + 32/(g1*g2)`. */
function rowBitsPerWeight(r: FnormRow): number {
  return r.bits + (2 * r.metaBits) / r.groupSize + 32 / (r.groupSize * r.metaGroupSize);
}

/**
 * The sensi-milp / kurt-milp cost of one row (`_set_cost_factor`): `penalty(b1) * f / bpp * 100 * params / P`,
 * f = factor for an outlier matrix else 1, P the model's quantized parameters (their `sum(params) / 12`).
 */
export function milpCost(r: FnormRow, totalParams: number, outlier: boolean, factor: number): number {
  return ((lowBitPenalty(r.bits) * (outlier ? factor : 1)) / rowBitsPerWeight(r)) * 100 * (r.params / totalParams);
}

function outlierSet(outliers: ModuleOutliers | undefined): Set<string> {
  const keys = new Set<string>();
  if (outliers) for (const module of LINEAR_MODULES) for (const o of outliers[module]) keys.add(matrixKey(o.layer, module));
  return keys;
}

function milpAllocator(id: 'sensi-milp' | 'kurt-milp'): StatsAllocator<MilpOptions, MilpAllocation> {
  return Object.freeze({
    id,
    allocate(input: ModelStats, options: MilpOptions): MilpAllocation {
      const { table, source } = fnormOf(input, id);
      const topM = options.topM ?? 1;
      if (!Number.isInteger(topM) || topM < 0) throw new InvalidOptionError('topM', `${topM} must be an integer >= 0 (0 = all outliers)`);
      const factor = positive(options.factor ?? 2, 'factor');
      const ablation = options.ablation ?? false;
      const matrices = matricesOf(input);
      const numLayers = Math.max(...matrices.map((m) => m.layer)) + 1;
      const detection = {
        topM,
        ...(options.threshold === undefined ? {} : { threshold: options.threshold }),
        ...(options.trim === undefined ? {} : { trim: options.trim }),
        ...(options.sensitivity ? { sensitivity: options.sensitivity } : {}),
      };
      const outliers = ablation ? undefined : id === 'sensi-milp' ? sensitivityOutliers(input, numLayers, detection) : kurtosisOutliers(input, numLayers, detection);
      const boosted = outlierSet(outliers);
      let totalParams = 0;
      for (const m of matrices) if ((options.size ?? PAPER_SIZES).includes(m)) totalParams += m.params;
      const problem = buildCostProblem(table.rows, (r) => milpCost(r, totalParams, boosted.has(matrixKey(r.layer, r.module)), factor), source, options.configs, options.size);
      const allocation = solveCostProblem(problem, id, options, { topM, factor, ablation });
      return Object.freeze({ ...allocation, ...(outliers ? { outliers } : {}) });
    },
  });
}

/** sensi-milp: the knapsack whose cost is set by bit width, size and SensiBoost's outlier layers. */
export const sensiMilpAllocator = milpAllocator('sensi-milp');
/** kurt-milp: the same with KurtBoost's outlier layers (kurtosis). */
export const kurtMilpAllocator = milpAllocator('kurt-milp');

export interface KurtScaledOptions extends KnapsackOptions {}

/**
 * `kurtosis_scaled` of every matrix (lm-quant-toolkit `prep/fnorm.py` `join_kurtosis`): kurtosis min-max scaled
 * within its module over the layers, (k - min) / (max - min).
 */
export function scaledKurtosis(input: ModelStats): Map<string, number> {
  const matrices = matricesOf(input);
  const numLayers = Math.max(...matrices.map((m) => m.layer)) + 1;
  const series = kurtosisByModule(input, numLayers);
  const scaled = new Map<string, number>();
  for (const module of LINEAR_MODULES) {
    const values = series[module];
    let min = Infinity;
    let max = -Infinity;
    for (const v of values) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    for (let layer = 0; layer < numLayers; layer++) scaled.set(matrixKey(layer, module), max > min ? (values[layer]! - min) / (max - min) : 0);
  }
  return scaled;
}

/** kurt-scaled: MXQ with cost `fnorm * (1 + kurtosis_scaled)` (the embedding units have no layer series: scaled 0). */
export const kurtScaledAllocator: StatsAllocator<KurtScaledOptions, KnapsackAllocation> = Object.freeze({
  id: 'kurt-scaled',
  allocate(input: ModelStats, options: KurtScaledOptions): KnapsackAllocation {
    const { table, source } = fnormOf(input, 'kurt-scaled');
    const scaled = scaledKurtosis(input);
    const problem = buildCostProblem(table.rows, (r) => r.fnorm * (1 + (scaled.get(matrixKey(r.layer, r.module)) ?? 0)), source, options.configs, options.size);
    return solveCostProblem(problem, 'kurt-scaled', options);
  },
});

export interface PrioritizedOptions extends KnapsackOptions {
  /** Multiplier of the prioritized layer's fnorm (1.1, the authors' default). */
  readonly factor?: number;
}

function prioritized(id: 'head-prioritized' | 'tail-prioritized'): StatsAllocator<PrioritizedOptions, KnapsackAllocation> {
  return Object.freeze({
    id,
    allocate(input: ModelStats, options: PrioritizedOptions): KnapsackAllocation {
      const { table, source } = fnormOf(input, id);
      const factor = positive(options.factor ?? 1.1, 'factor');
      const layer = id === 'head-prioritized' ? 0 : Math.max(...table.rows.map((r) => r.layer));
      const problem = buildCostProblem(table.rows, (r) => r.fnorm * (r.layer === layer ? factor : 1), source, options.configs, options.size);
      return solveCostProblem(problem, id, options, { factor, layer });
    },
  });
}

/** head-prioritized: MXQ with the first layer's fnorm multiplied by `factor`. */
export const headPrioritizedAllocator = prioritized('head-prioritized');
/** tail-prioritized: MXQ with the last layer's fnorm multiplied by `factor`. */
export const tailPrioritizedAllocator = prioritized('tail-prioritized');

export interface MeasuredOptions extends KnapsackOptions {}

/**
 * measured (layerquant's own): the least summed measured block-output error (measured.csv: every matrix alone at
 * every config, on the calibration blocks) within the memory budget.
 */
export const measuredAllocator: StatsAllocator<MeasuredOptions, KnapsackAllocation> = Object.freeze({
  id: 'measured',
  allocate(input: ModelStats, options: MeasuredOptions): KnapsackAllocation {
    if (!input.measured) {
      throw new InvalidDataError(input.source ?? 'statistics', 'measured needs measured.csv (block-output error of every matrix and config): run `layerquant sensitivity --measured`');
    }
    const problem = buildCostProblem(input.measured.rows, (r) => r.error, `${input.source ?? '.'}/measured.csv`, options.configs, options.size);
    return solveCostProblem(problem, 'measured', options);
  },
});

export type { LinearModule };
