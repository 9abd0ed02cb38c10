import { checkMethodBudget, formatSizeBudget, rowConfig, type AllocatorPlugin, type MethodSpec, type ModelStats, type SizeBudget, type SizeTarget } from '@layerquant/allocators';
import {
  InvalidOptionError,
  configName,
  isEmbeddingUnit,
  isLinearModule,
  type FormatCostModel,
  type LinearModule,
  type ModuleLadders,
  type MatrixInfo,
  type QuantConfig,
  type Quantizer,
  type ZeroKind,
} from '@layerquant/core';
import type { EmbeddingLadders } from './statistics.js';

/**
 * What an allocation for a shipped format spends and chooses from: the format's cost model (exact bytes of each unit
 * and of the whole file), its native ladders for the quantizer in use, and a target size. The allocators then spend
 * the file's bytes instead of the paper's accounting (issue 29: the number we optimize is the number of the file).
 */

/** The zero kinds a quantizer's configs can take (core's Quantizer.zeroKinds; rtn and hqq: fractional and integer). */
export function quantizerZeroKinds(quantizer: Pick<Quantizer, 'zeroKinds'>): readonly ZeroKind[] {
  return quantizer.zeroKinds ?? ['fractional', 'integer'];
}

export interface FormatPlan {
  readonly cost: FormatCostModel;
  /** The knapsack ladder of the linear matrices: every config the format stores natively and the quantizer makes. */
  readonly configs: readonly QuantConfig[];
  /**
   * The stops of uniform and the boosts: the native configs with one zero kind (integer where the quantizer can, which
   * the format stores with no correction), ascending: the base is a native stop, the boost the next native ones.
   */
  readonly stops: readonly QuantConfig[];
  /** The embedding units' ladders (embed_tokens: integer or no zero, as the lookup takes them). */
  readonly embeddingConfigs: EmbeddingLadders;
  /**
   * The linear modules whose matrices the format stores at fewer configs than `configs` (GGUF's k-quants need rows of
   * whole super-blocks): their own ladders, measured and allocated as such. Empty where every matrix takes the ladder.
   */
  readonly moduleConfigs: ModuleLadders;
  /** Parameters of the linear matrices (what bits per weight of the file are counted against). */
  readonly linearParams: number;
}

/**
 * The ladders of a format for a quantizer. `configs` (a user's --configs) replaces the linear ladder: each must be a
 * config the format stores (a block size MatMulNBits rejects is refused here, before any work); 3-bit codes the
 * format can only widen (ONNX stores them as 4-bit) are refused too, since the file would cost 4 bits for 3 bits'
 * accuracy. `embeddings` (--embedding-configs) replaces embed_tokens' and lm_head's ladder (each config one the
 * format stores natively for them), or with 'float' keeps them float, outside the allocation.
 */
export function formatPlan(
  cost: FormatCostModel,
  quantizer: Pick<Quantizer, 'id' | 'zeroKinds' | 'calibration'>,
  configs?: readonly QuantConfig[],
  embeddings?: readonly QuantConfig[] | 'float',
): FormatPlan {
  const zeroKinds = quantizerZeroKinds(quantizer);
  const linear = cost.units.filter((u) => isLinearModule(u.module));
  const native = (unit: MatrixInfo) => cost.nativeLadder(unit, zeroKinds);
  // Every native config some linear matrix takes (the first matrix's in its byte order, then the others'): a format
  // may store a config only in some row lengths (GGUF's k-quants), and those matrices get their own, shorter ladders.
  const union: QuantConfig[] = [];
  for (const u of linear) for (const c of native(u)) if (!union.some((n) => configName(n) === configName(c))) union.push(c);
  let ladder: readonly QuantConfig[];
  if (configs) {
    for (const c of configs) {
      if (!zeroKinds.includes(zeroKindOf(c))) throw new InvalidOptionError('--configs', `${configName(c)}: ${quantizer.id} makes no such zero (it makes ${zeroKinds.join(', ')} zeros)`);
      if (!linear.some((u) => cost.unsupported(u, c) === undefined)) throw new InvalidOptionError('--configs', `${configName(c)} cannot be stored in ${cost.label} (${linear[0]!.name}): ${cost.unsupported(linear[0]!, c)}`);
      if (!union.some((n) => configName(n) === configName(c))) {
        throw new InvalidOptionError('--configs', `${configName(c)}: ${cost.format} has no kernel for ${c.bits}-bit codes and would store them wider; use ${[...new Set(union.map((n) => n.bits))].join(', ')} bits`);
      }
    }
    ladder = configs;
  } else {
    ladder = union;
  }
  if (ladder.length === 0) throw new InvalidOptionError('--configs', `${cost.label} stores no config the linear matrices of this model can take`);
  // Modules whose matrices take fewer configs of the ladder than it has get their own ladders.
  const moduleConfigs: Partial<Record<LinearModule, readonly QuantConfig[]>> = {};
  for (const module of new Set(linear.map((u) => u.module as LinearModule))) {
    const units = linear.filter((u) => u.module === module);
    const own = ladder.filter((c) => units.every((u) => cost.unsupported(u, c) === undefined));
    if (own.length === 0) throw new InvalidOptionError('--configs', `${cost.label} stores ${units[0]!.name} at none of ${ladder.map(configName).join(', ')}: ${cost.unsupported(units[0]!, ladder[0]!)}`);
    if (own.length < ladder.length) moduleConfigs[module] = own;
  }
  // Uniform and the boosts give every matrix one config of the ladder: the configs every matrix takes.
  const everywhere = ladder.filter((c) => linear.every((u) => cost.unsupported(u, c) === undefined));
  const stopZero: ZeroKind = zeroKinds.includes('integer') ? 'integer' : zeroKinds[0]!;
  const stops = everywhere.filter((c) => zeroKindOf(c) === stopZero);
  const embeddingConfigs: Record<string, readonly QuantConfig[]> = {};
  // The embedding units are allocatable for every quantizer. A calibrated one (GPTQ) has no collected input for them
  // and quantizes them with the identity as their Hessian: at integer zeros that is RTN's result exactly, and HQQ
  // (the statistics' usual quantizer, --stats-quantizer hqq) measures the same configs, so their ladder is the
  // integer-zero configs.
  const embeddingZeros = quantizer.calibration === undefined || !zeroKinds.includes('integer') ? zeroKinds : (['integer'] as const);
  for (const u of cost.units.filter((unit) => isEmbeddingUnit(unit.module))) {
    // --embedding-configs float: the embeddings stay float (at the export's embedding type), outside the allocation
    if (embeddings === 'float') continue;
    const own = cost.nativeLadder(u, embeddingZeros);
    if (embeddings === undefined) {
      if (own.length > 0) embeddingConfigs[u.module] = own;
      continue;
    }
    // a user's ladder for them: configs the format stores natively for this unit, of a zero the quantizer makes
    for (const c of embeddings) {
      if (!own.some((n) => configName(n) === configName(c))) {
        throw new InvalidOptionError('--embedding-configs', `${configName(c)}: ${cost.label} stores ${u.name} natively as ${own.length > 0 ? own.map(configName).join(', ') : 'float only'}${quantizer.calibration !== undefined ? ` for ${quantizer.id}` : ''}; or give "float" to keep the embeddings float`);
      }
    }
    embeddingConfigs[u.module] = embeddings;
  }
  return Object.freeze({
    cost,
    configs: ladder,
    stops: stops.length > 0 ? stops : everywhere,
    embeddingConfigs: Object.freeze(embeddingConfigs) as EmbeddingLadders,
    moduleConfigs: Object.freeze(moduleConfigs),
    linearParams: linear.reduce((sum, u) => sum + u.params, 0),
  });
}

function zeroKindOf(c: QuantConfig): ZeroKind {
  return c.symmetric ? 'none' : c.roundZero ? 'integer' : 'fractional';
}

/** A target as given: a file size (MiB, 2^20 bytes) or bits per linear weight of the file (its bits / linear params). */
export type FileTarget = { readonly sizeMiB: number } | { readonly bitsPerWeight: number };

/** The bytes a target allows, and how the user gave it (for messages and reports). */
export function targetBytes(target: FileTarget, plan: Pick<FormatPlan, 'linearParams'>): { readonly bytes: number; readonly given: SizeTarget } {
  if ('sizeMiB' in target) {
    if (!(target.sizeMiB > 0) || !Number.isFinite(target.sizeMiB)) throw new InvalidOptionError('--target-size', `${target.sizeMiB} must be a positive number of MiB`);
    return { bytes: Math.floor(target.sizeMiB * 2 ** 20), given: { value: target.sizeMiB, unit: 'MiB', params: plan.linearParams } };
  }
  if (!(target.bitsPerWeight > 0) || !Number.isFinite(target.bitsPerWeight)) throw new InvalidOptionError('--target-bpw', `${target.bitsPerWeight} must be a positive number of bits per linear weight`);
  return { bytes: Math.floor((target.bitsPerWeight * plan.linearParams) / 8), given: { value: target.bitsPerWeight, unit: 'bits per weight', params: plan.linearParams } };
}

/**
 * What a knapsack allocator spends for a format: the bytes of the units the statistics cover (embedding units
 * included where measured; the others stay float, in the fixed part), with the whole file at most `target` bytes.
 */
export function shippedSizeBudget(plan: FormatPlan, covered: readonly MatrixInfo[], target?: FileTarget): SizeBudget {
  // An embedding unit is allocated only where the plan gives it a ladder: statistics measured for another quantizer
  // (HQQ's tables with embedding rows, given to a calibrated one through --stats) do not make it a unit.
  const units = covered.filter((u) => !isEmbeddingUnit(u.module) || u.module in plan.embeddingConfigs);
  return formatSizeBudget(plan.cost, units, () => null, target ? targetBytes(target, plan) : undefined);
}

/**
 * The tables as an allocation for `plan` reads them: an embedding unit's rows only at the configs of its plan ladder,
 * none where it has no ladder (it stays float). The knapsacks offer a unit every config its rows hold, so a table
 * measured on a wider ladder (HQQ's, given to GPTQ through --stats) or a user's --embedding-configs narrows here.
 * Linear rows and tables of other shapes are untouched.
 */
export function statisticsForPlan(stats: ModelStats, plan: Pick<FormatPlan, 'embeddingConfigs'>): ModelStats {
  type Row = { readonly module?: unknown; readonly bits?: unknown; readonly groupSize?: unknown; readonly zero?: ZeroKind };
  const ladders = new Map(Object.entries(plan.embeddingConfigs as Readonly<Record<string, readonly QuantConfig[]>>).map(([unit, ladder]) => [unit, new Set(ladder.map(configName))]));
  const allowed = (row: Row) => {
    if (typeof row.module !== 'string' || !isEmbeddingUnit(row.module)) return true;
    if (typeof row.bits !== 'number' || typeof row.groupSize !== 'number') return true;
    return ladders.get(row.module)?.has(configName(rowConfig({ bits: row.bits, groupSize: row.groupSize, zero: row.zero ?? 'fractional' }))) ?? false;
  };
  const out: Record<string, unknown> = { ...stats };
  for (const [name, table] of Object.entries(stats)) {
    const rows = (table as { rows?: unknown } | undefined)?.rows;
    if (!Array.isArray(rows)) continue;
    out[name] = { ...(table as object), rows: (rows as Row[]).filter(allowed) };
  }
  return out as ModelStats;
}

/** The exact size of the file an allocation makes (units it does not name stay float): what reports call shipped MiB. */
export function shippedBytes(cost: FormatCostModel, matrices: readonly { readonly key: string; readonly config: QuantConfig | null }[]): number {
  const chosen = new Map(matrices.map((m) => [m.key, m.config]));
  return cost.fileBytes((unit) => chosen.get(unit.key) ?? null);
}

/** How an allocation for a shipped format is made: its ladder, its budget, and the bytes a target allows. */
export interface FormatAllocationSettings {
  /** The allocator spends the file's bytes (a knapsack); else it allocates at a native stop (uniform, the boosts). */
  readonly knapsack: boolean;
  /** The ladder: a user's, else the format's whole native ladder for a knapsack, its native stops for the others. */
  readonly configs: readonly QuantConfig[];
  /** The budget reported: the target in bits per linear weight of the file, else the budget given (paper accounting). */
  readonly budget: number;
  readonly target?: { readonly bytes: number; readonly given: SizeTarget };
}

/**
 * The one rule for an allocation under a format (quantize --format onnx, allocate --target-format onnx): the stop
 * allocators take the format's native stops, the knapsacks its whole ladder and, with a target, its bytes; a target
 * with a stop allocator is refused naming the knapsacks.
 */
export function formatAllocationSettings(
  method: MethodSpec,
  plan: FormatPlan,
  options: { readonly configs?: readonly QuantConfig[]; readonly budget?: number; readonly target?: FileTarget },
  allocators: readonly AllocatorPlugin[],
): FormatAllocationSettings {
  const plugin = allocators.find((p) => p.id === method.allocator);
  const knapsack = plugin?.budget === 'any';
  const configs = options.configs ?? (knapsack ? plan.configs : plan.stops);
  if (options.target && !knapsack) {
    const option = 'sizeMiB' in options.target ? '--target-size' : '--target-bpw';
    throw new InvalidOptionError(option, `${method.id} allocates at a stop of the ladder (a native config of ${plan.cost.format} as its base), not to a file size; use --budget, or a knapsack allocator (${allocators.filter((p) => p.budget === 'any').map((p) => p.id).join(', ')}) for a target size`);
  }
  const target = options.target ? targetBytes(options.target, plan) : undefined;
  if (!target && options.budget === undefined) throw new InvalidOptionError('--budget', 'give --budget (bits per weight) or, for a knapsack allocator, --target-size <MiB> or --target-bpw <bits>');
  const budget = target ? (8 * target.bytes) / plan.linearParams : options.budget!;
  if (!target) checkMethodBudget(method, budget, configs, allocators);
  return Object.freeze({ knapsack, configs, budget, ...(target ? { target } : {}) });
}
