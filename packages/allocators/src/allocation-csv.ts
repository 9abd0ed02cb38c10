import { InvalidDataError, LINEAR_MODULES, bitsPerWeight, configName, memoryMB, isLinearModule, matrixKey, type Allocation, type LinearModule } from '@layerquant/core';
import { columnIndex, field, formatCsv, integerField, numberField, readCsv } from './csv.js';

/**
 * Allocations in the authors' `quant-allot` layout:
 * `model,module,layer,memmb,param_cnt,bit_budget,b1,g1,b2,g2,params_quant_tot,params_all_tot`
 * (one row per matrix and budget; their expected-allocations files hold several budgets).
 */
export const ALLOCATION_COLUMNS = Object.freeze([
  'model', 'module', 'layer', 'memmb', 'param_cnt', 'bit_budget', 'b1', 'g1', 'b2', 'g2', 'params_quant_tot', 'params_all_tot',
] as const);

export interface AllocationCsvRow {
  readonly model: string;
  readonly module: LinearModule;
  readonly layer: number;
  readonly memoryMB: number;
  readonly params: number;
  readonly budget: number;
  readonly bits: number;
  readonly groupSize: number;
  readonly metaBits: number;
  readonly metaGroupSize: number;
}

export function parseAllocationCsv(text: string, source = 'allocation.csv'): AllocationCsvRow[] {
  const doc = readCsv(text, source);
  const index = columnIndex(doc, ALLOCATION_COLUMNS.slice(0, 10));
  const rows: AllocationCsvRow[] = [];
  for (const record of doc.records) {
    const module = field(doc, record, index, 'module');
    if (!isLinearModule(module)) throw new InvalidDataError(`${source}:${record.line}`, `module "${module}" is not one of ${LINEAR_MODULES.join(', ')}`);
    rows.push({
      model: field(doc, record, index, 'model'),
      module,
      layer: integerField(doc, record, index, 'layer'),
      memoryMB: numberField(doc, record, index, 'memmb'),
      params: integerField(doc, record, index, 'param_cnt', 1),
      budget: numberField(doc, record, index, 'bit_budget'),
      bits: integerField(doc, record, index, 'b1', 1),
      groupSize: integerField(doc, record, index, 'g1', 1),
      metaBits: integerField(doc, record, index, 'b2', 1),
      metaGroupSize: integerField(doc, record, index, 'g2', 1),
    });
  }
  if (rows.length === 0) throw new InvalidDataError(source, 'has a header but no rows');
  return rows;
}

/** Config name per matrix key for one budget of a parsed allocation file. */
export function allocationCsvConfigs(rows: readonly AllocationCsvRow[], budget: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of rows) if (Math.abs(r.budget - budget) < 1e-9) out.set(matrixKey(r.layer, r.module), configName(r));
  return out;
}

/** Writes an allocation in the authors' layout (matrices in float are left out, as they have no b1/g1). */
export function formatAllocationCsv(allocation: Allocation, options: { model: string; totalParams?: number }): string {
  const quantized = allocation.matrices.filter((m) => m.config !== null);
  let paramsQuantized = 0;
  for (const m of quantized) paramsQuantized += m.params;
  return formatCsv(
    ALLOCATION_COLUMNS,
    quantized.map((m) => {
      const c = m.config!;
      return [options.model, m.module, m.layer, memoryMB(bitsPerWeight(c), m.params), m.params, allocation.budget, c.bits, c.groupSize, 8, 128, paramsQuantized, options.totalParams ?? paramsQuantized];
    }),
  );
}
