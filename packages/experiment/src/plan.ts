import type { MethodSpec } from '@layerquant/allocators';
import { DEFAULT_HELD_OUT_BLOCKS, QUANTIZER_SETTINGS, settingsKey } from '@layerquant/pipeline';
import type { CellSpec } from './cell.js';

/**
 * The settings every cell of the experiment depends on, as plain objects: their key (@layerquant/pipeline's
 * `settingsKey`) names a cell in results.json and a job on the queue.
 */

/** What a grid's cells share: the model, the evaluation text and protocol. */
export interface GridSettings {
  readonly model: string;
  readonly text: string;
  readonly seqlen: number;
  readonly maxTokens: number | null;
  readonly seed: number;
  /** The config ladder the allocators choose from (config names); absent: the paper's 12. */
  readonly configs?: readonly string[];
  /** The cells' quantizer as its settings (@layerquant/pipeline's `quantizerSettings`); absent: HQQ, QUANTIZER_SETTINGS. */
  readonly quantizer?: Readonly<Record<string, unknown>>;
  /**
   * Cells also measure their KL divergence from the unquantized model (`experiment --kld`): part of the key only when
   * set, so a cell says whether it holds KLD, and cells computed before KLD existed keep their keys.
   */
  readonly kld?: boolean;
  /**
   * The calibration of a calibrated quantizer's layer pass (GPTQ, BAQ): the text's content hash, blocks and block
   * length. Part of a method cell's key only when set, so the keys of other quantizers' cells stay as they were.
   */
  readonly calibration?: { readonly text: string; readonly blocks: number; readonly seqlen: number };
  /**
   * `experiment --refine`: the allocators whose first allocation is corrected by measurement, and the calibration it
   * is measured on (its text's content hash, blocks, block length). Part of those methods' cell keys only when set,
   * so every other cell, and every cell of a grid without it, keeps its key.
   */
  readonly refine?: { readonly allocators: readonly string[]; readonly calibration: string; readonly blocks: number; readonly seqlen: number };
  /**
   * A grid of shipped files (`experiment --target-format`): the format, its export options, the unit of the budgets
   * (the file's MiB or bits per linear weight) and its ladders. Part of a method cell's key only when set.
   */
  readonly shipped?: Readonly<Record<string, unknown>>;
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
  const common = { v: 1, model: grid.model, text: grid.text, seqlen: grid.seqlen, protocol: 'windows', maxTokens: grid.maxTokens, ...(grid.kld ? { kld: 'float-model' } : {}) };
  if (cell === 'fp') return { ...common, method: 'fp' };
  const refine = grid.refine?.allocators.includes(cell.method.allocator) ? { refine: { measure: 'kld', calibration: grid.refine.calibration, blocks: grid.refine.blocks, seqlen: grid.refine.seqlen, heldOut: `next ${DEFAULT_HELD_OUT_BLOCKS} blocks (fewer above 512 MiB of float distributions)` } } : {};
  return { ...common, method: { ...cell.method }, budget: cell.budget, seed: grid.seed, quantizer: grid.quantizer ?? QUANTIZER_SETTINGS, stats: statsKey ?? null, ...(grid.configs ? { configs: grid.configs } : {}), ...(grid.calibration ? { calibration: grid.calibration } : {}), ...refine, ...(grid.shipped ? { shipped: grid.shipped } : {}) };
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
