import type { DecoderConfig } from '@layerquant/core';
import { rotaryInverseFrequencies } from './decoder-graph.js';
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerTensorName, type DecoderWeights, type LayerTensor } from './decoder-weights.js';

/** The input rows of a layer's linear matrices: q/k/v's (`attention`), o_proj's (`context`), gate/up's (`mlp`), down_proj's (`activation`). */
export type ReferenceLinearInput = 'attention' | 'context' | 'mlp' | 'activation';

/**
 * A plain float64 TypeScript forward pass of the Llama-family decoder, written from the HF modeling code
 * independently of the ONNX graph. It is slow (no BLAS) and exists only to test the ONNX path on tiny models.
 * Returns logits [T, vocab] for one sequence; `observe` sees every linear matrix's input rows ([T, in]).
 */
export function referenceForward(
  weights: DecoderWeights,
  ids: readonly number[],
  observe?: (layer: number, input: ReferenceLinearInput, rows: Float64Array) => void,
): Float64Array {
  const { config, layout, tensors } = weights;
  const { hiddenSize: h, numHeads, numKeyValueHeads, headDim, vocabSize, numLayers } = config;
  const T = ids.length;
  const get = (name: string): Float32Array => {
    const t = tensors.get(name);
    if (!t) throw new RangeError(`reference forward: tensor "${name}" missing`);
    return t;
  };
  const layer = (i: number, t: LayerTensor) => get(layerTensorName(i, t));

  let x = new Float64Array(T * h);
  const embed = get(EMBED_TOKENS);
  for (let t = 0; t < T; t++) for (let j = 0; j < h; j++) x[t * h + j] = embed[ids[t]! * h + j]!;

  const { cos, sin } = rotaryTables(config, T);
  for (let i = 0; i < numLayers; i++) {
    const normed = rmsNorm(x, layer(i, 'inputNorm'), h, config.rmsNormEps);
    observe?.(i, 'attention', normed);
    const q = linear(normed, layer(i, 'q'), layout.qkvBias ? layer(i, 'qBias') : undefined, h);
    const k = linear(normed, layer(i, 'k'), layout.qkvBias ? layer(i, 'kBias') : undefined, h);
    const v = linear(normed, layer(i, 'v'), layout.qkvBias ? layer(i, 'vBias') : undefined, h);
    applyRotary(q, numHeads, headDim, cos, sin);
    applyRotary(k, numKeyValueHeads, headDim, cos, sin);
    const context = causalAttention(q, k, v, T, numHeads, numKeyValueHeads, headDim);
    observe?.(i, 'context', context);
    const attention = linear(context, layer(i, 'o'), layout.oBias ? layer(i, 'oBias') : undefined, numHeads * headDim);
    for (let j = 0; j < x.length; j++) x[j]! += attention[j]!;
    const normed2 = rmsNorm(x, layer(i, 'postNorm'), h, config.rmsNormEps);
    observe?.(i, 'mlp', normed2);
    const gate = linear(normed2, layer(i, 'gate'), layout.mlpBias ? layer(i, 'gateBias') : undefined, h);
    const up = linear(normed2, layer(i, 'up'), layout.mlpBias ? layer(i, 'upBias') : undefined, h);
    for (let j = 0; j < gate.length; j++) gate[j] = (gate[j]! / (1 + Math.exp(-gate[j]!))) * up[j]!;
    observe?.(i, 'activation', gate);
    const down = linear(gate, layer(i, 'down'), layout.mlpBias ? layer(i, 'downBias') : undefined, config.intermediateSize);
    const next = new Float64Array(x.length);
    for (let j = 0; j < x.length; j++) next[j] = x[j]! + down[j]!;
    x = next;
  }
  const normed = rmsNorm(x, get(FINAL_NORM), h, config.rmsNormEps);
  const head = layout.tiedEmbeddings ? embed : get(LM_HEAD);
  const logits = linear(normed, head, undefined, h);
  if (logits.length !== T * vocabSize) throw new RangeError('reference forward: lm_head shape');
  return logits;
}

function rmsNorm(x: Float64Array, weight: Float32Array, width: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / width; r++) {
    let sum = 0;
    for (let j = 0; j < width; j++) sum += x[r * width + j]! ** 2;
    const scale = 1 / Math.sqrt(sum / width + eps);
    for (let j = 0; j < width; j++) out[r * width + j] = x[r * width + j]! * scale * weight[j]!;
  }
  return out;
}

/** y[r, o] = sum_i x[r, i] W[o, i] + b[o]. */
function linear(x: Float64Array, weight: Float32Array, bias: Float32Array | undefined, inFeatures: number): Float64Array {
  const rows = x.length / inFeatures;
  const outFeatures = weight.length / inFeatures;
  const y = new Float64Array(rows * outFeatures);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outFeatures; o++) {
      let sum = bias ? bias[o]! : 0;
      for (let i = 0; i < inFeatures; i++) sum += x[r * inFeatures + i]! * weight[o * inFeatures + i]!;
      y[r * outFeatures + o] = sum;
    }
  }
  return y;
}

function rotaryTables(config: DecoderConfig, T: number): { cos: Float64Array; sin: Float64Array } {
  const half = config.headDim / 2;
  const inverseFrequencies = rotaryInverseFrequencies(config);
  const cos = new Float64Array(T * half);
  const sin = new Float64Array(T * half);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const angle = t * inverseFrequencies[i]!;
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** In place on [T, heads*headDim]: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), the HF rotate_half form. */
function applyRotary(x: Float64Array, heads: number, headDim: number, cos: Float64Array, sin: Float64Array): void {
  const half = headDim / 2;
  const T = x.length / (heads * headDim);
  for (let t = 0; t < T; t++) {
    for (let hd = 0; hd < heads; hd++) {
      const base = (t * heads + hd) * headDim;
      for (let i = 0; i < half; i++) {
        const x1 = x[base + i]!;
        const x2 = x[base + half + i]!;
        const c = cos[t * half + i]!;
        const s = sin[t * half + i]!;
        x[base + i] = x1 * c - x2 * s;
        x[base + half + i] = x2 * c + x1 * s;
      }
    }
  }
}

/** Causal softmax attention; query head h reads KV head floor(h / (heads / kvHeads)) (repeat_interleave). */
function causalAttention(q: Float64Array, k: Float64Array, v: Float64Array, T: number, heads: number, kvHeads: number, headDim: number): Float64Array {
  const out = new Float64Array(T * heads * headDim);
  const groups = heads / kvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const scores = new Float64Array(T);
  for (let hd = 0; hd < heads; hd++) {
    const kv = Math.floor(hd / groups);
    for (let t = 0; t < T; t++) {
      let max = -Infinity;
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q[(t * heads + hd) * headDim + d]! * k[(s * kvHeads + kv) * headDim + d]!;
        scores[s] = dot * scale;
        if (scores[s]! > max) max = scores[s]!;
      }
      let total = 0;
      for (let s = 0; s <= t; s++) {
        scores[s] = Math.exp(scores[s]! - max);
        total += scores[s]!;
      }
      for (let s = 0; s <= t; s++) {
        const p = scores[s]! / total;
        for (let d = 0; d < headDim; d++) out[(t * heads + hd) * headDim + d]! += p * v[(s * kvHeads + kv) * headDim + d]!;
      }
    }
  }
  return out;
}
