import type { DecoderConfig } from '@layerquant/core';
import { LM_HEAD, decoderLayout, expectedShapes, tensorSourceFromMap, type TensorSource } from './decoder-weights.js';

/** A tiny decoder config for tests; override any field. */
export function tinyConfig(overrides: Partial<DecoderConfig> = {}): DecoderConfig {
  return Object.freeze({
    architecture: 'LlamaForCausalLM',
    modelType: 'llama',
    hiddenSize: 32,
    intermediateSize: 48,
    numLayers: 2,
    numHeads: 4,
    numKeyValueHeads: 2,
    headDim: 8,
    vocabSize: 64,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: undefined,
    maxPositionEmbeddings: 128,
    tieWordEmbeddings: false,
    attentionBias: false,
    mlpBias: false,
    bosTokenId: 0,
    eosTokenId: 0,
    ...overrides,
  });
}

/** Roughly normal values from core's one seeded generator (mulberry32), as before. */
export { seededNormal } from '@layerquant/core';
import { seededNormal } from '@layerquant/core';

/**
 * Random weights for a config: linear weights ~ N(0, 1/in), norms ~ 1 + N(0, 0.1), biases ~ N(0, 0.1). The output
 * matrix is the embedding table (tied) unless `lmHead` is set and the config does not tie them: then `lm_head.weight`
 * is its own random matrix (as Llama 2's), drawn after every other tensor.
 */
export function randomDecoderSource(config: DecoderConfig, seed = 1, options: { readonly lmHead?: boolean } = {}): TensorSource {
  const layout = decoderLayout(config, { has: (name) => options.lmHead === true && name === LM_HEAD });
  const random = seededNormal(seed);
  const tensors = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const [name, shape] of expectedShapes(config, layout)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const isNorm = name.endsWith('norm.weight');
    const isBias = name.endsWith('.bias');
    const scale = isNorm || isBias ? 0.1 : name.includes('embed') ? 1 : 1 / Math.sqrt(shape[1] ?? 1);
    for (let i = 0; i < data.length; i++) data[i] = (isNorm ? 1 : 0) + scale * random();
    tensors.set(name, { shape, data });
  }
  return tensorSourceFromMap(tensors, `random ${config.modelType} model (seed ${seed})`);
}

/** max |a - b| / max |b|: the relative error the runtime tests bound. */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return diff / scale;
}
