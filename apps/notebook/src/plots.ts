import { LINEAR_MODULES } from '@layerquant/core';

/** Shared plot settings, so every figure of the notebook reads the same. */
export const PLOT_WIDTH = 880;

/** Short module names for axes and legends: q, k, v, o, gate, up, down. */
export function shortModule(module: string): string {
  return module.replace(/^self_attn\./, '').replace(/^mlp\./, '').replace(/_proj$/, '');
}

export const MODULE_ORDER: readonly string[] = LINEAR_MODULES.map(shortModule);

export const OUTLIER_COLOR = '#d62728';
