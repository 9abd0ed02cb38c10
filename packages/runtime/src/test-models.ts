import type { DecoderConfig } from '@layerquant/core';
import { writeSafetensors } from '@layerquant/tensor-io';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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

/** config.json in Hugging Face's keys for a DecoderConfig. */
export function huggingFaceConfig(config: DecoderConfig): Record<string, unknown> {
  return {
    architectures: [config.architecture],
    model_type: config.modelType,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKeyValueHeads,
    head_dim: config.headDim,
    vocab_size: config.vocabSize,
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    ...(config.ropeScaling
      ? {
          rope_scaling: {
            rope_type: config.ropeScaling.type,
            factor: config.ropeScaling.factor,
            ...(config.ropeScaling.lowFreqFactor === undefined ? {} : { low_freq_factor: config.ropeScaling.lowFreqFactor }),
            ...(config.ropeScaling.highFreqFactor === undefined ? {} : { high_freq_factor: config.ropeScaling.highFreqFactor }),
            ...(config.ropeScaling.originalMaxPositionEmbeddings === undefined ? {} : { original_max_position_embeddings: config.ropeScaling.originalMaxPositionEmbeddings }),
          },
        }
      : {}),
    max_position_embeddings: config.maxPositionEmbeddings,
    tie_word_embeddings: config.tieWordEmbeddings,
    attention_bias: config.attentionBias,
    mlp_bias: config.mlpBias,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenId,
    hidden_act: 'silu',
    use_cache: true,
  };
}

export interface ModelDirectoryOptions {
  readonly seed?: number;
  /** Storage of every tensor (default F32). */
  readonly dtype?: 'F32' | 'F16' | 'BF16';
  /**
   * A model directory whose tokenizer files (tokenizer.json, tokenizer_config.json) are copied (its vocabulary must fit
   * vocabSize). Default: a character-level tokenizer of min(vocabSize, 56) tokens (tinyTokenizerFiles).
   */
  readonly tokenizerFrom?: string;
}

/**
 * A character-level BPE tokenizer.json (id 0 `<unk>`, then space, a-z, A-Z, '.', ',') with `vocabSize` ids at most,
 * and its tokenizer_config.json: files @huggingface/transformers loads, for tiny random models the CLI can evaluate.
 */
export function tinyTokenizerFiles(vocabSize: number): { tokenizer: Record<string, unknown>; tokenizerConfig: Record<string, unknown> } {
  const chars = ['<unk>', ...' abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,'].slice(0, vocabSize);
  return {
    tokenizer: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [{ id: 0, content: '<unk>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab: Object.fromEntries(chars.map((c, i) => [c, i])), merges: [] },
    },
    tokenizerConfig: { tokenizer_class: 'PreTrainedTokenizerFast', unk_token: '<unk>' },
  };
}

/**
 * A tiny random decoder (randomDecoderSource) written as a Hugging Face directory: one model.safetensors, config.json,
 * generation_config.json and tokenizer files (a tiny character-level one, or `tokenizerFrom`'s). Untied configs get
 * their own lm_head.
 */
export async function writeModelDirectory(dir: string, config: DecoderConfig, seedOrOptions: number | ModelDirectoryOptions = {}): Promise<void> {
  const options = typeof seedOrOptions === 'number' ? { seed: seedOrOptions } : seedOrOptions;
  const seed = options.seed ?? 1;
  const dtype = options.dtype ?? 'F32';
  mkdirSync(dir, { recursive: true });
  const source = randomDecoderSource(config, seed);
  const layout = decoderLayout(config, { has: () => false });
  const tensors = [];
  for (const [name, shape] of expectedShapes(config, layout)) {
    const { data } = await source.read(name);
    tensors.push({ name, dtype, shape, data });
  }
  // randomDecoderSource ties the embeddings; an untied model gets its own lm_head.
  if (!config.tieWordEmbeddings) {
    const random = seededNormal(seed + 1000);
    const data = Float32Array.from({ length: config.vocabSize * config.hiddenSize }, () => random() / Math.sqrt(config.hiddenSize));
    tensors.push({ name: LM_HEAD, dtype, shape: [config.vocabSize, config.hiddenSize], data });
  }
  await writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(huggingFaceConfig(config), null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: config.bosTokenId, eos_token_id: config.eosTokenId }));
  if (options.tokenizerFrom) {
    for (const name of ['tokenizer.json', 'tokenizer_config.json']) {
      if (existsSync(join(options.tokenizerFrom, name))) copyFileSync(join(options.tokenizerFrom, name), join(dir, name));
    }
  } else {
    const { tokenizer, tokenizerConfig } = tinyTokenizerFiles(config.vocabSize);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
  }
}
