import type { Allocation, OptionDescriptor, OptionValue, QuantConfig, ResolvedOptions } from '@layerquant/core';
import { InvalidOptionError } from '@layerquant/core';
import type { ModelStats } from './stats.js';
import type { SizeBudget } from './cost-knapsack.js';
import type { AllocationMeasurer, RefinementRound } from './measured-refinement.js';

/**
 * The allocator plug-ins: each says what it is, which options it takes (with defaults, validation and help),
 * which statistics tables it reads, and how it allocates. The CLI (allocate, quantize, experiment) and the
 * notebook iterate this list; nothing dispatches on ids. Grid method names (`sensiboost-2-1`, `sensi-milp-1`,
 * `ablation-kurtboost-3-0`, `measured`) are the id followed by the plug-in's `nameOptions` values, then any other
 * option that differs from its default as `:name=value`.
 */

// The option machinery lives in core (quantizer and metric plug-ins share it); re-exported under the old names.
export { checkOptionValue, parseOptionValue, resolveOptions } from '@layerquant/core';
export type { OptionValue, ResolvedOptions } from '@layerquant/core';
export type AllocatorOptionDescriptor = OptionDescriptor;

/** A statistics table's name: a built-in (`fnorm`, `sensitivity`, `kurtosis`, `measured`) or a metric plug-in's `table`. */
export type StatsTableName = string;

/** What the caller supplies to every allocator (not options of the method). */
export interface AllocationContext {
  /** Bits per weight. */
  readonly budget: number;
  /** The config ladder (default: the paper's 12). */
  readonly configs?: readonly QuantConfig[];
  /** Seed of randomised allocators (the ablation), unless the method names its own. */
  readonly seed?: number;
  /**
   * Plug-ins that need a stop of the ladder (uniform, the boosts) take the highest stop at or below a budget
   * that is no stop (2.8 -> 2.51), so they never use more memory than the budget; default false (an error).
   */
  readonly floorToStop?: boolean;
  /**
   * What knapsack plug-ins spend: a format's shipped bytes (its cost model's SizeBudget, with the target's capacity),
   * or, absent, the paper's accounting at `budget` bits per weight.
   */
  readonly size?: SizeBudget;
}


export interface AllocatorPlugin {
  readonly id: string;
  /** Name in tables and legends (`SensiBoost`). */
  readonly label: string;
  readonly description: string;
  /** `stop`: the budget must be a stop of the ladder (uniform, boosts); `any`: any bits per weight (knapsacks). */
  readonly budget: 'stop' | 'any';
  readonly options: readonly AllocatorOptionDescriptor[];
  /** Options written positionally in a grid method name, in order (`sensiboost-2-1` = boostStop, topM). */
  readonly nameOptions: readonly string[];
  /** The grid's name for the defaults when it is not the id (`hqq` for uniform). */
  readonly gridName?: string;
  /** Other names accepted in a method list. */
  readonly aliases?: readonly string[];
  /** What the bare id expands to in a method list (the paper's variants); default: the defaults alone. */
  readonly variants?: readonly Readonly<Record<string, OptionValue>>[];
  /** What a knapsack allocator minimises, in words for reports (`sum of fnorm`); default `<id> cost`. */
  readonly objective?: string;
  /** Tables the allocation reads, given its options. */
  tablesNeeded(options: ResolvedOptions): readonly StatsTableName[];
  allocate(stats: ModelStats, options: ResolvedOptions, context: AllocationContext): Allocation;
  /**
   * Allocators that measure the model around their first solution (kld): the app calls it after `allocate` with a
   * measurer of the model on the calibration the statistics were measured on. Absent: `allocate` is the result.
   */
  refine?(first: Allocation, stats: ModelStats, options: ResolvedOptions, context: AllocationContext, measurer: AllocationMeasurer, onRound?: (round: RefinementRound) => void): Promise<Allocation>;
  /** What `refine` costs in measurements, for the plan an app prints before it starts (units x candidates per round). */
  refineCost?(options: ResolvedOptions, units: number, configs: number): { readonly rounds: number; readonly measurementsPerRound: number };
}

/** Freezes a plug-in (and types its callbacks). */
export function definePlugin(plugin: AllocatorPlugin): AllocatorPlugin {
  return Object.freeze(plugin);
}

/** The plug-in of an id among `plugins`, or an error listing the ids there are. */
export function findPlugin(id: string, plugins: readonly AllocatorPlugin[]): AllocatorPlugin {
  const plugin = plugins.find((p) => p.id === id);
  if (!plugin) throw new InvalidOptionError('method', `no allocator "${id}"; available: ${plugins.map((p) => p.id).join(', ')}`);
  return plugin;
}
