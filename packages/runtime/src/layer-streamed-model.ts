import { InvalidOptionError, type DecoderConfig } from '@layerquant/core';
import { loadDecoderBlocks, type DecoderBlocks, type HiddenStates } from './decoder-blocks.js';
import type { TokenBatch } from './decoder-model.js';
import { decoderLayout, expectedShapes, type DecoderLayout, type TensorSource } from './decoder-weights.js';
import type { RuntimeOptions } from './session.js';

/** One window to score: its ids and the target of every position (the next token; anything for the last). */
export interface ScoredWindow {
  readonly ids: ArrayLike<number>;
  readonly targets: ArrayLike<number>;
}

/**
 * A decoder that scores many windows at once, layer by layer: the hidden states of every window stay in memory
 * and one decoder layer's weights at a time are read from the source, so a model whose float32 weights do not fit
 * in memory can still be evaluated. Gives the per-position NLL a one-session DecoderModel gives, window by window.
 */
export interface LayerStreamedModel {
  readonly config: DecoderConfig;
  readonly layout: DecoderLayout;
  /** -log p(targets[t] | ids[0..t]) of every window; `onLayer(done, total)` after each layer (total = layers + 1 for the head). */
  windowsNll(windows: readonly ScoredWindow[], onLayer?: (done: number, total: number) => void): Promise<Float32Array[]>;
  /**
   * The logits [T, vocab] and per-position NLL of every window, handed to `consume` one window at a time after the
   * last layer (the next window's head runs after `consume` settles), so no two windows' logits are held at once.
   */
  windowsLogits(
    windows: readonly ScoredWindow[],
    consume: (index: number, scores: { logits: Float32Array; nll: Float32Array }) => void | Promise<void>,
    onLayer?: (done: number, total: number) => void,
  ): Promise<void>;
  dispose(): Promise<void>;
}

export async function loadLayerStreamedModel(source: TensorSource, config: DecoderConfig, options: RuntimeOptions = {}): Promise<LayerStreamedModel> {
  return layerStreamedModel(await loadDecoderBlocks(source, config, options));
}

/** The layer-streamed scorer over any DecoderBlocks (streamed ones hold one layer's weights at a time). */
export function layerStreamedModel(blocks: DecoderBlocks): LayerStreamedModel {
  const { config } = blocks;
  const model: LayerStreamedModel = {
    config,
    layout: blocks.layout,
    async windowsNll(windows, onLayer) {
      const nll: Float32Array[] = [];
      await model.windowsLogits(windows, (_, scores) => {
        nll.push(scores.nll);
      }, onLayer);
      return nll;
    },
    async windowsLogits(windows, consume, onLayer) {
      for (const [i, w] of windows.entries()) {
        if (w.targets.length !== w.ids.length) {
          throw new InvalidOptionError('targets', `window ${i}: ${w.targets.length} targets for ${w.ids.length} token ids; give one target per position`);
        }
      }
      const total = config.numLayers + 1;
      let hidden: HiddenStates[] = windows.map((w) => blocks.embed({ ids: w.ids } satisfies TokenBatch));
      for (let layer = 0; layer < config.numLayers; layer++) {
        const next: HiddenStates[] = [];
        for (const states of hidden) next.push({ ...states, data: (await blocks.layer(layer, states)).output });
        hidden = next;
        onLayer?.(layer + 1, total);
      }
      for (const [i, states] of hidden.entries()) {
        const head = await blocks.head(states, windows[i]!.targets);
        await consume(i, { logits: head.logits, nll: head.tokenNll! });
      }
      onLayer?.(total, total);
    },
    dispose: () => blocks.dispose(),
  };
  return model;
}

/** Bytes of the decoder's float32 weights: what a one-session DecoderModel holds. */
export function floatWeightBytes(config: DecoderConfig, source: Pick<TensorSource, 'has'>): number {
  let bytes = 0;
  for (const shape of expectedShapes(config, decoderLayout(config, source)).values()) bytes += 4 * shape.reduce((a, b) => a * b, 1);
  return bytes;
}

/** Bytes of the largest decoder layer's float32 weights plus embeddings, final norm and lm_head: what streaming holds. */
export function streamedWeightBytes(config: DecoderConfig, source: Pick<TensorSource, 'has'>): number {
  const perLayer = new Map<string, number>();
  let outside = 0;
  for (const [name, shape] of expectedShapes(config, decoderLayout(config, source))) {
    const bytes = 4 * shape.reduce((a, b) => a * b, 1);
    const layer = /^model\.layers\.(\d+)\./.exec(name)?.[1];
    if (layer === undefined) outside += bytes;
    else perLayer.set(layer, (perLayer.get(layer) ?? 0) + bytes);
  }
  return outside + Math.max(0, ...perLayer.values());
}
