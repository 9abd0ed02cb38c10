import {
  InfeasibleBudgetError,
  InvalidOptionError,
  LayerquantError,
  PluginError,
  callPlugin,
  describeThrown,
  createRegistry,
  findBudgetStop,
  parseConfigName,
  parseOptionValue,
  resolveOptions,
  type Allocation,
  type OptionDescriptor,
  type OptionValue,
  type QuantConfig,
  type Registry,
  type ResolvedOptions,
} from '@layerquant/core';
import { ablationAllocator, kurtBoostAllocator, ladderIndex, ladderStops, sensiBoostAllocator, uniformAllocator } from './boost.js';
import {
  headPrioritizedAllocator,
  kurtMilpAllocator,
  kurtScaledAllocator,
  measuredAllocator,
  sensiMilpAllocator,
  tailPrioritizedAllocator,
} from './milp.js';
import { mxqAllocator } from './mxq.js';
import { checkAllocation, defaultLadder, embeddingLadder, type AllocationPlan } from './allocation-check.js';
import { matricesOf, type ModelStats } from './stats.js';
import { PAPER_SIZES, type KnapsackAllocation, type SizeBudget } from './cost-knapsack.js';
import { kldAllocator, refineKldAllocation } from './kld.js';
import { REFINEMENT_CORRECTIONS, type AllocationMeasurer, type RefinementCorrection, type RefinementRound } from './measured-refinement.js';

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

const gapOption: AllocatorOptionDescriptor = Object.freeze({
  name: 'relativeGap',
  flag: 'gap',
  type: 'number',
  default: 1e-6,
  min: 0,
  max: 0.5,
  help: 'proven relative gap the knapsack solver stops at',
});
const boostStopOption: AllocatorOptionDescriptor = Object.freeze({
  name: 'boostStop',
  flag: 'boost-stop',
  type: 'integer',
  default: 2,
  min: 1,
  suggested: [2, 3],
  help: 'stops up the ladder for an outlier matrix',
});
const topMOption = (defaultValue: number): AllocatorOptionDescriptor =>
  Object.freeze({
    name: 'topM',
    flag: 'top-m',
    type: 'integer',
    default: defaultValue,
    min: 0,
    suggested: [0, 1, 2, 3],
    help: 'keep the n most extreme outlier layers per module, 0 = all',
    describe: (v: OptionValue) => (v === 0 ? 'all' : String(v)),
  });
const sensitivityConfigOption: AllocatorOptionDescriptor = Object.freeze({
  name: 'sensitivityConfig',
  flag: 'sensitivity-config',
  type: 'config',
  default: 'b4g64',
  help: 'rows of sensitivity.csv the outlier test reads',
});
const datasetOption: AllocatorOptionDescriptor = Object.freeze({
  name: 'dataset',
  flag: 'dataset',
  type: 'choice',
  default: '',
  help: 'calibration dataset of sensitivity.csv when it holds several',
});

function sensitivitySelection(options: ResolvedOptions): { bits: number; groupSize: number; dataset?: string } {
  const config = parseConfigName(String(options.sensitivityConfig ?? 'b4g64'));
  const dataset = String(options.dataset ?? '');
  return { bits: config.bits, groupSize: config.groupSize, ...(dataset ? { dataset } : {}) };
}

function ladder(context: AllocationContext): { configs?: readonly QuantConfig[]; size?: SizeBudget } {
  return { ...(context.configs ? { configs: context.configs } : {}), ...(context.size ? { size: context.size } : {}) };
}

const PAPER_BOOST_VARIANTS = Object.freeze(
  [
    [2, 1],
    [2, 0],
    [3, 1],
    [3, 0],
  ].map(([boostStop, topM]) => Object.freeze({ boostStop: boostStop!, topM: topM! })),
);

export const uniformPlugin = definePlugin({
  id: 'uniform',
  label: 'HQQ uniform',
  description: 'every matrix at the config of a budget stop (HQQ\'s uniform baseline)',
  budget: 'stop',
  options: [],
  nameOptions: [],
  gridName: 'hqq',
  aliases: ['hqq'],
  tablesNeeded: () => [],
  allocate: (stats, _options, context) => uniformAllocator.allocate(stats, { budget: context.budget, ...ladder(context) }),
});

export const mxqPlugin = definePlugin({
  id: 'mxq',
  label: 'MXQ',
  description: 'least summed Frobenius error of the weights within the memory budget (the authors\' MILP)',
  objective: 'sum of fnorm',
  budget: 'any',
  options: [gapOption],
  nameOptions: [],
  tablesNeeded: () => ['fnorm'],
  allocate: (stats, options, context) => mxqAllocator.allocate(stats, { budget: context.budget, relativeGap: Number(options.relativeGap), ...ladder(context) }),
});

export const sensiBoostPlugin = definePlugin({
  id: 'sensiboost',
  label: 'SensiBoost',
  description: 'uniform at the stop; outlier layers of activation sensitivity move boost-stop stops up the ladder',
  budget: 'stop',
  options: [boostStopOption, topMOption(1), sensitivityConfigOption, datasetOption],
  nameOptions: ['boostStop', 'topM'],
  variants: PAPER_BOOST_VARIANTS,
  tablesNeeded: () => ['sensitivity'],
  allocate: (stats, options, context) =>
    sensiBoostAllocator.allocate(stats, {
      budget: context.budget,
      boostStop: Number(options.boostStop),
      topM: Number(options.topM),
      sensitivity: sensitivitySelection(options),
      ...ladder(context),
    }),
});

export const kurtBoostPlugin = definePlugin({
  id: 'kurtboost',
  label: 'KurtBoost',
  description: 'uniform at the stop; outlier layers of weight kurtosis move boost-stop stops up the ladder',
  budget: 'stop',
  options: [boostStopOption, topMOption(1)],
  nameOptions: ['boostStop', 'topM'],
  variants: PAPER_BOOST_VARIANTS,
  tablesNeeded: () => ['kurtosis'],
  allocate: (stats, options, context) =>
    kurtBoostAllocator.allocate(stats, { budget: context.budget, boostStop: Number(options.boostStop), topM: Number(options.topM), ...ladder(context) }),
});

export const ablationPlugin = definePlugin({
  id: 'ablation',
  label: 'Ablation',
  description: 'as many random layers per module as SensiBoost/KurtBoost boost (seeded), never an outlier',
  budget: 'stop',
  options: [
    Object.freeze({ name: 'imitate', flag: 'imitate', type: 'choice', default: 'sensiboost', choices: ['sensiboost', 'kurtboost'], help: 'whose outlier count per module to imitate' }),
    boostStopOption,
    topMOption(1),
    Object.freeze({ name: 'seed', flag: 'seed', type: 'integer', default: 42, min: 0, help: 'seed of the random layers' }),
    sensitivityConfigOption,
    datasetOption,
  ] as AllocatorOptionDescriptor[],
  nameOptions: ['imitate', 'boostStop', 'topM'],
  variants: Object.freeze(['sensiboost', 'kurtboost'].flatMap((imitate) => PAPER_BOOST_VARIANTS.map((v) => Object.freeze({ imitate, ...v })))),
  tablesNeeded: (options) => [options.imitate === 'kurtboost' ? 'kurtosis' : 'sensitivity'],
  allocate: (stats, options, context) =>
    ablationAllocator.allocate(stats, {
      budget: context.budget,
      boostStop: Number(options.boostStop),
      topM: Number(options.topM),
      imitate: options.imitate as 'sensiboost' | 'kurtboost',
      seed: Number(options.seed),
      sensitivity: sensitivitySelection(options),
      ...ladder(context),
    }),
});

const factorOption = (defaultValue: number, help: string): AllocatorOptionDescriptor =>
  Object.freeze({ name: 'factor', flag: 'factor', type: 'number', default: defaultValue, exclusiveMin: 0, help });
const milpAblationOption: AllocatorOptionDescriptor = Object.freeze({
  name: 'ablation',
  flag: 'ablation',
  type: 'boolean',
  default: false,
  help: 'the authors\' ablation: no outlier factor, the cost is set by bit width and size alone',
});

function milpPlugin(id: 'sensi-milp' | 'kurt-milp'): AllocatorPlugin {
  const allocator = id === 'sensi-milp' ? sensiMilpAllocator : kurtMilpAllocator;
  return definePlugin({
    id,
    label: id === 'sensi-milp' ? 'SensiMiLP' : 'KurtMiLP',
    description: `knapsack with the authors' cost penalty(bits) * (factor if ${id === 'sensi-milp' ? 'sensitivity' : 'kurtosis'} outlier) / bpp * params share`,
    budget: 'any',
    options: [topMOption(1), factorOption(2, 'cost multiplier of outlier matrices'), milpAblationOption, gapOption, ...(id === 'sensi-milp' ? [sensitivityConfigOption, datasetOption] : [])],
    nameOptions: ['topM'],
    variants: Object.freeze([1, 2, 3].map((topM) => Object.freeze({ topM }))),
    tablesNeeded: (options: ResolvedOptions) => (options.ablation ? ['fnorm'] : ['fnorm', id === 'sensi-milp' ? 'sensitivity' : 'kurtosis']),
    allocate: (stats: ModelStats, options: ResolvedOptions, context: AllocationContext) =>
      allocator.allocate(stats, {
        budget: context.budget,
        topM: Number(options.topM),
        factor: Number(options.factor),
        ablation: Boolean(options.ablation),
        relativeGap: Number(options.relativeGap),
        ...(id === 'sensi-milp' ? { sensitivity: sensitivitySelection(options) } : {}),
        ...ladder(context),
      }),
  });
}

export const sensiMilpPlugin = milpPlugin('sensi-milp');
export const kurtMilpPlugin = milpPlugin('kurt-milp');

export const kurtScaledPlugin = definePlugin({
  id: 'kurt-scaled',
  label: 'kurt-scaled',
  description: 'MXQ with cost fnorm * (1 + kurtosis min-max scaled within its module)',
  budget: 'any',
  options: [gapOption],
  nameOptions: [],
  tablesNeeded: () => ['fnorm', 'kurtosis'],
  allocate: (stats, options, context) => kurtScaledAllocator.allocate(stats, { budget: context.budget, relativeGap: Number(options.relativeGap), ...ladder(context) }),
});

function prioritizedPlugin(id: 'head-prioritized' | 'tail-prioritized'): AllocatorPlugin {
  const allocator = id === 'head-prioritized' ? headPrioritizedAllocator : tailPrioritizedAllocator;
  return definePlugin({
    id,
    label: id,
    description: `MXQ with the ${id === 'head-prioritized' ? 'first' : 'last'} layer's fnorm multiplied by factor`,
    budget: 'any',
    options: [factorOption(1.1, `multiplier of the ${id === 'head-prioritized' ? 'first' : 'last'} layer's fnorm`), gapOption],
    nameOptions: [],
    tablesNeeded: () => ['fnorm'],
    allocate: (stats: ModelStats, options: ResolvedOptions, context: AllocationContext) =>
      allocator.allocate(stats, { budget: context.budget, factor: Number(options.factor), relativeGap: Number(options.relativeGap), ...ladder(context) }),
  });
}

export const headPrioritizedPlugin = prioritizedPlugin('head-prioritized');
export const tailPrioritizedPlugin = prioritizedPlugin('tail-prioritized');

export const measuredPlugin = definePlugin({
  id: 'measured',
  label: 'measured',
  description: 'least summed measured block-output error relative to the residual stream (every matrix alone at every config) within the memory budget',
  objective: 'sum of measured block MSE / stream mean square',
  budget: 'any',
  options: [gapOption],
  nameOptions: [],
  tablesNeeded: () => ['measured'],
  allocate: (stats, options, context) => measuredAllocator.allocate(stats, { budget: context.budget, relativeGap: Number(options.relativeGap), ...ladder(context) }),
});

const roundsOption: AllocatorOptionDescriptor = Object.freeze({
  name: 'rounds',
  flag: 'rounds',
  type: 'integer',
  default: 2,
  min: 0,
  max: 20,
  suggested: [0, 1, 2, 3],
  help: 'rounds of re-measurement around the solution to correct it for interactions (0 = the additive solution)',
});
const radiusOption: AllocatorOptionDescriptor = Object.freeze({
  name: 'radius',
  flag: 'radius',
  type: 'integer',
  default: 1,
  min: 0,
  help: 'configs re-measured per unit and round: within this many steps of its current one by size (0 = every config)',
});
const correctionOption: AllocatorOptionDescriptor = Object.freeze({
  name: 'correction',
  flag: 'correction',
  type: 'choice',
  default: 'both',
  choices: REFINEMENT_CORRECTIONS,
  help: 'costs of a correction round: marginal (each unit\'s loss change with the others at their configs), shapley (its share of the pairwise interactions), or both (each proposes a step, the better is kept)',
});

export const kldPlugin = definePlugin({
  id: 'kld',
  label: 'kld',
  description: 'least end-to-end KL divergence from the float model (each unit alone at every config, at the final logits) within the budget, corrected for interactions by re-measuring around the solution',
  objective: 'sum of end-to-end ΔKLD (each unit alone), corrected by measurement',
  budget: 'any',
  options: [gapOption, roundsOption, radiusOption, correctionOption],
  nameOptions: [],
  tablesNeeded: () => ['kld'],
  allocate: (stats, options, context) => kldAllocator.allocate(stats, { budget: context.budget, relativeGap: Number(options.relativeGap), ...ladder(context) }),
  refine: (first, stats, options, context, measurer, onRound) =>
    refineKldAllocation(stats, first as KnapsackAllocation, measurer, {
      budget: context.budget,
      relativeGap: Number(options.relativeGap),
      rounds: Number(options.rounds),
      radius: Number(options.radius),
      correction: options.correction as RefinementCorrection | 'both',
      ...ladder(context),
      ...(onRound ? { onRound } : {}),
    }),
  refineCost: (options, units, configs) => {
    const radius = Number(options.radius);
    const candidates = radius === 0 ? configs : Math.min(configs, 2 * radius + 1);
    // Each round measures the candidates other than the current config, plus the unit back in float for shapley.
    return { rounds: Number(options.rounds), measurementsPerRound: units * (candidates - 1 + (options.correction === 'marginal' ? 0 : 1)) };
  },
});

/** Every allocator plug-in, in the order tables and legends list them. */
export const ALLOCATOR_PLUGINS: readonly AllocatorPlugin[] = Object.freeze([
  uniformPlugin,
  mxqPlugin,
  sensiBoostPlugin,
  kurtBoostPlugin,
  ablationPlugin,
  sensiMilpPlugin,
  kurtMilpPlugin,
  kurtScaledPlugin,
  headPrioritizedPlugin,
  tailPrioritizedPlugin,
  measuredPlugin,
  kldPlugin,
]);

/** A registry of the plug-ins (an app may register more). */
export function createAllocatorRegistry(plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): Registry<AllocatorPlugin> {
  return createRegistry('allocator', plugins);
}

function formatValue(value: OptionValue): string {
  return typeof value === 'boolean' ? String(value) : String(value);
}

/** The grid method name of a plug-in with options: id (or gridName) + positional values + non-defaults. */
export function methodName(plugin: AllocatorPlugin, options: ResolvedOptions): string {
  const positional = plugin.nameOptions.map((name) => formatValue(options[name]!));
  const extra = plugin.options
    .filter((d) => !plugin.nameOptions.includes(d.name) && d.name !== 'seed' && options[d.name] !== undefined && options[d.name] !== d.default)
    .map((d) => (d.type === 'boolean' && options[d.name] === true ? `:${d.flag}` : `:${d.flag}=${formatValue(options[d.name]!)}`));
  const base = plugin.nameOptions.length === 0 && plugin.gridName ? plugin.gridName : plugin.id;
  return [base, ...positional].join('-') + extra.join('');
}

/** One method of a grid: a plug-in with fixed options, under its grid name. */
export interface MethodSpec {
  /** `hqq`, `mxq`, `sensiboost-2-1`, `ablation-kurtboost-3-0`, `sensi-milp-1`, `measured`, ... */
  readonly id: string;
  /** The plug-in's id. */
  readonly allocator: string;
  readonly options: ResolvedOptions;
  /** Options the name set explicitly (a context seed does not override these). */
  readonly explicit: readonly string[];
}

function spec(plugin: AllocatorPlugin, given: Readonly<Record<string, OptionValue>>, option: string): MethodSpec {
  const options = resolveOptions(plugin, given, option);
  return Object.freeze({ id: methodName(plugin, options), allocator: plugin.id, options, explicit: Object.freeze(Object.keys(given)) });
}

/** Method names the plug-ins accept, for error messages. */
export function methodNameHelp(plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): string {
  return plugins
    .map((p) => {
      const base = p.nameOptions.length === 0 && p.gridName ? p.gridName : p.id;
      const letters = p.nameOptions.map((n) => (n === 'boostStop' ? 'S' : n === 'topM' ? 'M' : n === 'imitate' ? '<sensiboost|kurtboost>' : n.toUpperCase()));
      return [base, ...letters].join('-');
    })
    .join(', ');
}

/**
 * Parses one method name: a plug-in id (longest match; `hqq`/`uniform` alias), the plug-in's positional
 * options separated by `-` (`sensiboost-2-1`: boost stop 2, top_m 1; `ablation-kurtboost-3-0`), then optional
 * `:flag=value` or `:flag` (boolean) segments (`sensi-milp-1:factor=3:ablation`). A bare id with variants is not a
 * single method: use `expandMethodList`.
 */
export function parseMethodName(text: string, plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS, option = '--methods'): MethodSpec {
  const raw = text.trim().toLowerCase();
  const [head, ...extras] = raw.split(':');
  const names = plugins.flatMap((p) => [p.id, ...(p.aliases ?? []), ...(p.gridName ? [p.gridName] : [])].map((name) => ({ name, plugin: p })));
  names.sort((a, b) => b.name.length - a.name.length);
  const match = names.find(({ name }) => head === name || head!.startsWith(`${name}-`));
  const help = `use ${methodNameHelp(plugins)} (S = boost stop, M = top_m, 0 = all), optionally with :option=value, or a bare id for its variants`;
  if (!match) throw new InvalidOptionError(option, `"${text}" is not a method; ${help}`);
  const { plugin } = match;
  const rest = head === match.name ? [] : head!.slice(match.name.length + 1).split('-');
  if (rest.length > plugin.nameOptions.length || rest.some((r) => r === '')) {
    throw new InvalidOptionError(option, `"${text}": ${plugin.id} takes ${plugin.nameOptions.length === 0 ? 'no values in its name' : `${plugin.nameOptions.join(', ')} in its name`}; ${help}`);
  }
  const given: Record<string, OptionValue> = {};
  rest.forEach((value, i) => {
    const d = plugin.options.find((o) => o.name === plugin.nameOptions[i])!;
    given[d.name] = parseOptionValue(d, value, option);
  });
  for (const extra of extras) {
    const [key, ...valueParts] = extra.split('=');
    const d = plugin.options.find((o) => o.flag === key || o.name.toLowerCase() === key);
    if (!d) throw new InvalidOptionError(option, `"${text}": ${plugin.id} has no option "${key}"; it takes ${plugin.options.map((o) => o.flag).join(', ') || 'none'}`);
    given[d.name] = parseOptionValue(d, valueParts.join('='), option);
  }
  return spec(plugin, given, option);
}

/**
 * Parses a comma-separated method list: method names, bare ids of plug-ins with variants (`sensiboost` = the
 * paper's four settings), and `paper` (hqq, mxq, both boosts and all ablations). Duplicates are dropped.
 */
export function expandMethodList(list: string, plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS, option = '--methods'): MethodSpec[] {
  const out: MethodSpec[] = [];
  const add = (m: MethodSpec) => {
    if (!out.some((o) => o.id === m.id)) out.push(m);
  };
  for (const raw of list.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    if (raw === 'paper') {
      for (const m of expandMethodList('hqq,mxq,sensiboost,kurtboost,ablation', plugins, option)) add(m);
      continue;
    }
    const bare = plugins.find((p) => p.id === raw && p.variants && p.variants.length > 0);
    if (bare) for (const variant of bare.variants!) add(spec(bare, variant, option));
    else add(parseMethodName(raw, plugins, option));
  }
  if (out.length === 0) throw new InvalidOptionError(option, 'names no method');
  return out;
}

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

function findPlugin(id: string, plugins: readonly AllocatorPlugin[]): AllocatorPlugin {
  const plugin = plugins.find((p) => p.id === id);
  if (!plugin) throw new InvalidOptionError('method', `no allocator "${id}"; available: ${plugins.map((p) => p.id).join(', ')}`);
  return plugin;
}

/** Options in words for tables: `boost_stop=2 top_m=1`, `imitates=sensiboost ...`, `factor=3 ablation`. */
export function describeMethodOptions(method: MethodSpec, plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): string {
  const plugin = findPlugin(method.allocator, plugins);
  const parts: string[] = [];
  for (const d of plugin.options) {
    const value = method.options[d.name];
    if (value === undefined || d.name === 'seed' || d.name === 'relativeGap') continue;
    const named = plugin.nameOptions.includes(d.name);
    if (!named && value === d.default) continue;
    const key = d.name === 'imitate' ? 'imitates' : d.name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    parts.push(d.type === 'boolean' ? (value ? key : `${key}=false`) : `${key}=${d.describe ? d.describe(value) : String(value)}`);
  }
  return parts.join(' ');
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
