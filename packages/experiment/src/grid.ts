import {
  ALLOCATOR_PLUGINS,
  expandMethodList,
  tablesNeededBy,
  type AllocatorPlugin,
  type MethodSpec,
  type StatsTableName,
} from '@layerquant/allocators';
import { InvalidOptionError } from '@layerquant/core';

export type { MethodSpec } from '@layerquant/allocators';

/** The budgets of the paper's comparison (core's list). */
export { PAPER_BUDGETS } from '@layerquant/core';

/**
 * Parses a method list through the allocator plug-ins (@layerquant/allocators' ALLOCATOR_PLUGINS): names such as
 * `hqq` (or `uniform`), `mxq`, `sensiboost-S-M`, `kurtboost-S-M`, `ablation-sensiboost-S-M`, `sensi-milp-M`,
 * `kurt-milp-M:ablation`, `head-prioritized:factor=1.05`, `measured` (S = boost stop, M = top_m, 0 = all); bare ids
 * with variants (`sensiboost`, `kurtboost`, `ablation`: the paper's four settings each; `sensi-milp`: top_m 1-3);
 * `paper` (hqq, mxq, both boosts and all ablations).
 */
export function parseMethods(list: string, plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): MethodSpec[] {
  return expandMethodList(list, plugins, '--methods');
}

/** Parses `2.25,3.25`; every value must be a positive number. */
export function parseBudgets(list: string): number[] {
  const budgets = list.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (budgets.length === 0 || budgets.some((b) => !Number.isFinite(b) || b <= 0)) {
    throw new InvalidOptionError('--budgets', `"${list}" must be a comma-separated list of bits per weight, e.g. 2.25,3.25`);
  }
  return [...new Set(budgets)];
}

/** The statistics tables the methods need. */
export function tablesNeeded(methods: readonly MethodSpec[], plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): Record<StatsTableName, boolean> {
  return tablesNeededBy(methods, plugins);
}
