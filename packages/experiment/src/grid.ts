import { InvalidOptionError } from '@layerquant/core';

// A grid's methods are @layerquant/allocators' method names: `expandMethodList('hqq,mxq,sensiboost-2-1')`.
export type { MethodSpec } from '@layerquant/allocators';

/** The budgets of the paper's comparison (core's list). */
export { PAPER_BUDGETS } from '@layerquant/core';

/** Parses `2.25,3.25`; every value must be a positive number. */
export function parseBudgets(list: string): number[] {
  const budgets = list.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (budgets.length === 0 || budgets.some((b) => !Number.isFinite(b) || b <= 0)) {
    throw new InvalidOptionError('--budgets', `"${list}" must be a comma-separated list of bits per weight, e.g. 2.25,3.25`);
  }
  return [...new Set(budgets)];
}
