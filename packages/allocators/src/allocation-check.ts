import {
  PAPER_CONFIGS,
  PluginError,
  allocationTotals,
  configName,
  isLinearModule,
  matrixKey,
  type Allocation,
  type MatrixAllocation,
  type MatrixInfo,
  type QuantConfig,
} from '@layerquant/core';
import type { SizeBudget } from './cost-knapsack.js';
import { rowConfig, type ModelStats } from './stats.js';

/**
 * The configs an allocator may choose from when no ladder is given: the paper's 12 and every config the statistics
 * tables measured (a knapsack allocator without --configs chooses among the table's rows). Built through core's
 * factory, so a table config it refuses is refused here too.
 */
export function defaultLadder(stats: ModelStats): readonly QuantConfig[] {
  const ladder = new Map(PAPER_CONFIGS.map((c) => [configName(c), c]));
  for (const r of [...(stats.fnorm?.rows ?? []), ...(stats.measured?.rows ?? []), ...(stats.kld?.rows ?? [])]) {
    if (!isLinearModule(r.module)) continue;
    const config = rowConfig(r);
    if (!ladder.has(configName(config))) ladder.set(configName(config), config);
  }
  return [...ladder.values()];
}

/** An embedding unit's ladder: the configs its rows were measured at (a format's own, e.g. integer zeros only). */
export function embeddingLadder(stats: ModelStats, key: string): readonly QuantConfig[] {
  const ladder = new Map<string, QuantConfig>();
  for (const r of [...(stats.fnorm?.rows ?? []), ...(stats.measured?.rows ?? []), ...(stats.kld?.rows ?? [])]) {
    if (matrixKey(r.layer, r.module) !== key) continue;
    const config = rowConfig(r);
    ladder.set(configName(config), config);
  }
  return [...ladder.values()];
}

/** What the host planned for an allocation: the units it must allocate and what it may give them. */
export interface AllocationPlan {
  /**
   * The units of the model the statistics cover, with their sizes: every linear matrix must be allocated exactly
   * once; an embedding unit (embed_tokens, lm_head) at most once (an accounting that does not allocate it leaves it to
   * the format).
   */
  readonly units: readonly MatrixInfo[];
  /** The configs a linear matrix may get: the ladder. */
  readonly configs: readonly QuantConfig[];
  /** The configs an embedding unit may get (its own ladder), where the plan has embedding units. */
  readonly configsOf?: (unit: MatrixInfo) => readonly QuantConfig[];
  /** The budget asked for, bits per weight (paper accounting, or the size budget's accounting with `size`). */
  readonly budget: number;
  /**
   * `any`: the allocation must fit the budget (knapsack allocators). `stop`: the budget is the stop the allocator
   * starts from (uniform; the boosts spend extra memory above it by design), not checked as a ceiling.
   */
  readonly budgetKind: 'stop' | 'any';
  /** What the budget is spent in (a format's shipped bytes); absent: the paper's accounting at `budget` bits per weight. */
  readonly size?: SizeBudget;
}

const describe = (value: unknown): string => {
  try {
    const text = JSON.stringify(value, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
    return text === undefined ? String(value) : text.length > 80 ? `${text.slice(0, 80)}...` : text;
  } catch {
    return String(value);
  }
};

/** The budget of a knapsack plug-in, in the accounting it spends: the paper's bits per weight, or a format's bits. */
function checkBudget(matrices: readonly MatrixAllocation[], paperBpp: number, plan: AllocationPlan, fail: (message: string) => never): void {
  const size = plan.size;
  if (!size) {
    if (!(paperBpp <= plan.budget * (1 + 1e-9))) fail(`allocated ${paperBpp.toFixed(4)} bits per weight, over the budget of ${plan.budget}`);
    return;
  }
  const included = matrices.filter((m) => size.includes(m));
  const capacity = size.capacityBits ?? plan.budget * included.reduce((sum, m) => sum + m.params, 0);
  const spent = size.exactBits
    ? size.exactBits(matrices) - size.fixedBits
    : included.reduce((sum, m) => sum + (m.config ? size.bits(m, m.config) : (size.floatBits?.(m) ?? Number.POSITIVE_INFINITY)), 0);
  if (!(spent <= capacity * (1 + 1e-9))) {
    fail(`spends ${(spent / 8 / 2 ** 20).toFixed(4)} MiB in ${size.label}, over its budget of ${(capacity / 8 / 2 ** 20).toFixed(4)} MiB`);
  }
}

/**
 * The one check of an allocator plug-in's output: every unit of the plan allocated exactly once (none missing, none
 * twice, none unknown), each with the unit's own parameter count and a config of the ladder (never a made-up, NaN or
 * off-ladder config; `null` explicitly leaves it in float, at 16 bits), the budget kept where the plug-in promises to
 * keep it. The host then builds
 * the allocation itself, in the plan's order, with the ladder's own configs and totals it computes (a plug-in's totals
 * are never read). Anything else is a PluginError naming the plug-in and the unit.
 */
export function checkAllocation(pluginId: string, output: unknown, plan: AllocationPlan): Allocation {
  const fail = (message: string): never => {
    throw new PluginError('allocator', pluginId, message);
  };
  if (output === null || typeof output !== 'object') fail(`returned ${describe(output)}, not an allocation`);
  if (typeof (output as { then?: unknown }).then === 'function') fail('returned a Promise; allocate() must return the allocation itself');
  const allocation = output as Partial<Allocation> & Record<string, unknown>;
  if (!Array.isArray(allocation.matrices)) fail('returned an allocation without a "matrices" list');
  const units = new Map(plan.units.map((u) => [u.key, u]));
  const ladder = new Map(plan.configs.map((c) => [configName(c), c]));
  const chosen = new Map<string, QuantConfig | null>();
  for (const entry of allocation.matrices as unknown[]) {
    if (entry === null || typeof entry !== 'object') fail(`returned a matrix entry ${describe(entry)}, not an object`);
    const m = entry as Partial<MatrixAllocation>;
    if (typeof m.key !== 'string') fail(`returned a matrix entry without a string key: ${describe(entry)}`);
    const unit = units.get(m.key!);
    if (!unit) fail(`allocated "${m.key}", which is not a matrix of the model (${plan.units.length} matrices, ${plan.units[0]?.key ?? 'none'} ... ${plan.units.at(-1)?.key ?? ''})`);
    if (chosen.has(unit!.key)) fail(`allocated matrix ${unit!.key} twice`);
    if (m.params !== undefined && m.params !== unit!.params) fail(`gave matrix ${unit!.key} ${describe(m.params)} parameters; it has ${unit!.params}`);
    if ((m.layer !== undefined && m.layer !== unit!.layer) || (m.module !== undefined && m.module !== unit!.module)) {
      fail(`gave matrix ${unit!.key} layer ${describe(m.layer)} and module ${describe(m.module)}`);
    }
    const config = m.config as Partial<QuantConfig> | null | undefined;
    // null is the plug-in contract's "leave this matrix in float" (counted at 16 bits); a missing config is no choice.
    if (config === null) {
      chosen.set(unit!.key, null);
      continue;
    }
    if (config === undefined) fail(`gave matrix ${unit!.key} no config (null leaves a matrix in float; otherwise a config of the ladder)`);
    if (typeof config !== 'object' || !Number.isInteger(config!.bits) || !Number.isInteger(config!.groupSize)) {
      fail(`gave matrix ${unit!.key} the config ${describe(config)}, not one of the ladder (${[...ladder.keys()].join(', ')})`);
    }
    const name = configName(config as QuantConfig);
    const own = isLinearModule(unit!.module) || !plan.configsOf ? ladder : new Map(plan.configsOf(unit!).map((c) => [configName(c), c]));
    const rung = own.get(name);
    if (!rung) fail(`gave matrix ${unit!.key} ${name}, which is not on the ladder (${[...own.keys()].join(', ')})`);
    chosen.set(unit!.key, rung!);
  }
  const linear = plan.units.filter((u) => isLinearModule(u.module));
  const missing = linear.filter((u) => !chosen.has(u.key));
  if (missing.length > 0) {
    fail(`allocated ${linear.length - missing.length} of the model's ${linear.length} matrices; missing ${missing.slice(0, 3).map((u) => u.key).join(', ')}${missing.length > 3 ? `, ... (${missing.length})` : ''}`);
  }
  const matrices: MatrixAllocation[] = plan.units
    .filter((u) => chosen.has(u.key))
    .map((u) => Object.freeze({ key: u.key, layer: u.layer, module: u.module, params: u.params, config: chosen.get(u.key)! }));
  const totals = allocationTotals(matrices);
  if (plan.budgetKind === 'any') checkBudget(matrices, totals.bpp, plan, fail);
  const options = allocation.options !== null && typeof allocation.options === 'object' && !Array.isArray(allocation.options) ? allocation.options : {};
  return Object.freeze({
    ...allocation,
    method: typeof allocation.method === 'string' ? allocation.method : pluginId,
    options: Object.freeze({ ...options }),
    budget: plan.budget,
    matrices: Object.freeze(matrices),
    totals,
  });
}
