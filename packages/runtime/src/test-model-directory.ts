// Test helper: a tiny random decoder (the test models) written as a Hugging Face directory on disk.
import type { DecoderConfig } from '@layerquant/core';
import { LM_HEAD, decoderLayout, expectedShapes } from '@layerquant/core';
import { randomDecoderSource, seededNormal } from './test-models.js';
import { writeSafetensors } from '@layerquant/tensor-io';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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

export async function writeModelDirectory(dir: string, config: DecoderConfig, seed: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const source = randomDecoderSource(config, seed);
  const layout = decoderLayout(config, { has: () => false });
  const tensors = [];
  for (const [name, shape] of expectedShapes(config, layout)) {
    const { data } = await source.read(name);
    tensors.push({ name, dtype: 'F32' as const, shape, data });
  }
  // randomDecoderSource ties the embeddings; an untied model gets its own lm_head.
  if (!config.tieWordEmbeddings) {
    const random = seededNormal(seed + 1000);
    const data = Float32Array.from({ length: config.vocabSize * config.hiddenSize }, () => random() / Math.sqrt(config.hiddenSize));
    tensors.push({ name: LM_HEAD, dtype: 'F32' as const, shape: [config.vocabSize, config.hiddenSize], data });
  }
  await writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(huggingFaceConfig(config), null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: config.bosTokenId, eos_token_id: config.eosTokenId }));
}
