import { LINEAR_MODULES } from '@layerquant/core';

/** Shared plot settings, so every figure of the notebook reads the same. */
export const PLOT_WIDTH = 880;

/** Short module names for axes and legends: q, k, v, o, gate, up, down. */
export function shortModule(module: string): string {
  return module.replace(/^self_attn\./, '').replace(/^mlp\./, '').replace(/_proj$/, '');
}

export const MODULE_ORDER: readonly string[] = LINEAR_MODULES.map(shortModule);

export const OUTLIER_COLOR = '#d62728';

/** Approximate width of a label in pixels (10 px bold sans-serif). */
export function labelWidth(text: string, fontSize = 10): number {
  return Math.max(...text.split('\n').map((line) => line.length)) * fontSize * 0.62 + 6;
}

/**
 * Lanes for labels along an x axis so that none overlaps another: each label takes the first lane whose last label
 * ends left of it (greedy interval colouring, in pixels). Returns the lane of each label, in input order.
 */
export function labelLanes(labels: readonly { x: number; width: number }[]): number[] {
  const order = labels.map((l, i) => ({ ...l, i })).sort((a, b) => a.x - b.x);
  const laneEnds: number[] = [];
  const lanes = new Array<number>(labels.length).fill(0);
  for (const l of order) {
    let lane = laneEnds.findIndex((end) => end <= l.x);
    if (lane < 0) {
      lane = laneEnds.length;
      laneEnds.push(0);
    }
    laneEnds[lane] = l.x + l.width;
    lanes[l.i] = lane;
  }
  return lanes;
}

/** Integer layer ticks, at most about 16 (a 4-layer model gets 0, 1, 2, 3; 32 layers every other one). */
export function layerTicks(numLayers: number): number[] {
  const step = Math.max(1, Math.ceil(numLayers / 16));
  return Array.from({ length: Math.ceil(numLayers / step) }, (_, i) => i * step);
}
