import {
  BUDGET_STOPS,
  InvalidDataError,
  InvalidOptionError,
  LINEAR_MODULES,
  isLinearModule,
  allocationTotals,
  bitsPerWeight,
  budgetStopIndex,
  configName,
  type BudgetStop,
  type QuantConfig,
  type Allocation,
  type Allocator,
  type LinearModule,
  type MatrixAllocation,
  type MatrixInfo,
} from '@layerquant/core';
import { detectModuleOutliers, type ModuleOutliers } from './outliers.js';
import { seededRandom } from './random.js';
import { kurtosisByModule, matricesOf, sensitivityByModule, type ModelStats, type SensitivitySelection } from './stats.js';

/**
 * Uniform, SensiBoost, KurtBoost and the ablation: every matrix gets the uniform config of a budget stop, and
 * chosen (layer, module) pairs move `boostStop` steps up the ladder of 12 stops (capped at the top).
 */

export interface UniformOptions {
  /** One of the paper's stops: 2.13, 2.25, ... 8.51 (or the exact bpp of its config); with `configs`, a stop of that ladder. */
  readonly budget: number;
  /** The config ladder (default: the paper's 12): its stops are the configs' bpp, ascending. */
  readonly configs?: readonly QuantConfig[];
}

export interface BoostOptions extends UniformOptions {
  /** Steps up the ladder of stops for an outlier matrix (2; the paper uses 2 and 3). */
  readonly boostStop?: number;
  /** Keep the `topM` most extreme outlier layers per module; 0 keeps all (1, the authors' default). */
  readonly topM?: number;
  /** z-score threshold (3). */
  readonly threshold?: number;
  /** Proportion trimmed from each end for the mean and deviation (0.05). */
  readonly trim?: number;
}

export interface SensiBoostOptions extends BoostOptions {
  /** Which rows of sensitivity.csv: nbits=4, group_size=64 by default (the authors' choice). */
  readonly sensitivity?: SensitivitySelection;
}

export interface AblationOptions extends SensiBoostOptions {
  /** Whose outlier count to imitate per module ('sensiboost'). */
  readonly imitate?: 'sensiboost' | 'kurtboost';
  /** Seed of the random layer draw (42). */
  readonly seed?: number;
  /**
   * The authors draw from `range(max_layer)`, i.e. layers 0..L-2, so the last layer is never drawn;
   * set true to draw from every layer (false, as they do).
   */
  readonly includeLastLayer?: boolean;
}

export interface UniformAllocation extends Allocation {
  /** Config every matrix gets unless boosted. */
  readonly baseConfig: string;
}

export interface BoostAllocation extends UniformAllocation {
  /** Config of the boosted matrices. */
  readonly boostConfig: string;
  /** Boosted layers per module (outliers most extreme first; the ablation's in draw order). */
  readonly boosted: Readonly<Record<LinearModule, readonly number[]>>;
  /** Outlier layers with their z-scores (SensiBoost, KurtBoost; for the ablation, those of the method it imitates). */
  readonly outliers?: ModuleOutliers;
}

/** An allocator over statistics tables whose `allocate` returns its own, richer Allocation type. */
export interface StatsAllocator<Options, Result extends Allocation> extends Allocator<ModelStats, Options> {
  allocate(input: ModelStats, options: Options): Result;
}

/** Index on the ladder `steps` stops above `budgetIndex`, capped at the top stop. */
export function ladderStep(budgetIndex: number, steps: number, stops: number = BUDGET_STOPS.length): number {
  return Math.max(0, Math.min(stops - 1, budgetIndex + steps));
}

/** The budget stops of a config ladder (the paper's 12 by default), ascending by bpp; each rounds to 2 decimals. */
export function ladderStops(configs?: readonly QuantConfig[]): readonly BudgetStop[] {
  if (!configs) return BUDGET_STOPS;
  if (configs.length === 0) throw new InvalidOptionError('configs', 'names no config; give at least one, e.g. b4g64');
  return configs
    .map((config) => {
      const bpp = bitsPerWeight(config);
      return { budget: Math.round(bpp * 100) / 100, config, bpp };
    })
    .sort((a, b) => a.bpp - b.bpp);
}

/** Index of `budget` on a ladder (matches within 0.005 or the exact bpp); an InvalidOptionError listing its stops otherwise. */
export function ladderIndex(stops: readonly BudgetStop[], budget: number): number {
  if (stops === BUDGET_STOPS) return budgetStopIndex(budget);
  const index = stops.findIndex((s) => Math.abs(s.budget - budget) < 0.005 || Math.abs(s.bpp - budget) < 1e-9);
  if (index < 0) {
    throw new InvalidOptionError('budget', `${budget} is not a stop of the config ladder ${stops.map((s) => `${configName(s.config)} (${s.budget})`).join(', ')}`);
  }
  return index;
}

function checkBoostStop(boostStop: number): void {
  if (!Number.isInteger(boostStop) || boostStop < 1) {
    throw new InvalidOptionError('boostStop', `${boostStop} must be an integer >= 1 (steps up the ladder of budget stops)`);
  }
}

function checkTopM(topM: number): void {
  if (!Number.isInteger(topM) || topM < 0) throw new InvalidOptionError('topM', `${topM} must be an integer >= 0 (0 = all outliers)`);
}

/** Base config of the stop for every matrix; the boosted (layer, module) pairs `boostStop` stops higher. */
export function boostedAllocation(
  method: string,
  matrices: readonly MatrixInfo[],
  budget: number,
  boostStop: number,
  boostedLayers: Readonly<Record<LinearModule, readonly number[]>>,
  options: Readonly<Record<string, unknown>>,
  outliers?: ModuleOutliers,
  configs?: readonly QuantConfig[],
): BoostAllocation {
  const stops = ladderStops(configs);
  const index = ladderIndex(stops, budget);
  const base = stops[index]!.config;
  const boost = stops[ladderStep(index, boostStop, stops.length)]!.config;
  const boosted = new Set<string>();
  for (const module of LINEAR_MODULES) for (const layer of boostedLayers[module] ?? []) boosted.add(`${layer}.${module}`);
  const list: MatrixAllocation[] = matrices.map((m) => Object.freeze({ ...m, config: boosted.has(m.key) ? boost : base }));
  return Object.freeze({
    method,
    options: Object.freeze({ ...options }),
    budget,
    matrices: Object.freeze(list),
    totals: allocationTotals(list),
    baseConfig: configName(base),
    boostConfig: configName(boost),
    boosted: boostedLayers,
    ...(outliers ? { outliers } : {}),
  });
}

/** Every matrix at the uniform config of the budget stop (HQQ's uniform baseline). */
export const uniformAllocator: StatsAllocator<UniformOptions, UniformAllocation> = Object.freeze({
  id: 'uniform',
  allocate(input: ModelStats, options: UniformOptions): UniformAllocation {
    const stops = ladderStops(options.configs);
    const config = stops[ladderIndex(stops, options.budget)]!.config;
    const list: MatrixAllocation[] = linearMatrices(input).map((m) => Object.freeze({ ...m, config }));
    return Object.freeze({
      method: 'uniform',
      options: Object.freeze({ budget: options.budget, ...(options.configs ? { configs: options.configs.map(configName) } : {}) }),
      budget: options.budget,
      matrices: Object.freeze(list),
      totals: allocationTotals(list),
      baseConfig: configName(config),
    });
  },
});

/** The linear matrices of the model: the stop allocators (uniform, the boosts) leave the embedding units to the export. */
function linearMatrices(input: ModelStats): MatrixInfo[] {
  return matricesOf(input).filter((m) => isLinearModule(m.module));
}

function layersOf(outliers: ModuleOutliers): Record<LinearModule, readonly number[]> {
  const result = {} as Record<LinearModule, readonly number[]>;
  for (const module of LINEAR_MODULES) result[module] = Object.freeze(outliers[module].map((o) => o.layer));
  return Object.freeze(result);
}

function numLayersOf(matrices: readonly MatrixInfo[]): number {
  return Math.max(...matrices.map((m) => m.layer)) + 1;
}

/** SensiBoost's outliers: ratios of consecutive layers' activation sensitivity. */
export function sensitivityOutliers(input: ModelStats, numLayers: number, options: Omit<SensiBoostOptions, 'budget'> = {}): ModuleOutliers {
  if (!input.sensitivity) {
    throw new InvalidDataError(input.source ?? 'statistics', 'SensiBoost needs the sensitivity table (sensitivity.csv: dataset,part,model,nbits,group_size,layer,sensitivity)');
  }
  const series = sensitivityByModule(input.sensitivity, numLayers, options.sensitivity ?? {}, `${input.source ?? '.'}/sensitivity.csv`);
  return detectModuleOutliers(series, {
    change: 'ratio',
    topM: options.topM ?? 1,
    ...(options.threshold === undefined ? {} : { threshold: options.threshold }),
    ...(options.trim === undefined ? {} : { trim: options.trim }),
  });
}

/** KurtBoost's outliers: differences of consecutive layers' weight kurtosis. */
export function kurtosisOutliers(input: ModelStats, numLayers: number, options: Omit<BoostOptions, 'budget'> = {}): ModuleOutliers {
  const series = kurtosisByModule(input, numLayers);
  return detectModuleOutliers(series, {
    change: 'difference',
    topM: options.topM ?? 1,
    ...(options.threshold === undefined ? {} : { threshold: options.threshold }),
    ...(options.trim === undefined ? {} : { trim: options.trim }),
  });
}

function withLadder(options: Record<string, unknown>, given: UniformOptions): Record<string, unknown> {
  return given.configs ? { ...options, configs: given.configs.map(configName) } : options;
}

function resolvedBoostOptions(options: BoostOptions): { boostStop: number; topM: number } {
  const boostStop = options.boostStop ?? 2;
  const topM = options.topM ?? 1;
  checkBoostStop(boostStop);
  checkTopM(topM);
  ladderIndex(ladderStops(options.configs), options.budget);
  return { boostStop, topM };
}

export const sensiBoostAllocator: StatsAllocator<SensiBoostOptions, BoostAllocation> = Object.freeze({
  id: 'sensiboost',
  allocate(input: ModelStats, options: SensiBoostOptions): BoostAllocation {
    const { boostStop, topM } = resolvedBoostOptions(options);
    const matrices = linearMatrices(input);
    const outliers = sensitivityOutliers(input, numLayersOf(matrices), { ...options, topM });
    const selection = options.sensitivity ?? {};
    const resolved = { budget: options.budget, boostStop, topM, sensitivityBits: selection.bits ?? 4, sensitivityGroupSize: selection.groupSize ?? 64 };
    return boostedAllocation('sensiboost', matrices, options.budget, boostStop, layersOf(outliers), withLadder(resolved, options), outliers, options.configs);
  },
});

export const kurtBoostAllocator: StatsAllocator<BoostOptions, BoostAllocation> = Object.freeze({
  id: 'kurtboost',
  allocate(input: ModelStats, options: BoostOptions): BoostAllocation {
    const { boostStop, topM } = resolvedBoostOptions(options);
    const matrices = linearMatrices(input);
    const outliers = kurtosisOutliers(input, numLayersOf(matrices), { ...options, topM });
    return boostedAllocation('kurtboost', matrices, options.budget, boostStop, layersOf(outliers), withLadder({ budget: options.budget, boostStop, topM }, options), outliers, options.configs);
  },
});

/**
 * The ablation of SensiBoost / KurtBoost: per module, as many layers as the imitated method boosts, drawn at
 * random (seeded) from the layers that are outliers of neither metric.
 */
export const ablationAllocator: StatsAllocator<AblationOptions, BoostAllocation> = Object.freeze({
  id: 'ablation',
  allocate(input: ModelStats, options: AblationOptions): BoostAllocation {
    const { boostStop, topM } = resolvedBoostOptions(options);
    const imitate = options.imitate ?? 'sensiboost';
    if (imitate !== 'sensiboost' && imitate !== 'kurtboost') throw new InvalidOptionError('imitate', `"${String(imitate)}" must be sensiboost or kurtboost`);
    const seed = options.seed ?? 42;
    if (!Number.isInteger(seed)) throw new InvalidOptionError('seed', `${seed} must be an integer`);
    const matrices = linearMatrices(input);
    const numLayers = numLayersOf(matrices);
    const sensitivity = input.sensitivity || imitate === 'sensiboost' ? sensitivityOutliers(input, numLayers, { ...options, topM }) : undefined;
    const hasKurtosis = input.kurtosis !== undefined || (input.fnorm?.rows.some((r) => r.kurtosis !== undefined) ?? false);
    const kurtosis = hasKurtosis || imitate === 'kurtboost' ? kurtosisOutliers(input, numLayers, { ...options, topM }) : undefined;
    const imitated = (imitate === 'sensiboost' ? sensitivity : kurtosis)!;
    const random = seededRandom(seed);
    const lastCandidate = options.includeLastLayer ? numLayers - 1 : numLayers - 2;
    const drawn = {} as Record<LinearModule, readonly number[]>;
    for (const module of LINEAR_MODULES) {
      const count = imitated[module].length;
      const excluded = new Set([...(sensitivity?.[module] ?? []), ...(kurtosis?.[module] ?? [])].map((o) => o.layer));
      const pool: number[] = [];
      for (let layer = 0; layer <= lastCandidate; layer++) if (!excluded.has(layer)) pool.push(layer);
      if (count > pool.length) throw new InvalidDataError(input.source ?? 'statistics', `module ${module}: cannot draw ${count} layers from ${pool.length} candidates`);
      // Partial Fisher-Yates: the first `count` entries become a uniform sample without replacement.
      for (let t = 0; t < count; t++) {
        const pick = t + Math.floor(random() * (pool.length - t));
        [pool[t], pool[pick]] = [pool[pick]!, pool[t]!];
      }
      drawn[module] = Object.freeze(pool.slice(0, count));
    }
    return boostedAllocation('ablation', matrices, options.budget, boostStop, Object.freeze(drawn), withLadder({
      budget: options.budget,
      boostStop,
      topM,
      imitate,
      seed,
      includeLastLayer: options.includeLastLayer ?? false,
    }, options), imitated, options.configs);
  },
});
