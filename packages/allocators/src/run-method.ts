import {
  InfeasibleBudgetError,
  InvalidOptionError,
  LayerquantError,
  PluginError,
  callPlugin,
  describeThrown,
  findBudgetStop,
  type Allocation,
  type QuantConfig,
  type ResolvedOptions,
} from '@layerquant/core';
import { ladderIndex, ladderStops } from './boost.js';
import { checkAllocation, defaultLadder, embeddingLadder, type AllocationPlan } from './allocation-check.js';
import { matricesOf, type ModelStats } from './stats.js';
import { PAPER_SIZES } from './cost-knapsack.js';
import type { AllocationMeasurer, RefinementRound } from './measured-refinement.js';
import { findPlugin, type AllocationContext, type AllocatorPlugin, type StatsTableName } from './allocator-plugin.js';
import { ALLOCATOR_PLUGINS } from './builtin-allocators.js';
import type { MethodSpec } from './method-names.js';

// Running a method: the one place the apps call an allocator plug-in (its output checked), and the budget checks
// made before any long step.

/** The options of a method for an allocation: its own, with the context's seed where the name set none. */
function optionsFor(plugin: AllocatorPlugin, method: MethodSpec, context: AllocationContext): ResolvedOptions {
  if (context.seed === undefined || method.explicit.includes('seed') || !plugin.options.some((d) => d.name === 'seed')) return method.options;
  return Object.freeze({ ...method.options, seed: context.seed });
}

/**
 * Runs a method at a budget: the one place the apps run an allocator plug-in, so its output is checked here
 * (checkAllocation: every matrix once, configs of the ladder, totals recomputed, the budget kept) and what it throws is
 * named (a PluginError), whichever plug-in it is.
 */
export function allocateMethod(method: MethodSpec, stats: ModelStats, context: AllocationContext, plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): Allocation {
  const plugin = findPlugin(method.allocator, plugins);
  const budget = plugin.budget === 'stop' && context.floorToStop ? floorStop(context.budget, context.configs) : context.budget;
  const output = callPlugin('allocator', plugin.id, 'allocate()', () => plugin.allocate(stats, optionsFor(plugin, method, context), { ...context, budget }));
  return checkAllocation(plugin.id, output, allocationPlan(plugin, stats, { ...context, budget }));
}

/**
 * What the host expects of an allocation: the units of the allocation (the linear matrices in the paper's accounting
 * and for the stop allocators; with a format's size budget, a knapsack also allocates the embedding units its
 * statistics measured), the ladders, the budget and what it is spent in.
 */
function allocationPlan(plugin: AllocatorPlugin, stats: ModelStats, context: AllocationContext): AllocationPlan {
  const size = plugin.budget === 'any' ? (context.size ?? PAPER_SIZES) : PAPER_SIZES;
  return {
    units: matricesOf(stats).filter((u) => size.includes(u)),
    configs: context.configs ?? defaultLadder(stats),
    configsOf: (unit) => embeddingLadder(stats, unit.key),
    budget: context.budget,
    budgetKind: plugin.budget === 'stop' ? 'stop' : 'any',
    ...(plugin.budget === 'any' && context.size ? { size: context.size } : {}),
  };
}

/**
 * Runs a plug-in's correction by measurement (`refine`, the kld allocator's) after `allocateMethod`, when the plug-in
 * has one: the measurer runs the model on the calibration its statistics were measured on. Checked like `allocate`'s
 * output. Without `refine`, the first allocation is the result.
 */
export async function refineMethod(
  method: MethodSpec,
  first: Allocation,
  stats: ModelStats,
  context: AllocationContext,
  measurer: AllocationMeasurer,
  onRound?: (round: RefinementRound) => void,
  plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS,
): Promise<Allocation> {
  const plugin = findPlugin(method.allocator, plugins);
  if (!plugin.refine) return first;
  const refine = plugin.refine.bind(plugin);
  let output: unknown;
  try {
    output = await refine(first, stats, optionsFor(plugin, method, context), context, measurer, onRound);
  } catch (error) {
    // As allocate(): a typed layerquant error passes, anything else names the plug-in.
    if (error instanceof LayerquantError) throw error;
    throw new PluginError('allocator', plugin.id, `failed in refine(): ${describeThrown(error)}`, { cause: error });
  }
  return checkAllocation(plugin.id, output, allocationPlan(plugin, stats, context));
}

/** The budget itself when it is a stop of the ladder, else the highest stop below it (an error below the lowest). */
export function floorStop(budget: number, configs?: readonly QuantConfig[]): number {
  if (isLadderStop(budget, configs)) return budget;
  const stops = ladderStops(configs);
  const below = stops.filter((s) => s.bpp <= budget + 1e-12);
  if (below.length === 0) throw new InfeasibleBudgetError(budget, stops[0]!.budget);
  return below[below.length - 1]!.budget;
}

/** Which tables a list of methods reads, each once, in the order the methods name them. */
export function tablesNeededBy(methods: readonly MethodSpec[], plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): StatsTableName[] {
  const needed = new Set<StatsTableName>();
  for (const m of methods) for (const t of findPlugin(m.allocator, plugins).tablesNeeded(m.options)) needed.add(t);
  return [...needed];
}

/**
 * Checks a budget before any long step: plug-ins that need a stop get one of the ladder, the knapsacks at least
 * the bpp of the ladder's cheapest config.
 */
export function checkMethodBudget(method: MethodSpec, budget: number, configs?: readonly QuantConfig[], plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS, floorToStop = false): void {
  const plugin = findPlugin(method.allocator, plugins);
  const stops = ladderStops(configs);
  if (plugin.budget === 'any') {
    if (!Number.isFinite(budget) || budget <= 0) throw new InvalidOptionError('budget', `${budget} must be a positive number of bits per weight`);
    const cheapest = stops[0]!.bpp;
    if (budget < cheapest - 1e-12) throw new InfeasibleBudgetError(budget, Math.ceil(cheapest * 1000) / 1000);
    return;
  }
  if (floorToStop) floorStop(budget, configs);
  else ladderIndex(stops, budget);
}

/** Whether `budget` is a stop of the ladder (where HQQ uniform, the boosts and "extra memory" are defined). */
export function isLadderStop(budget: number, configs?: readonly QuantConfig[]): boolean {
  if (!configs) return findBudgetStop(budget) >= 0;
  try {
    ladderIndex(ladderStops(configs), budget);
    return true;
  } catch {
    return false;
  }
}
