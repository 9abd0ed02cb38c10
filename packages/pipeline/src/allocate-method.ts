import {
  ALLOCATOR_PLUGINS,
  allocateMethod as allocateWithPlugin,
  checkMethodBudget,
  describeMethodOptions,
  floorStop,
  isLadderStop,
  methodName,
  parseMethodName,
  parseOptionValue,
  resolveOptions,
  uniformAllocator,
  type AllocatorPlugin,
  type ModelStats,
  type OptionValue,
} from '@layerquant/allocators';
import { InvalidOptionError, type Allocation, type QuantConfig } from '@layerquant/core';
import type { MethodSpec } from './grid.js';
import { formatRows } from '../output.js';

/** Options in words for tables: `boost_stop=2 top_m=1`. */
export function describeOptions(method: MethodSpec, plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): string {
  return describeMethodOptions(method, plugins);
}

/**
 * Runs the allocator plug-in a method names at a budget (the ablation's seed is `seed` unless the name sets one).
 * With `floorToStop` (the experiment grid), uniform and the boosts take the highest stop at or below a budget
 * between stops.
 */
export function allocateMethod(
  method: MethodSpec,
  stats: ModelStats,
  budget: number,
  seed = 42,
  configs?: readonly QuantConfig[],
  plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS,
  floorToStop = false,
): Allocation {
  return allocateWithPlugin(method, stats, { budget, seed, floorToStop, ...(configs ? { configs } : {}) }, plugins);
}

/**
 * Checks a budget before any long step (statistics take minutes): the boosts and uniform need a stop of the
 * ladder, the knapsack allocators at least the cheapest config.
 */
export function checkBudget(method: MethodSpec, budget: number, configs?: readonly QuantConfig[], plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS, floorToStop = false): void {
  checkMethodBudget(method, budget, configs, plugins, floorToStop);
}

/**
 * HQQ uniform at a stop of the ladder, the baseline of "extra memory"; undefined where the budget is no stop (the
 * knapsacks take any), unless `floorToStop`: then uniform at the highest stop below.
 */
export function uniformBaseline(stats: ModelStats, budget: number, configs?: readonly QuantConfig[], floorToStop = false): Allocation | undefined {
  if (!isLadderStop(budget, configs) && !floorToStop) return undefined;
  const stop = floorToStop ? floorStop(budget, configs) : budget;
  return uniformAllocator.allocate(stats, { budget: stop, ...(configs ? { configs } : {}) });
}

/** Memory of `allocation` over `baseline`, percent; NaN without a baseline. */
export function extraMemoryPercent(allocation: Allocation, baseline: Allocation | undefined): number {
  return baseline ? (100 * (allocation.totals.memoryMB - baseline.totals.memoryMB)) / baseline.totals.memoryMB : Number.NaN;
}

/** Every option flag of the allocator plug-ins (`--boost-stop`, `--top-m`, `--factor`, `--ablation`, ...), for parseCommandArgs. */
export function allocatorFlags(plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): Record<string, { type: 'string' | 'boolean' }> {
  const flags: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const p of plugins) for (const d of p.options) flags[d.flag] = { type: d.type === 'boolean' ? 'boolean' : 'string' };
  return flags;
}

/** Help lines for the plug-ins and their option flags (defaults included), generated from the registry. */
export function allocatorHelp(plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS, indent = '  '): string {
  const allocators: Array<[string, string]> = plugins.map((p) => [p.gridName && p.gridName !== p.id ? `${p.id} (${p.gridName})` : p.id, `${p.description}; budget: ${p.budget === 'stop' ? 'a stop of the ladder' : 'any'}`]);
  const options: Array<[string, string]> = [];
  const seen = new Set<string>();
  for (const p of plugins) {
    for (const d of p.options) {
      if (seen.has(d.flag)) continue;
      seen.add(d.flag);
      const users = plugins.filter((q) => q.options.some((o) => o.flag === d.flag)).map((q) => q.id);
      const value = d.type === 'boolean' ? '' : d.type === 'choice' && d.choices ? ` <${d.choices.join('|')}>` : ' <v>';
      options.push([`--${d.flag}${value}`, `${d.help}${d.type === 'boolean' || d.default === '' ? '' : ` (default ${String(d.default)})`} [${users.join(', ')}]`]);
    }
  }
  return [formatRows(allocators, { indent, keyWidth: 22 }).trimEnd(), '', `${indent}allocator options (each applies to the allocators that take it):`, formatRows(options, { indent, keyWidth: 26 }).trimEnd()].join('\n');
}

/**
 * The method of `--method <id or grid name>` plus plug-in option flags (`--method sensi-milp --top-m 2 --factor 3`):
 * the flags are shared by every allocator, so one the method does not take is ignored (as before the registry: the
 * same command line can switch --method); a flag overrides the name's value and the default.
 */
export function methodFromFlags(
  methodText: string,
  values: Readonly<Record<string, string | boolean | string[] | undefined>>,
  plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS,
): MethodSpec {
  const base = parseMethodName(methodText, plugins, '--method');
  const plugin = plugins.find((p) => p.id === base.allocator)!;
  const given: Record<string, OptionValue> = {};
  for (const name of base.explicit) given[name] = base.options[name]!;
  const known = new Set(plugins.flatMap((p) => p.options.map((d) => d.flag)));
  for (const flag of known) {
    const value = values[flag];
    if (value === undefined) continue;
    const d = plugin.options.find((o) => o.flag === flag);
    if (!d) continue;
    if (typeof value !== 'string' && typeof value !== 'boolean') throw new InvalidOptionError(`--${flag}`, 'needs one value');
    given[d.name] = typeof value === 'boolean' ? value : parseOptionValue(d, value);
  }
  const options = resolveOptions(plugin, given, '--method');
  return Object.freeze({ id: methodName(plugin, options), allocator: plugin.id, options, explicit: Object.freeze(Object.keys(given)) });
}
