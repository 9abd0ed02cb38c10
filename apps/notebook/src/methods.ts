import {
  ablationAllocator,
  kurtBoostAllocator,
  mxqAllocator,
  sensiBoostAllocator,
  uniformAllocator,
  type ModelStats,
} from '@layerquant/allocators';
import { createRegistry, type Allocation } from '@layerquant/core';
import { modelMemory, type ModelMemory } from '@layerquant/quantizers';
import type { ModelAnalysis } from './analysis.js';
import type { Knobs } from './state.js';

/** A method as the page offers it: the package's allocator, called with the knobs that apply to it. */
export interface NotebookMethod {
  readonly id: string;
  readonly label: string;
  /** Whether boost_stop and top_m mean anything for it. */
  readonly boosts: boolean;
  readonly summary: string;
  /** The call, as the "In" part of the allocation cell shows it. */
  code(knobs: Knobs): string;
  allocate(stats: ModelStats, knobs: Knobs): Allocation;
}

const boostCode = (name: string, k: Knobs) => `${name}.allocate(stats, { budget: ${k.budget}, boostStop: ${k.boostStop}, topM: ${k.topM} })`;

export const METHODS: readonly NotebookMethod[] = Object.freeze([
  {
    id: 'uniform',
    label: 'HQQ uniform',
    boosts: false,
    summary: 'every matrix at the config of the budget stop',
    code: (k) => `uniformAllocator.allocate(stats, { budget: ${k.budget} })`,
    allocate: (stats, k) => uniformAllocator.allocate(stats, { budget: k.budget }),
  },
  {
    id: 'mxq',
    label: 'MXQ',
    boosts: false,
    summary: 'least summed Frobenius error within the memory budget (a multiple-choice knapsack, solved exactly)',
    code: (k) => `mxqAllocator.allocate(stats, { budget: ${k.budget} })`,
    allocate: (stats, k) => mxqAllocator.allocate(stats, { budget: k.budget }),
  },
  {
    id: 'sensiboost',
    label: 'SensiBoost',
    boosts: true,
    summary: 'uniform, plus the outlier layers of activation sensitivity moved up the ladder',
    code: (k) => boostCode('sensiBoostAllocator', k),
    allocate: (stats, k) => sensiBoostAllocator.allocate(stats, { budget: k.budget, boostStop: k.boostStop, topM: k.topM }),
  },
  {
    id: 'kurtboost',
    label: 'KurtBoost',
    boosts: true,
    summary: 'uniform, plus the outlier layers of weight kurtosis moved up the ladder',
    code: (k) => boostCode('kurtBoostAllocator', k),
    allocate: (stats, k) => kurtBoostAllocator.allocate(stats, { budget: k.budget, boostStop: k.boostStop, topM: k.topM }),
  },
  {
    id: 'ablation',
    label: 'Ablation',
    boosts: true,
    summary: 'as many random layers per module as SensiBoost boosts (seed 42): is it the choice of layers that helps?',
    code: (k) => boostCode('ablationAllocator', k),
    allocate: (stats, k) => ablationAllocator.allocate(stats, { budget: k.budget, boostStop: k.boostStop, topM: k.topM }),
  },
]);

/** The page's method registry: built here, nothing registers on import. */
export const methods = createRegistry<NotebookMethod>('method', METHODS);

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
  const uniform = methods.get('uniform').allocate(analysis.stats, knobs);
  return { allocation, memory: memoryOf(analysis, allocation), uniformMemory: memoryOf(analysis, uniform), milliseconds };
}

/** Options every row of a method shares (defaults the allocators record), left out of labels. */
const LABEL_SKIPPED_OPTIONS = new Set(['budget', 'sensitivityBits', 'sensitivityGroupSize', 'relativeGap', 'seed', 'includeLastLayer', 'quantizer']);

/** "SensiBoost (stop 2, top 1)", "Ablation of KurtBoost (stop 3, all outliers)" from a results row's method and options. */
export function methodLabel(method: string, options: Readonly<Record<string, unknown>>): string {
  const labelOf = (id: string) => (methods.has(id) ? methods.get(id).label : id);
  const imitate = typeof options.imitate === 'string' ? options.imitate : undefined;
  const base = method === 'ablation' && imitate ? `Ablation of ${labelOf(imitate)}` : labelOf(method);
  const parts: string[] = [];
  for (const [key, value] of Object.entries(options)) {
    if (LABEL_SKIPPED_OPTIONS.has(key) || (key === 'imitate' && method === 'ablation')) continue;
    if (key === 'boostStop') parts.push(`stop ${String(value)}`);
    else if (key === 'topM') parts.push(value === 0 ? 'all outliers' : `top ${String(value)}`);
    else parts.push(`${key} ${String(value)}`);
  }
  return parts.length ? `${base} (${parts.join(', ')})` : base;
}

/** The family a results row belongs to, for colours: uniform, mxq, sensiboost, kurtboost, ablation-<imitated>. */
export function methodFamily(method: string, options: Readonly<Record<string, unknown>>): string {
  return method === 'ablation' ? `ablation-${typeof options.imitate === 'string' ? options.imitate : 'sensiboost'}` : method;
}
