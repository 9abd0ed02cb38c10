import { InvalidDataError, UnsupportedArchitectureError } from '@layerquant/core';
import { brownTestPath, referenceTorchPath, shippedModelDir } from '@layerquant/fixtures';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadDecoderConfig, loadTokenizer, parseDecoderConfig } from './index.js';

const llama = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 64,
  intermediate_size: 160,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 100,
  rms_norm_eps: 1e-5,
};

describe('DecoderConfig from config.json', () => {
  it('reads the shipped model (rope_parameters.rope_theta form)', async () => {
    const config = await loadDecoderConfig(shippedModelDir);
    expect(config).toMatchObject({
      architecture: 'LlamaForCausalLM',
      hiddenSize: 256,
      numLayers: 32,
      numHeads: 4,
      numKeyValueHeads: 2,
      headDim: 64,
      intermediateSize: 640,
      vocabSize: 8192,
      ropeTheta: 10000,
      tieWordEmbeddings: false,
      attentionBias: false,
      ropeScaling: undefined,
    });
  });
  it('reads the rope_theta form, HF defaults and Llama 3.1 rope scaling', () => {
    const config = parseDecoderConfig({
      ...llama,
      rope_theta: 500000,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
      tie_word_embeddings: true,
    });
    expect(config.ropeTheta).toBe(500000);
    expect(config.headDim).toBe(16);
    expect(config.tieWordEmbeddings).toBe(true);
    expect(config.ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  });
  it('gives Qwen2 its q/k/v biases and knows Mistral', () => {
    expect(parseDecoderConfig({ ...llama, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }).attentionBias).toBe(true);
    expect(parseDecoderConfig({ ...llama, architectures: ['MistralForCausalLM'], model_type: 'mistral' }).modelType).toBe('mistral');
  });
  it('rejects an unsupported architecture and an incomplete config by name', () => {
    expect(() => parseDecoderConfig({ ...llama, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }, '/m/config.json')).toThrow(UnsupportedArchitectureError);
    expect(() => parseDecoderConfig({ ...llama, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }, '/m/config.json')).toThrow(/\/m\/config\.json.*"GPT2LMHeadModel"/);
    const { hidden_size: _, ...incomplete } = llama;
    expect(() => parseDecoderConfig(incomplete, 'x/config.json')).toThrow(InvalidDataError);
    expect(() => parseDecoderConfig(incomplete, 'x/config.json')).toThrow(/"hidden_size"/);
  });
});

describe('tokenizer (AutoTokenizer, local files only)', () => {
  const reference = JSON.parse(readFileSync(referenceTorchPath, 'utf8')) as { probe_ids: number[]; token_counts: Record<string, number> };
  it('encodes brown-test.txt to 159,079 tokens and the probe sentence to probe_ids', async () => {
    const tokenizer = await loadTokenizer(shippedModelDir);
    expect(tokenizer.encode(readFileSync(brownTestPath, 'utf8')).length).toBe(reference.token_counts['brown-test']);
    expect(tokenizer.encode('The jury said it did find that many of the laws are outmoded.')).toEqual(reference.probe_ids);
  });
  it('names the missing tokenizer file', async () => {
    await expect(loadTokenizer('/nonexistent-model')).rejects.toThrow(/\/nonexistent-model\/tokenizer\.json/);
  });
});
