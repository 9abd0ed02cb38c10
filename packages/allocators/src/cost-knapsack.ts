import {
  InfeasibleBudgetError,
  InvalidDataError,
  InvalidOptionError,
  LayerquantError,
  allocationTotals,
  bitsPerWeight,
  configName,
  isLinearModule,
  matrixKey,
  quantConfig,
  type Allocation,
  type MatrixAllocation,
  type MatrixInfo,
  type QuantConfig,
  type UnitModule,
  type ZeroKind,
  type FormatCostModel,
} from '@layerquant/core';
import { sortUnits } from '@layerquant/stats';
import { KnapsackSearchLimitError, solveMultipleChoiceKnapsack, type MultipleChoiceKnapsack } from './multiple-choice-knapsack.js';

/**
 * The program every knapsack allocator solves (MXQ, sensi-milp, kurt-milp, kurt-scaled, head/tail-prioritized,
 * measured): one class per unit, one item per config (a cost and a size), the least total cost whose size stays
 * within a capacity. The size is counted in one accounting: the paper's (`budget * (sum of params)` bits over the
 * linear matrices, as the authors set the MILP's limit), or the bytes a unit adds to the shipped file of a format
 * (a SizeBudget from that format's cost model, embeddings and lm_head included where the table measured them).
 */

/** Bits in one MiB (2^20 bytes). */
const BITS_PER_MIB = 8 * 2 ** 20;

/** One (unit, config) item: what a table row gives the knapsack. */
export interface CostItem {
  readonly layer: number;
  readonly module: UnitModule;
  readonly bits: number;
  readonly groupSize: number;
  /** How the config stores its zero (absent: fractional, the authors' tables). */
  readonly zero?: ZeroKind;
  readonly params: number;
}

/**
 * What a knapsack spends: the size of each unit at each config and the total the units may take, in one accounting.
 * Made by a format's cost model (shipped bytes) or by paperSizeBudget (the paper's accounting).
 */
export interface SizeBudget {
  /** `paper`, or the id of the format whose shipped file is counted (`onnx`, `gguf`). */
  readonly accounting: string;
  /** How reports name the accounting (`the paper's accounting`, `the shipped ONNX file`). */
  readonly label: string;
  /** Whether a unit is allocated under this accounting (the paper's: the linear matrices only). */
  includes(unit: MatrixInfo): boolean;
  /** Size of a unit at a config, in bits (whole bytes times 8 for a file). */
  bits(unit: MatrixInfo, config: QuantConfig): number;
  /**
   * Whether the accounting stores a unit at a config (a format stores some configs only in some row lengths): rows of
   * configs it does not store are not offered to that unit. Absent: every config.
   */
  stores?(unit: MatrixInfo, config: QuantConfig): boolean;
  /** What the allocated units may take together, in bits; undefined: `budget` bits per weight of their parameters. */
  readonly capacityBits?: number;
  /** Bits of the file beyond the allocated units (0 for the paper's accounting): a target's fixed part. */
  readonly fixedBits: number;
  /** The budget as the user gave it, for messages (`17.4 MiB`), and the unit an infeasible size is reported in. */
  readonly target?: SizeTarget;
  /** Size of a unit kept in float, where the accounting lets it stay float (a format's embedding units): a cost-0 item. */
  floatBits?(unit: MatrixInfo): number | undefined;
  /**
   * The exact size in bits of the whole file for an allocation (a format's own encoding, not the sum of unit sizes):
   * the solver re-solves with less capacity while it is above `fixedBits + capacityBits`.
   */
  exactBits?(matrices: readonly MatrixAllocation[]): number;
}

/**
 * A format's bytes as a knapsack's size: each allocated unit's bytes in the file at each config (units the statistics
 * do not cover keep `fixedConfig`, in the fixed part), embedding units may also stay float, and the whole file must fit
 * `target.bytes`. Exact: the solver checks the file's own size (cost.fileBytes) and re-solves while it is over.
 */
export function formatSizeBudget(
  cost: FormatCostModel,
  allocated: readonly MatrixInfo[],
  fixedConfig: (unit: MatrixInfo) => QuantConfig | null,
  target?: { readonly bytes: number; readonly given: SizeTarget },
): SizeBudget {
  const keys = new Set(allocated.map((m) => m.key));
  const units = cost.units.filter((u) => keys.has(u.key));
  const byKey = new Map(cost.units.map((u) => [u.key, u]));
  // The fixed part: the file with every allocated unit at a reference config, less those units' own bytes.
  const reference = new Map(units.map((u) => [u.key, cost.nativeLadder(u)[0] ?? null]));
  const configOf = (unit: MatrixInfo) => (reference.has(unit.key) ? reference.get(unit.key)! : fixedConfig(byKey.get(unit.key) ?? unit));
  let fixedBytes = cost.fileBytes(configOf);
  for (const u of units) fixedBytes -= cost.unitBytes(u, reference.get(u.key)!);
  return Object.freeze({
    accounting: cost.format,
    label: cost.label,
    includes: (unit: MatrixInfo) => keys.has(unit.key) && byKey.has(unit.key),
    stores: (unit: MatrixInfo, config: QuantConfig) => cost.unsupported(unit, config) === undefined,
    bits: (unit: MatrixInfo, config: QuantConfig) => {
      const why = cost.unsupported(unit, config);
      if (why) throw new InvalidOptionError('configs', `${configName(config)} for ${unit.key}: ${why}`);
      return 8 * cost.unitBytes(unit, config);
    },
    fixedBits: 8 * fixedBytes,
    ...(target ? { capacityBits: 8 * (target.bytes - fixedBytes), target: target.given } : {}),
    floatBits: (unit: MatrixInfo) => (isLinearModule(unit.module) ? undefined : 8 * cost.unitBytes(unit, null)),
    exactBits: (matrices: readonly MatrixAllocation[]) => {
      const chosen = new Map(matrices.map((m) => [m.key, m.config]));
      return 8 * cost.fileBytes((unit) => (chosen.has(unit.key) ? chosen.get(unit.key)! : fixedConfig(byKey.get(unit.key) ?? unit)));
    },
  });
}

/** A target as the user gave it: a file size in MiB, or bits per weight of `params` parameters (file bits / params). */
export interface SizeTarget {
  readonly value: number;
  readonly unit: 'MiB' | 'bits per weight';
  /** The parameters a bits-per-weight target divides the file by (the linear matrices'). */
  readonly params: number;
}

/** The paper's accounting: `bitsPerWeight(config) * params` over the linear matrices, capacity `budget` bits per weight. */
export const PAPER_SIZES: SizeBudget = Object.freeze({
  accounting: 'paper',
  label: "the paper's accounting (8-bit scale and zero per group)",
  includes: (unit: MatrixInfo) => isLinearModule(unit.module),
  bits: (unit: MatrixInfo, config: QuantConfig) => bitsPerWeight(config) * unit.params,
  fixedBits: 0,
});

export interface CostProblem {
  readonly matrices: readonly MatrixInfo[];
  /** Each unit's items; null: kept in float (offered where the size budget lets a unit stay float). */
  readonly configs: readonly (readonly (QuantConfig | null)[])[];
  readonly costs: readonly Float64Array[];
  /** Size of each item in bits, in `size`'s accounting. */
  readonly sizeBits: readonly Float64Array[];
  readonly totalParams: number;
  readonly size: SizeBudget;
}

export interface KnapsackOptions {
  /** Bits per weight; any positive value (not only the 12 stops). With `size`, what the allocation reports as its budget. */
  readonly budget: number;
  /** Proven relative gap to stop at (1e-6). */
  readonly relativeGap?: number;
  /** Cap on dynamic-programming states before giving up. */
  readonly maxStates?: number;
  /**
   * The config ladder of the linear matrices: only these configs are offered (default: every config of the table).
   * An embedding unit is offered the rows of its own ladder (a format's, measured for it).
   */
  readonly configs?: readonly QuantConfig[];
  /** What the knapsack spends (default PAPER_SIZES at `budget`). */
  readonly size?: SizeBudget;
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
  /** The accounting the sizes below are in (`paper`, `onnx`, ...). */
  readonly accounting: string;
  /** What the allocated units may take, MiB (2^20 bytes) in that accounting. */
  readonly limitMiB: number;
  /** What they take. */
  readonly sizeMiB: number;
  /** For a format: the exact size of the whole file, MiB (the fixed part and every unit, as the format encodes it). */
  readonly fileMiB?: number;
}

export interface KnapsackAllocation extends Allocation {
  readonly solver: KnapsackSolverReport;
}

/**
 * Builds the program from table rows with a cost per row, over the units `size` allocates (the paper's accounting:
 * the linear matrices; a format's: embeddings and lm_head too where the table has rows for them). Sizes come from
 * `size`, never from the table's memmb column. `configs` restricts the ladder: every unit must have a row for every
 * config asked for.
 */
export function buildCostProblem<Row extends CostItem>(
  rows: readonly Row[],
  costOf: (row: Row) => number,
  source: string,
  configs?: readonly QuantConfig[],
  size: SizeBudget = PAPER_SIZES,
): CostProblem {
  const wanted = configs ? new Map(configs.map((c) => [configName(c), c])) : undefined;
  const byKey = new Map<string, { info: MatrixInfo; items: { config: QuantConfig; cost: number }[] }>();
  for (const r of rows) {
    const key = matrixKey(r.layer, r.module);
    let entry = byKey.get(key);
    if (!entry) {
      entry = { info: Object.freeze({ key, layer: r.layer, module: r.module, params: r.params }), items: [] };
      byKey.set(key, entry);
    } else if (entry.info.params !== r.params) {
      throw new InvalidDataError(source, `matrix ${key} has params ${entry.info.params} and ${r.params} in different rows`);
    }
    const zero = r.zero ?? 'fractional';
    const config = quantConfig(r.bits, r.groupSize, { roundZero: zero === 'integer', symmetric: zero === 'none' });
    const name = configName(config);
    // The ladder restricts the linear matrices; an embedding unit keeps the rows of its own ladder (measured for it).
    if (wanted && !wanted.has(name) && isLinearModule(r.module)) continue;
    // A config the accounting does not store for this unit (a format's shorter module ladder) is not offered to it.
    if (size.stores && size.includes(entry.info) && !size.stores(entry.info, config)) continue;
    const cost = costOf(r);
    if (!Number.isFinite(cost)) throw new InvalidDataError(source, `matrix ${key} config ${name}: cost ${cost} is not a finite number`);
    entry.items.push({ config, cost });
  }
  const matrices = sortUnits([...byKey.values()].map((e) => e.info).filter((m) => size.includes(m)));
  if (matrices.length === 0) throw new InvalidDataError(source, `has no rows for the units ${size.label} allocates`);
  const entries = matrices.map((m) => byKey.get(m.key)!);
  for (const e of entries) {
    const missing = wanted && isLinearModule(e.info.module) ? [...wanted].filter(([n, c]) => !e.items.some((i) => configName(i.config) === n) && (size.stores?.(e.info, c) ?? true)).map(([n]) => n) : [];
    if (missing.length > 0) {
      throw new InvalidDataError(source, `matrix ${e.info.key} has no row for ${missing.join(', ')}: measure the statistics for the configs asked for (--configs)`);
    }
    if (e.items.length === 0 && size.floatBits?.(e.info) === undefined) {
      throw new InvalidDataError(source, wanted ? `matrix ${e.info.key} has no row for a config of the ladder (${[...wanted.keys()].join(', ')}) that ${size.label} stores for it` : `matrix ${e.info.key} has no config rows`);
    }
  }
  const sizeBits = entries.map((e) =>
    Float64Array.from(e.items, (i) => {
      const bits = size.bits(e.info, i.config);
      if (!Number.isFinite(bits) || bits <= 0) throw new InvalidDataError(source, `matrix ${e.info.key} config ${configName(i.config)}: size ${bits} bits in ${size.label} is not a positive number`);
      return bits;
    }),
  );
  // Units the accounting lets stay float (a format's embeddings) get a float item: no error, its own size.
  const itemConfigs: (QuantConfig | null)[][] = entries.map((e) => e.items.map((i) => i.config));
  const costs = entries.map((e) => Float64Array.from(e.items, (i) => i.cost));
  const sizes = sizeBits;
  entries.forEach((e, k) => {
    const floatBits = size.floatBits?.(e.info);
    if (floatBits === undefined) return;
    itemConfigs[k]!.push(null);
    costs[k] = Float64Array.from([...costs[k]!, 0]);
    sizes[k] = Float64Array.from([...sizes[k]!, floatBits]);
  });
  let totalParams = 0;
  for (const m of matrices) totalParams += m.params;
  return { matrices, configs: itemConfigs, costs, sizeBits: sizes, totalParams, size };
}

/** The capacity of a problem in bits: the size budget's own, or `budget` bits per weight of the allocated units. */
export function capacityBits(problem: CostProblem, budget: number): number {
  return problem.size.capacityBits ?? budget * problem.totalParams;
}

/**
 * Sizes in whole bits when they are integers (file bytes times 8, and the paper's bpp*params with bpp a dyadic
 * fraction), so sums and the capacity comparison are exact; otherwise as given.
 */
function knapsackOf(problem: CostProblem, budget: number): KnapsackInstance {
  let integral = true;
  for (const list of problem.sizeBits) {
    for (const bits of list) if (Math.abs(bits - Math.round(bits)) > 1e-6 || bits > Number.MAX_SAFE_INTEGER / 4096) integral = false;
  }
  const classes = problem.sizeBits.map((list, i) => ({
    weights: Float64Array.from(list, (bits) => (integral ? Math.round(bits) : bits)),
    costs: problem.costs[i]!,
  }));
  const limit = capacityBits(problem, budget);
  const capacity = integral ? Math.floor(limit * (1 + 1e-12)) : limit;
  return { classes, capacity };
}

type KnapsackInstance = MultipleChoiceKnapsack;

function allocationOf(problem: CostProblem, choice: ArrayLike<number>): MatrixAllocation[] {
  return problem.matrices.map((m, i) => Object.freeze({ ...m, config: problem.configs[i]![choice[i]!]! }));
}

/** The error of a budget below every allocation: it names the smallest feasible one in the budget's own unit. */
function infeasible(problem: CostProblem, budget: number, minimumWeight: number): InfeasibleBudgetError {
  const target = problem.size.target;
  if (target?.unit === 'MiB') {
    // The smallest file (rounded up to 1e-4 MiB): the fixed part plus every unit at its lightest config.
    const smallest = Math.ceil(((minimumWeight + problem.size.fixedBits) / BITS_PER_MIB) * 1e4 - 1e-9) / 1e4;
    return new InfeasibleBudgetError(target.value, smallest, `MiB (${problem.size.label})`);
  }
  if (target) {
    const smallest = Math.ceil(((minimumWeight + problem.size.fixedBits) / target.params) * 1e4 - 1e-9) / 1e4;
    return new InfeasibleBudgetError(target.value, smallest, `bits per weight (${problem.size.label})`);
  }
  // Smallest budget (rounded up to 1e-4 bits per weight) whose limit fits every unit at its lightest config.
  return new InfeasibleBudgetError(budget, Math.ceil((minimumWeight / problem.totalParams) * 1e4 - 1e-9) / 1e4);
}

/** Re-solves at most this often while a format's exact file is over its limit (each try keeps back a larger overhead). */
const MAX_TIGHTER_SOLVES = 16;

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
  const knapsack = knapsackOf(problem, budget);
  const solve = (instance: MultipleChoiceKnapsack) => {
    try {
      return solveMultipleChoiceKnapsack(instance, { relativeGap, ...(options.maxStates === undefined ? {} : { maxStates: options.maxStates }) });
    } catch (error) {
      if (error instanceof KnapsackSearchLimitError) {
        throw new LayerquantError('SOLVER_LIMIT', `${method} at budget ${budget}: ${error.message}`, { cause: error });
      }
      throw error;
    }
  };
  let result = solve(knapsack);
  if (result.status === 'infeasible') throw infeasible(problem, budget, result.minimumWeight);
  // A format's file is not exactly the sum of its units (shared nodes, length prefixes): while the exact file is over
  // the limit, keep back from the units' capacity this allocation's overhead and solve again. An allocation whose
  // overhead is at most what is kept back fits, so one over the limit has a larger overhead than any kept back before:
  // the tries end, bounded by the largest overhead an allocation can have.
  const exactBits = problem.size.exactBits;
  if (exactBits) {
    const limit = problem.size.fixedBits + knapsack.capacity;
    let kept = 0;
    for (let attempt = 0; ; attempt++) {
      const exact = exactBits(allocationOf(problem, result.choice));
      if (exact <= limit) break;
      if (attempt === MAX_TIGHTER_SOLVES) throw new LayerquantError('SOLVER_LIMIT', `${method}: the file is still ${Math.ceil((exact - limit) / 8)} bytes over ${problem.size.label}'s limit after ${attempt} tighter solves`);
      let additive = problem.size.fixedBits;
      for (let i = 0; i < problem.matrices.length; i++) additive += knapsack.classes[i]!.weights[result.choice[i]!]!;
      // additive <= fixedBits + capacity - kept and exact > limit = fixedBits + capacity: this overhead exceeds kept.
      kept = exact - additive;
      result = solve({ ...knapsack, capacity: knapsack.capacity - kept });
      if (result.status === 'infeasible') throw infeasible(problem, budget, result.minimumWeight);
    }
  }
  const matrices = allocationOf(problem, result.choice);
  let sizeBits = 0;
  for (let i = 0; i < matrices.length; i++) sizeBits += problem.sizeBits[i]![result.choice[i]!]!;
  return Object.freeze({
    method,
    options: Object.freeze({
      budget,
      relativeGap,
      ...(options.configs ? { configs: options.configs.map(configName) } : {}),
      ...(problem.size.accounting === 'paper' ? {} : { accounting: problem.size.accounting }),
      ...(problem.size.target ? { target: problem.size.target } : {}),
      ...reported,
    }),
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
      accounting: problem.size.accounting,
      limitMiB: capacityBits(problem, budget) / BITS_PER_MIB,
      sizeMiB: sizeBits / BITS_PER_MIB,
      ...(exactBits ? { fileMiB: exactBits(matrices) / BITS_PER_MIB } : {}),
    }),
  });
}
