import { bitsPerWeight, memoryMB } from './config.js';
import type { AllocationTotals, MatrixAllocation } from './plugins.js';

/** Paper-accounting totals of an allocation (matrices left in float count 16 bits). */
export function allocationTotals(matrices: readonly MatrixAllocation[]): AllocationTotals {
  let params = 0;
  let bits = 0;
  for (const m of matrices) {
    params += m.params;
    bits += (m.config ? bitsPerWeight(m.config) : 16) * m.params;
  }
  const bpp = params > 0 ? bits / params : 0;
  return Object.freeze({ params, bpp, memoryMB: memoryMB(bpp, params) });
}
