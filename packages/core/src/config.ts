import { InvalidOptionError } from './errors.js';

/**
 * A quantization config: `b{bits}g{groupSize}` plus the HQQ variants of the authors' fork.
 * Plain frozen data, made by `quantConfig()` which validates it.
 */
export interface QuantConfig {
  readonly bits: number;
  readonly groupSize: number;
  /** 1: groups of `groupSize` contiguous values along the input dimension (upstream HQQ). 0: strided groups (`W.reshape(g, -1)`). */
  readonly axis: 0 | 1;
  /** Round the zero point to an integer (the authors' fork does for 4-bit): an integer zero point a format stores as is. */
  readonly roundZero: boolean;
  /**
   * No zero point: codes are centred on 2^(bits-1) and the scale maps the group's largest magnitude (the layout of
   * onnxruntime's and transformers.js' symmetric q4). One value per group is stored instead of two.
   */
  readonly symmetric: boolean;
}

/** How a config stores its zero point: fractional (a float per group), integer, or none (symmetric). */
export type ZeroKind = 'fractional' | 'integer' | 'none';

export function zeroKind(config: Pick<QuantConfig, 'roundZero' | 'symmetric'>): ZeroKind {
  return config.symmetric ? 'none' : config.roundZero ? 'integer' : 'fractional';
}

export const SUPPORTED_BITS = Object.freeze([1, 2, 3, 4, 5, 6, 8] as const);

export interface QuantConfigOptions {
  axis?: 0 | 1;
  roundZero?: boolean;
  symmetric?: boolean;
}

/** Validated factory for a QuantConfig. */
export function quantConfig(bits: number, groupSize: number, options: QuantConfigOptions = {}): QuantConfig {
  if (!(SUPPORTED_BITS as readonly number[]).includes(bits)) {
    throw new InvalidOptionError('bits', `${bits} is not supported; use one of ${SUPPORTED_BITS.join(', ')}`);
  }
  if (!Number.isInteger(groupSize) || groupSize < 1) {
    throw new InvalidOptionError('groupSize', `${groupSize} must be a positive integer (e.g. 32, 64, 128)`);
  }
  const axis = options.axis ?? 1;
  if (axis !== 0 && axis !== 1) throw new InvalidOptionError('axis', `${String(axis)} must be 0 or 1`);
  const symmetric = options.symmetric ?? false;
  // A symmetric config has no zero to round.
  return Object.freeze({ bits, groupSize, axis, roundZero: symmetric ? false : (options.roundZero ?? false), symmetric });
}

/** Name suffix of each zero kind (`b4g64`, `b4g64-int`, `b4g64-sym`). */
const ZERO_SUFFIX: Readonly<Record<ZeroKind, string>> = Object.freeze({ fractional: '', integer: '-int', none: '-sym' });

/**
 * `b4g64`; a config with an integer zero point is `b4g64-int`, a symmetric one `b4g64-sym` (they store other bytes, so
 * tables and allocations tell them apart). The group axis is not part of the name.
 */
export function configName(config: Pick<QuantConfig, 'bits' | 'groupSize'> & Partial<Pick<QuantConfig, 'roundZero' | 'symmetric'>>): string {
  return `b${config.bits}g${config.groupSize}${ZERO_SUFFIX[zeroKind({ roundZero: config.roundZero ?? false, symmetric: config.symmetric ?? false })]}`;
}

/**
 * Parses `b4g64`, `b4g64-int` or `b4g64-sym` (case-insensitive). A suffix sets the zero kind; without one,
 * `options.roundZero`/`options.symmetric` apply.
 */
export function parseConfigName(name: string, options: QuantConfigOptions = {}): QuantConfig {
  const m = /^b(\d+)g(\d+)(-int|-sym)?$/i.exec(name.trim());
  if (!m) throw new InvalidOptionError('config', `"${name}" is not a config name; write b{bits}g{group}, e.g. b4g64, with -int for an integer zero point or -sym for none`);
  const suffix = m[3]?.toLowerCase();
  const zero = suffix === '-int' ? { roundZero: true, symmetric: false } : suffix === '-sym' ? { roundZero: false, symmetric: true } : {};
  return quantConfig(Number(m[1]), Number(m[2]), { ...options, ...zero });
}

/** Parses a config ladder `b2g64,b3g64,b4g32` (at least one, no duplicates); `option` names the flag in errors. */
export function parseConfigList(list: string, option = 'configs'): QuantConfig[] {
  const names = list.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new InvalidOptionError(option, `"${list}" names no config; write e.g. b2g64,b3g64,b4g32`);
  const configs: QuantConfig[] = [];
  for (const name of names) {
    let config: QuantConfig;
    try {
      config = parseConfigName(name);
    } catch (error) {
      throw new InvalidOptionError(option, `${(error as Error).message} (in "${list}")`);
    }
    if (configs.some((c) => configName(c) === configName(config))) throw new InvalidOptionError(option, `lists ${configName(config)} twice`);
    configs.push(config);
  }
  return configs;
}

/** The paper's meta-data settings: 8-bit scale and zero per group, fp16 meta per 128 groups. */
export const META_BITS = 8;
export const META_GROUP = 128;

/**
 * Bits per weight as the paper counts them: `b1 + 2*b2/g1 + 32/(g1*g2)` with b2 = 8, g2 = 128 (an 8-bit scale and
 * zero per group, two fp16 ranges per 128 groups). b4g64 -> 4.25390625. A symmetric config has no zero: one 8-bit
 * value per group and one fp16 range per 128 groups, `b1 + b2/g1 + 16/(g1*g2)`.
 */
export function bitsPerWeight(config: Pick<QuantConfig, 'bits' | 'groupSize'> & Partial<Pick<QuantConfig, 'symmetric'>>): number {
  const g1 = config.groupSize;
  const values = config.symmetric ? 1 : 2;
  return config.bits + (values * META_BITS) / g1 + (16 * values) / (g1 * META_GROUP);
}

/** Memory in MB (2^20 bytes) of `params` weights at `bpp` bits per weight, as the authors compute `memmb`. */
export function memoryMB(bpp: number, params: number): number {
  return (bpp * params) / 8 / 2 ** 20;
}

/** The 12 configs of the paper: b in {2,3,4,8} x g in {32,64,128}. */
export const PAPER_CONFIGS: readonly QuantConfig[] = Object.freeze(
  [2, 3, 4, 8].flatMap((bits) => [128, 64, 32].map((g) => quantConfig(bits, g))),
);

export interface BudgetStop {
  /** The stop as the paper writes it, e.g. 3.13. */
  readonly budget: number;
  /** The uniform config whose bpp the stop rounds. */
  readonly config: QuantConfig;
  /** Exact bits per weight of that config. */
  readonly bpp: number;
}

/**
 * The ladder of 12 budget stops (2.13 ... 8.51), ascending; each is a uniform config (b1g128, b1g64, b1g32).
 * SensiBoost and KurtBoost move outlier matrices up this ladder.
 */
export const BUDGET_STOPS: readonly BudgetStop[] = Object.freeze(
  PAPER_CONFIGS.map((config) => {
    const bpp = bitsPerWeight(config);
    return Object.freeze({ budget: Math.round(bpp * 100) / 100, config, bpp });
  }).sort((a, b) => a.bpp - b.bpp),
);

/** The budgets of the paper's comparison (its tables and Figure 5): the experiment's default grid, the notebook's marks. */
export const PAPER_BUDGETS: readonly number[] = Object.freeze([2.25, 2.51, 3.13, 3.25, 3.51, 4.13, 4.25, 4.51]);

/** Index of a budget stop on the ladder, or -1 (matches within 0.005, so 3.25 and 3.2539 both find b3g64). */
export function findBudgetStop(budget: number): number {
  return BUDGET_STOPS.findIndex((s) => Math.abs(s.budget - budget) < 0.005 || Math.abs(s.bpp - budget) < 1e-9);
}

/** Index of a budget stop on the ladder; an InvalidOptionError listing the stops when `budget` is none. */
export function budgetStopIndex(budget: number): number {
  const index = findBudgetStop(budget);
  if (index < 0) {
    throw new InvalidOptionError(
      'budget',
      `${budget} is not one of the paper's budget stops (${BUDGET_STOPS.map((s) => s.budget).join(', ')})`,
    );
  }
  return index;
}
