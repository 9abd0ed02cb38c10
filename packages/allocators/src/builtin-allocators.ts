import { createRegistry, parseConfigName, type OptionValue, type QuantConfig, type Registry, type ResolvedOptions } from '@layerquant/core';
import { ablationAllocator, kurtBoostAllocator, sensiBoostAllocator, uniformAllocator } from './boost.js';
import {
  headPrioritizedAllocator,
  kurtMilpAllocator,
  kurtScaledAllocator,
  measuredAllocator,
  sensiMilpAllocator,
  tailPrioritizedAllocator,
} from './milp.js';
import { mxqAllocator } from './mxq.js';
import type { ModelStats } from './stats.js';
import type { KnapsackAllocation, SizeBudget } from './cost-knapsack.js';
import { kldAllocator, refineKldAllocation } from './kld.js';
import { REFINEMENT_CORRECTIONS, type RefinementCorrection } from './measured-refinement.js';
import { definePlugin, type AllocationContext, type AllocatorOptionDescriptor, type AllocatorPlugin } from './allocator-plugin.js';

// The built-in allocator plug-ins (the paper's methods and layerquant's own) with their option descriptors.

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
