import {
  InfeasibleBudgetError,
  InvalidDataError,
  InvalidOptionError,
  LayerquantError,
  allocationTotals,
  configName,
  matrixKey,
  quantConfig,
  type Allocation,
  type LinearModule,
  type MatrixAllocation,
  type MatrixInfo,
  type QuantConfig,
} from '@layerquant/core';
import { KnapsackSearchLimitError, solveMultipleChoiceKnapsack, type MultipleChoiceKnapsack } from './multiple-choice-knapsack.js';

/**
 * The program every knapsack allocator solves (MXQ, sensi-milp, kurt-milp, kurt-scaled, head/tail-prioritized,
 * measured): one class per matrix, one item per config (a cost and a memory), the least total cost whose
 * memory stays within `budget * (sum of params) / 8 / 2^20` MB, as the authors set the MILP's limit.
 */

/** Bits in one MB (2^20 bytes). */
const BITS_PER_MB = 8 * 2 ** 20;

/** One (matrix, config) item: what a table row gives the knapsack. */
export interface CostItem {
  readonly layer: number;
  readonly module: LinearModule;
  readonly bits: number;
  readonly groupSize: number;
  readonly memoryMB: number;
  readonly params: number;
}

export interface CostProblem {
  readonly matrices: readonly MatrixInfo[];
  readonly configs: readonly (readonly QuantConfig[])[];
  readonly costs: readonly Float64Array[];
  readonly memoryMB: readonly Float64Array[];
  readonly totalParams: number;
}

export interface KnapsackOptions {
  /** Bits per weight; any positive value (not only the 12 stops). */
  readonly budget: number;
  /** Proven relative gap to stop at (1e-6). */
  readonly relativeGap?: number;
  /** Cap on dynamic-programming states before giving up. */
  readonly maxStates?: number;
  /** The config ladder: only these configs are offered (default: every config of the table). */
  readonly configs?: readonly QuantConfig[];
}

export interface KnapsackSolverReport {
  /** `optimal` (proven, gap 0) or `gap` (stopped at the relative gap asked for; `gap` says how far). */
  readonly status: 'optimal' | 'gap';
  /** Sum of the costs of the chosen configs. */
  readonly objective: number;
  /** Proven lower bound: no allocation within the budget has a smaller sum. */
  readonly bound: number;
  /** (objective - bound) / objective. */
  readonly gap: number;
  /** LP relaxation value. */
  readonly lpBound: number;
  readonly seconds: number;
  readonly nodes: number;
  /** Matrices whose config was still open after reduced-cost fixing. */
  readonly freeMatrices: number;
  readonly memoryLimitMB: number;
  /** Memory of the allocation as the table's memmb column counts it. */
  readonly memoryMB: number;
}

export interface KnapsackAllocation extends Allocation {
  readonly solver: KnapsackSolverReport;
}

function sortMatrices(list: MatrixInfo[]): MatrixInfo[] {
  const order = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
  return list.sort((a, b) => a.layer - b.layer || order.indexOf(a.module) - order.indexOf(b.module));
}

/**
 * Builds the program from table rows with a cost per row. `configs` restricts the ladder: every matrix must have
 * a row for every config asked for.
 */
export function buildCostProblem<Row extends CostItem>(
  rows: readonly Row[],
  costOf: (row: Row) => number,
  source: string,
  configs?: readonly QuantConfig[],
): CostProblem {
  const wanted = configs ? new Set(configs.map(configName)) : undefined;
  const byKey = new Map<string, { info: MatrixInfo; items: { config: QuantConfig; cost: number; memoryMB: number }[] }>();
  for (const r of rows) {
    const key = matrixKey(r.layer, r.module);
    let entry = byKey.get(key);
    if (!entry) {
      entry = { info: Object.freeze({ key, layer: r.layer, module: r.module, params: r.params }), items: [] };
      byKey.set(key, entry);
    } else if (entry.info.params !== r.params) {
      throw new InvalidDataError(source, `matrix ${key} has params ${entry.info.params} and ${r.params} in different rows`);
    }
    const name = `b${r.bits}g${r.groupSize}`;
    if (wanted && !wanted.has(name)) continue;
    const cost = costOf(r);
    if (!Number.isFinite(cost)) throw new InvalidDataError(source, `matrix ${key} config ${name}: cost ${cost} is not a finite number`);
    entry.items.push({ config: quantConfig(r.bits, r.groupSize), cost, memoryMB: r.memoryMB });
  }
  const matrices = sortMatrices([...byKey.values()].map((e) => e.info));
  const entries = matrices.map((m) => byKey.get(m.key)!);
  for (const e of entries) {
    if (!wanted && e.items.length === 0) throw new InvalidDataError(source, `matrix ${e.info.key} has no config rows`);
    if (wanted && e.items.length < wanted.size) {
      const missing = [...wanted].filter((n) => !e.items.some((i) => configName(i.config) === n));
      throw new InvalidDataError(source, `matrix ${e.info.key} has no row for ${missing.join(', ')}: measure the statistics for the configs asked for (--configs)`);
    }
  }
  let totalParams = 0;
  for (const m of matrices) totalParams += m.params;
  return {
    matrices,
    configs: entries.map((e) => e.items.map((i) => i.config)),
    costs: entries.map((e) => Float64Array.from(e.items, (i) => i.cost)),
    memoryMB: entries.map((e) => Float64Array.from(e.items, (i) => i.memoryMB)),
    totalParams,
  };
}

/**
 * Memory in whole bits when the table's memmb values are exact (they are bpp*params/2^23 with bpp a
 * dyadic fraction), so sums and the budget comparison are exact integers; otherwise MB as given.
 */
function knapsackOf(problem: CostProblem, budget: number): { knapsack: MultipleChoiceKnapsack; unit: number } {
  let integral = true;
  for (const list of problem.memoryMB) {
    for (const mb of list) {
      const bits = mb * BITS_PER_MB;
      if (Math.abs(bits - Math.round(bits)) > 1e-6 || bits > Number.MAX_SAFE_INTEGER / 4096) integral = false;
    }
  }
  const unit = integral ? BITS_PER_MB : 1;
  const classes = problem.memoryMB.map((list, i) => ({
    weights: Float64Array.from(list, (mb) => (integral ? Math.round(mb * BITS_PER_MB) : mb)),
    costs: problem.costs[i]!,
  }));
  const limit = (budget * problem.totalParams) / 8 / 2 ** 20; // MB, the authors' budget_mb
  const capacity = integral ? Math.floor(limit * BITS_PER_MB * (1 + 1e-12)) : limit;
  return { knapsack: { classes, capacity }, unit };
}

/** Solves the program to a proven relative gap; an infeasible budget names the smallest feasible one. */
export function solveCostProblem(
  problem: CostProblem,
  method: string,
  options: KnapsackOptions,
  reported: Readonly<Record<string, unknown>> = {},
): KnapsackAllocation {
  const { budget } = options;
  if (!Number.isFinite(budget) || budget <= 0) throw new InvalidOptionError('budget', `${budget} must be a positive number of bits per weight`);
  const relativeGap = options.relativeGap ?? 1e-6;
  if (!(relativeGap >= 0)) throw new InvalidOptionError('relativeGap', `${relativeGap} must be >= 0`);
  const { knapsack, unit } = knapsackOf(problem, budget);
  let result;
  try {
    result = solveMultipleChoiceKnapsack(knapsack, { relativeGap, ...(options.maxStates === undefined ? {} : { maxStates: options.maxStates }) });
  } catch (error) {
    if (error instanceof KnapsackSearchLimitError) {
      throw new LayerquantError('SOLVER_LIMIT', `${method} at budget ${budget}: ${error.message}`, { cause: error });
    }
    throw error;
  }
  if (result.status === 'infeasible') {
    // Smallest budget (rounded up to 1e-4 bits per weight) whose limit fits every matrix at its lightest config.
    const bitsNeeded = (result.minimumWeight / unit) * BITS_PER_MB;
    const smallest = Math.ceil((bitsNeeded / problem.totalParams) * 1e4 - 1e-9) / 1e4;
    throw new InfeasibleBudgetError(budget, smallest);
  }
  const matrices: MatrixAllocation[] = problem.matrices.map((m, i) => Object.freeze({ ...m, config: problem.configs[i]![result.choice[i]!]! }));
  let memoryMB = 0;
  for (let i = 0; i < matrices.length; i++) memoryMB += problem.memoryMB[i]![result.choice[i]!]!;
  return Object.freeze({
    method,
    options: Object.freeze({ budget, relativeGap, ...(options.configs ? { configs: options.configs.map(configName) } : {}), ...reported }),
    budget,
    matrices: Object.freeze(matrices),
    totals: allocationTotals(matrices),
    solver: Object.freeze({
      status: result.status,
      objective: result.objective,
      bound: result.bound,
      gap: result.gap,
      lpBound: result.lpBound,
      seconds: result.seconds,
      nodes: result.nodes,
      freeMatrices: result.freeClasses,
      memoryLimitMB: (budget * problem.totalParams) / 8 / 2 ** 20,
      memoryMB,
    }),
  });
}
