import { ALLOCATOR_PLUGINS, allocateMethod, hasTable, methodName, resolveOptions, type AllocatorPlugin, type ModelStats, type OptionValue } from '@layerquant/allocators';
import { createRegistry, type Allocation } from '@layerquant/core';
import { modelMemory, type ModelMemory } from '@layerquant/quantizers';
import type { ModelAnalysis } from './analysis.js';
import type { Knobs } from './state.js';
import pluginModules from 'virtual:layerquant-plugins';

/** A method as the page offers it: an allocator plug-in of @layerquant/allocators, called with the knobs that apply to it. */
export interface NotebookMethod {
  readonly id: string;
  readonly label: string;
  /** Whether boost_stop means anything for it (it has the option). */
  readonly boosts: boolean;
  readonly summary: string;
  readonly plugin: AllocatorPlugin;
  /** The call, as the "In" part of the allocation cell shows it. */
  code(knobs: Knobs): string;
  allocate(stats: ModelStats, knobs: Knobs): Allocation;
}

/** The plug-in's options from the knobs of the same names (the knobs bar has one per descriptor), the rest at their defaults. */
function knobOptions(plugin: AllocatorPlugin, knobs: Knobs): Record<string, OptionValue> {
  const given: Record<string, OptionValue> = {};
  for (const d of plugin.options) if (knobs[d.name] !== undefined) given[d.name] = knobs[d.name]!;
  return given;
}

function notebookMethod(plugin: AllocatorPlugin): NotebookMethod {
  return Object.freeze({
    id: plugin.id,
    label: plugin.label,
    boosts: plugin.options.some((d) => d.name === 'boostStop'),
    summary: plugin.description,
    plugin,
    code: (k: Knobs) => `allocateMethod(parseMethodName('${methodName(plugin, resolveOptions(plugin, knobOptions(plugin, k)))}'), stats, { budget: ${k.budget} })`,
    allocate: (stats: ModelStats, k: Knobs) => {
      const options = resolveOptions(plugin, knobOptions(plugin, k));
      return allocateMethod({ id: plugin.id, allocator: plugin.id, options, explicit: Object.keys(options) }, stats, { budget: k.budget }, [plugin]);
    },
  });
}

/** The allocators of LAYERQUANT_PLUGINS modules (the notebook's --plugin), with the fields the page reads filled in. */
const PLUGIN_ALLOCATORS: readonly AllocatorPlugin[] = pluginModules.flatMap((m) =>
  (m.allocators ?? []).map((p) => Object.freeze({ ...p, label: p.label ?? p.id, budget: p.budget ?? 'any', options: p.options ?? [], nameOptions: p.nameOptions ?? [], tablesNeeded: p.tablesNeeded ?? (() => []) })),
);

/** The page's allocators: the package's, then the plug-ins' (one registry: an id used twice is an error). */
export const allocators = createRegistry<AllocatorPlugin>('allocator', [...ALLOCATOR_PLUGINS, ...PLUGIN_ALLOCATORS]);

/** Every allocator plug-in, in its order (the page lists them all; nothing is special-cased by id). */
export const METHODS: readonly NotebookMethod[] = Object.freeze(allocators.list().map(notebookMethod));

/** The page's method registry: built here, nothing registers on import. */
export const methods = createRegistry<NotebookMethod>('method', METHODS);

/** The methods whose statistics tables the page's data holds (measured needs measured.csv). */
export function availableMethods(stats: ModelStats): NotebookMethod[] {
  return METHODS.filter((m) => m.plugin.tablesNeeded(resolveOptions(m.plugin)).every((table) => hasTable(stats, table)));
}

/** The statistics tables the knobs' method needs (with the knobs' options) that `stats` lacks, in the plug-in's order. */
export function missingTables(stats: ModelStats, knobs: Knobs): string[] {
  const plugin = methods.get(knobs.method).plugin;
  return plugin.tablesNeeded(resolveOptions(plugin, knobOptions(plugin, knobs))).filter((table) => !hasTable(stats, table));
}

export interface AllocationResult {
  readonly allocation: Allocation;
  /** Paper accounting and real packed size (the quantizers package's memory accounting). */
  readonly memory: ModelMemory;
  /** The uniform allocation of the same budget stop, for "extra memory". */
  readonly uniformMemory: ModelMemory;
  readonly milliseconds: number;
}

function memoryOf(analysis: ModelAnalysis, allocation: Allocation): ModelMemory {
  return modelMemory(allocation.matrices.map((m) => ({ shape: analysis.shapes.get(m.key)!, config: m.config })));
}

/** Runs the real allocator in the page for the knobs, with memory totals. */
export function allocate(analysis: ModelAnalysis, knobs: Knobs): AllocationResult {
  const start = performance.now();
  const allocation = methods.get(knobs.method).allocate(analysis.stats, knobs);
  const milliseconds = performance.now() - start;
  // The uniform allocation of the stop at or below the budget ("extra memory" baseline).
  const uniform = allocateMethod({ id: 'hqq', allocator: 'uniform', options: {}, explicit: [] }, analysis.stats, { budget: knobs.budget, floorToStop: true });
  return { allocation, memory: memoryOf(analysis, allocation), uniformMemory: memoryOf(analysis, uniform), milliseconds };
}

/** Options every row of a method shares (defaults the allocators record), left out of labels. */
const LABEL_SKIPPED_OPTIONS = new Set(['budget', 'sensitivityBits', 'sensitivityGroupSize', 'relativeGap', 'seed', 'includeLastLayer', 'quantizer']);

/** "SensiBoost (stop 2, top 1)", "Ablation of KurtBoost (stop 3, all outliers)" from a results row's method and options. */
export function methodLabel(method: string, options: Readonly<Record<string, unknown>>): string {
  const labelOf = (id: string) => (methods.has(id) ? methods.get(id).label : id);
  const plugin = methods.has(method) ? methods.get(method).plugin : undefined;
  const atDefault = (key: string, value: unknown) => plugin !== undefined && !plugin.nameOptions.includes(key) && plugin.options.some((d) => d.name === key && d.default === value);
  const imitate = typeof options.imitate === 'string' ? options.imitate : undefined;
  const base = method === 'ablation' && imitate ? `Ablation of ${labelOf(imitate)}` : labelOf(method);
  const parts: string[] = [];
  for (const [key, value] of Object.entries(options)) {
    if (LABEL_SKIPPED_OPTIONS.has(key) || (key === 'imitate' && method === 'ablation') || atDefault(key, value)) continue;
    if (key === 'boostStop') parts.push(`stop ${String(value)}`);
    else if (key === 'topM') parts.push(value === 0 ? 'all outliers' : `top ${String(value)}`);
    else if (typeof value === 'boolean') parts.push(value ? key : `no ${key}`);
    else parts.push(`${key} ${String(value)}`);
  }
  return parts.length ? `${base} (${parts.join(', ')})` : base;
}

/** The family a results row belongs to, for colours: uniform, mxq, sensiboost, kurtboost, ablation-<imitated>. */
export function methodFamily(method: string, options: Readonly<Record<string, unknown>>): string {
  return method === 'ablation' ? `ablation-${typeof options.imitate === 'string' ? options.imitate : 'sensiboost'}` : method;
}
