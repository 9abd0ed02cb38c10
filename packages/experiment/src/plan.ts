import { PAPER_CONFIGS, type QuantConfig } from '@layerquant/core';
import { hqqQuantizer } from '@layerquant/quantizers';
import { DEFAULT_SENSITIVITY_CONFIG } from '@layerquant/sensitivity';
import type { CellSpec } from './cell.js';
import type { MethodSpec } from './grid.js';
import { settingsKey } from './keys.js';

/**
 * The settings every result of the experiment depends on, as plain objects: their key (keys.ts `settingsKey`)
 * names a statistics cache directory, a cell in results.json and a job on the queue.
 */

/** The quantizer of the fnorm table (the authors' HQQ error) and of every cell unless `experiment --quantizer`, with its solver settings. */
export const QUANTIZER_SETTINGS = Object.freeze({ id: hqqQuantizer.id, solver: hqqQuantizer.solver });

/** What computed statistics depend on. */
export interface ComputedStatsSettings {
  readonly [key: string]: unknown;
  readonly kind: 'computed';
  readonly model: string;
  readonly calibration: string;
  readonly calibrationName: string;
  readonly blocks: number;
  readonly seqlen: number;
  readonly order: string;
  readonly sensitivityConfigs: unknown;
  /** The config ladder of the fnorm table (and of measured.csv when it is measured). */
  readonly fnormConfigs: readonly QuantConfig[];
  /** The configs of the measured block-error table, or null where no method needs it. */
  readonly measuredConfigs: readonly QuantConfig[] | null;
  /** What measured.csv's error is (absent in caches of the absolute MSE, which are then not reused). */
  readonly measuredError?: 'relative to the residual stream';
  readonly quantizer: unknown;
}

export function computedStatsSettings(options: {
  model: string;
  calibration: string;
  calibrationName: string;
  blocks: number;
  seqlen: number;
  order?: string;
  fnormConfigs?: readonly QuantConfig[];
  measured?: boolean;
  /** Measure activation sensitivity (default true; false: no method reads it, the list of its configs is empty). */
  sensitivity?: boolean;
  /** Measure the fnorm table (default true; false: its ladder is empty, kurtosis is read on its own). */
  fnorm?: boolean;
}): ComputedStatsSettings {
  const ladder = options.fnormConfigs ?? PAPER_CONFIGS;
  return {
    kind: 'computed',
    model: options.model,
    calibration: options.calibration,
    calibrationName: options.calibrationName,
    blocks: options.blocks,
    seqlen: options.seqlen,
    order: options.order ?? 'default',
    sensitivityConfigs: options.sensitivity === false ? [] : [DEFAULT_SENSITIVITY_CONFIG],
    fnormConfigs: options.fnorm === false ? [] : ladder,
    measuredConfigs: options.measured ? ladder : null,
    ...(options.measured ? { measuredError: 'relative to the residual stream' as const } : {}),
    quantizer: QUANTIZER_SETTINGS,
  };
}

/** What a grid's cells share: the model, the evaluation text and protocol. */
export interface GridSettings {
  readonly model: string;
  readonly text: string;
  readonly seqlen: number;
  readonly maxTokens: number | null;
  readonly seed: number;
  /** The config ladder the allocators choose from (config names); absent: the paper's 12. */
  readonly configs?: readonly string[];
  /** The cells' quantizer as its settings (plugins.ts `quantizerSettings`); absent: HQQ, QUANTIZER_SETTINGS. */
  readonly quantizer?: Readonly<Record<string, unknown>>;
}

/** A planned cell with the settings its key was made of (kept beside the result, to say why one was not reused). */
export interface PlannedCell {
  readonly spec: CellSpec;
  readonly settings: Readonly<Record<string, unknown>>;
}

/**
 * The settings of one cell. The fp cell depends on the model and the evaluation only; a method cell also on the
 * method with every option (the spec as data, so new methods need no change here), the budget, the seed, the
 * quantizer and the statistics key. The seed is part of every method cell (only ablations draw from it, but a
 * method's use of it is not known here): a new --seed recomputes, never mixes.
 */
export function cellSettings(grid: GridSettings, cell: { method: MethodSpec; budget: number } | 'fp', statsKey: string | undefined): Record<string, unknown> {
  const common = { v: 1, model: grid.model, text: grid.text, seqlen: grid.seqlen, protocol: 'windows', maxTokens: grid.maxTokens };
  if (cell === 'fp') return { ...common, method: 'fp' };
  return { ...common, method: { ...cell.method }, budget: cell.budget, seed: grid.seed, quantizer: grid.quantizer ?? QUANTIZER_SETTINGS, stats: statsKey ?? null, ...(grid.configs ? { configs: grid.configs } : {}) };
}

/** The grid's cells in report order: fp first, then budget-major, methods in the order given. */
export function planCells(grid: GridSettings, methods: readonly MethodSpec[], budgets: readonly number[], includeFloat: boolean, statsKey: string | undefined): PlannedCell[] {
  const out: PlannedCell[] = [];
  if (includeFloat) {
    const settings = cellSettings(grid, 'fp', undefined);
    out.push({ spec: { key: settingsKey(settings), kind: 'fp' }, settings });
  }
  for (const budget of budgets) {
    for (const method of methods) {
      const settings = cellSettings(grid, { method, budget }, statsKey);
      out.push({ spec: { key: settingsKey(settings), kind: 'method', method, budget }, settings });
    }
  }
  return out;
}
