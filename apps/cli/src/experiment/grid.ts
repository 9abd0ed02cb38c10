import { InvalidOptionError } from '@layerquant/core';

/** The allocators the experiment composes. */
export type AllocatorId = 'uniform' | 'mxq' | 'sensiboost' | 'kurtboost' | 'ablation';

/** One method of the grid: an allocator with fixed options, named as the paper's tables name it. */
export interface MethodSpec {
  /** `hqq`, `mxq`, `sensiboost-2-1`, `kurtboost-3-0`, `ablation-sensiboost-2-1`, ... (boost stop, top_m; 0 = all). */
  readonly id: string;
  readonly allocator: AllocatorId;
  readonly boostStop?: number;
  readonly topM?: number;
  /** The ablation draws as many random layers per module as this method boosts. */
  readonly imitate?: 'sensiboost' | 'kurtboost';
}

/** The paper's settings: boost_stop 2 and 3, top_m 1 and all (0). */
export const PAPER_BOOST_VARIANTS: readonly (readonly [number, number])[] = Object.freeze([
  [2, 1],
  [2, 0],
  [3, 1],
  [3, 0],
]);

/** The budgets of the paper's comparison. */
export const PAPER_BUDGETS: readonly number[] = Object.freeze([2.25, 2.51, 3.13, 3.25, 3.51, 4.13, 4.25, 4.51]);

function boost(allocator: 'sensiboost' | 'kurtboost', boostStop: number, topM: number): MethodSpec {
  return Object.freeze({ id: `${allocator}-${boostStop}-${topM}`, allocator, boostStop, topM });
}

function ablation(imitate: 'sensiboost' | 'kurtboost', boostStop: number, topM: number): MethodSpec {
  return Object.freeze({ id: `ablation-${imitate}-${boostStop}-${topM}`, allocator: 'ablation', boostStop, topM, imitate });
}

/**
 * Parses a method list. Names: `hqq` (or `uniform`), `mxq`, `sensiboost-S-M`, `kurtboost-S-M`,
 * `ablation-sensiboost-S-M`, `ablation-kurtboost-S-M` (S = boost stop, M = top_m, 0 = all outliers);
 * groups: `sensiboost`, `kurtboost`, `ablation` (the paper's four variants each), `paper` (everything).
 */
export function parseMethods(list: string): MethodSpec[] {
  const out: MethodSpec[] = [];
  const add = (m: MethodSpec) => {
    if (!out.some((o) => o.id === m.id)) out.push(m);
  };
  for (const raw of list.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    if (raw === 'hqq' || raw === 'uniform') add({ id: 'hqq', allocator: 'uniform' });
    else if (raw === 'mxq') add({ id: 'mxq', allocator: 'mxq' });
    else if (raw === 'sensiboost' || raw === 'kurtboost') for (const [s, m] of PAPER_BOOST_VARIANTS) add(boost(raw, s, m));
    else if (raw === 'ablation') {
      for (const imitate of ['sensiboost', 'kurtboost'] as const) for (const [s, m] of PAPER_BOOST_VARIANTS) add(ablation(imitate, s, m));
    } else if (raw === 'paper') {
      for (const m of parseMethods('hqq,mxq,sensiboost,kurtboost,ablation')) add(m);
    } else {
      const match = /^(ablation-)?(sensiboost|kurtboost)-(\d+)-(\d+)$/.exec(raw);
      if (!match) {
        throw new InvalidOptionError(
          '--methods',
          `"${raw}" is not a method; use hqq, mxq, sensiboost-S-M, kurtboost-S-M, ablation-sensiboost-S-M, ablation-kurtboost-S-M (S = boost stop, M = top_m, 0 = all), or the groups sensiboost, kurtboost, ablation, paper`,
        );
      }
      const kind = match[2] as 'sensiboost' | 'kurtboost';
      const s = Number(match[3]);
      const m = Number(match[4]);
      if (s < 1) throw new InvalidOptionError('--methods', `"${raw}": the boost stop must be at least 1`);
      add(match[1] ? ablation(kind, s, m) : boost(kind, s, m));
    }
  }
  if (out.length === 0) throw new InvalidOptionError('--methods', 'names no method');
  return out;
}

/** Parses `2.25,3.25`; every value must be a positive number. */
export function parseBudgets(list: string): number[] {
  const budgets = list.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (budgets.length === 0 || budgets.some((b) => !Number.isFinite(b) || b <= 0)) {
    throw new InvalidOptionError('--budgets', `"${list}" must be a comma-separated list of bits per weight, e.g. 2.25,3.25`);
  }
  return [...new Set(budgets)];
}

/** The statistics tables a method needs. */
export function tablesNeeded(methods: readonly MethodSpec[]): { fnorm: boolean; sensitivity: boolean; kurtosis: boolean } {
  return {
    fnorm: methods.some((m) => m.allocator === 'mxq'),
    sensitivity: methods.some((m) => m.allocator === 'sensiboost' || (m.allocator === 'ablation' && m.imitate === 'sensiboost')),
    kurtosis: methods.some((m) => m.allocator === 'kurtboost' || (m.allocator === 'ablation' && m.imitate === 'kurtboost')),
  };
}
