import { bitsPerWeight, memoryMB } from './config.js';
import { isLinearModule } from './model.js';
import type { AllocationTotals, MatrixAllocation } from './plugins.js';

/**
 * Paper-accounting totals of an allocation over its linear matrices (matrices left in float count 16 bits; the
 * embedding units an allocation for a format may hold are outside the paper's accounting, as in the paper).
 */
export function allocationTotals(matrices: readonly MatrixAllocation[]): AllocationTotals {
  let params = 0;
  let bits = 0;
  for (const m of matrices) {
    if (!isLinearModule(m.module)) continue;
    params += m.params;
    bits += (m.config ? bitsPerWeight(m.config) : 16) * m.params;
  }
  const bpp = params > 0 ? bits / params : 0;
  return Object.freeze({ params, bpp, memoryMB: memoryMB(bpp, params) });
}
