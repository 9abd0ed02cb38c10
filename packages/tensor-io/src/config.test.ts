import { InvalidDataError, UnsupportedArchitectureError, checkContextLength } from '@layerquant/core';
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

describe('config.json fields are validated, never defaulted or ignored when they lie', () => {
  // Each case: a field the runtime uses with a wrong type or range, or a field that changes the math layerquant does
  // not implement. Every one must fail naming the file and the field (before: NaN perplexity, SiLU for gelu, a
  // silent fallback to the default).
  const refused: Array<[string, Record<string, unknown>, RegExp]> = [
    ['rms_norm_eps -1', { rms_norm_eps: -1 }, /field "rms_norm_eps" is -1; it must be greater than 0/],
    ['rms_norm_eps 0', { rms_norm_eps: 0 }, /field "rms_norm_eps" is 0/],
    ['rope_theta 0', { rope_theta: 0 }, /field "rope_theta" is 0; it must be greater than 0/],
    ['rope_theta negative', { rope_theta: -5 }, /field "rope_theta" is -5/],
    ['rope_theta a string', { rope_theta: '500000' }, /field "rope_theta" is "500000" \(a string\), not a finite number/],
    ['rope_parameters.rope_theta 0', { rope_parameters: { rope_type: 'default', rope_theta: 0 } }, /field "rope_parameters\.rope_theta" is 0/],
    ['rope factor 0', { rope_scaling: { rope_type: 'linear', factor: 0 } }, /field "rope_scaling\.factor" is 0/],
    ['rope factor missing', { rope_scaling: { rope_type: 'linear' } }, /field "rope_scaling\.factor" is missing/],
    ['llama3 rope with equal band factors', { rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, /field "rope_scaling\.high_freq_factor" is 4; it must be greater than low_freq_factor 4/],
    ['rope type yarn', { rope_scaling: { rope_type: 'yarn', factor: 4 } }, /field "rope_scaling\.rope_type" is "yarn"/],
    ['rope_scaling a string', { rope_scaling: 'linear' }, /field "rope_scaling" is "linear" \(a string\), not an object/],
    ['hidden_act gelu', { hidden_act: 'gelu' }, /field "hidden_act" is "gelu" \(a string\); layerquant runs the SiLU/],
    ['hidden_activation gelu_pytorch_tanh', { hidden_activation: 'gelu_pytorch_tanh' }, /field "hidden_activation"/],
    ['hidden_size a string', { hidden_size: '64' }, /field "hidden_size" is "64" \(a string\)/],
    ['hidden_size fractional', { hidden_size: 64.5 }, /field "hidden_size" is 64\.5, not an integer/],
    ['num_hidden_layers 0', { num_hidden_layers: 0 }, /field "num_hidden_layers" is 0; it must be at least 1/],
    ['vocab_size negative', { vocab_size: -100 }, /field "vocab_size" is -100/],
    ['num_key_value_heads a string', { num_key_value_heads: 'two' }, /field "num_key_value_heads"/],
    ['head_dim odd', { head_dim: 15 }, /field "head_dim" is 15; rotary embeddings need an even head dimension/],
    ['max_position_embeddings 0', { max_position_embeddings: 0 }, /field "max_position_embeddings" is 0/],
    ['tie_word_embeddings a string', { tie_word_embeddings: 'true' }, /field "tie_word_embeddings" is "true" \(a string\), not true or false/],
    ['attention_bias a number', { attention_bias: 1 }, /field "attention_bias" is 1, not true or false/],
    ['eos_token_id negative', { eos_token_id: -1 }, /field "eos_token_id" is -1; a token id is an integer >= 0/],
    ['layer_types with an unknown kind', { layer_types: ['full_attention', 'chunked_attention'] }, /field "layer_types" holds "chunked_attention"/],
    ['sliding layer_types without a window', { layer_types: ['sliding_attention', 'full_attention'] }, /field "sliding_window" is missing/],
    ['quantization_config', { quantization_config: { quant_method: 'gptq', bits: 4 } }, /field "quantization_config" is present: the checkpoint was quantized by another tool/],
    ['final_logit_softcapping', { final_logit_softcapping: 30 }, /field "final_logit_softcapping"/],
    ['partial_rotary_factor 0.5', { partial_rotary_factor: 0.5 }, /field "partial_rotary_factor" is 0\.5/],
  ];
  for (const [label, edit, message] of refused) {
    it(`refuses ${label}`, () => {
      expect(() => parseDecoderConfig({ ...llama, ...edit }, '/m/config.json')).toThrow(InvalidDataError);
      expect(() => parseDecoderConfig({ ...llama, ...edit }, '/m/config.json')).toThrow(new RegExp(`^/m/config\\.json: ${message.source}`));
    });
  }

  it('accepts what real checkpoints hold: swish, null rope_scaling and ids, an eos list, full-attention layer_types', () => {
    const config = parseDecoderConfig({ ...llama, hidden_act: 'swish', rope_scaling: null, pad_token_id: null, bos_token_id: null, eos_token_id: [5, 7], layer_types: ['full_attention', 'full_attention'] });
    expect(config.eosTokenId).toBe(5);
    expect(config.bosTokenId).toBeUndefined();
    expect(config.slidingWindow).toBeUndefined();
  });

  it('records a sliding window where the config asks for one (Mistral, Qwen2 use_sliding_window, layer_types), and none where it does not', () => {
    const mistral = { ...llama, architectures: ['MistralForCausalLM'], model_type: 'mistral' };
    const qwen2 = { ...llama, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' };
    expect(parseDecoderConfig({ ...mistral, sliding_window: 4096 }).slidingWindow).toBe(4096);
    expect(parseDecoderConfig({ ...mistral, sliding_window: null }).slidingWindow).toBeUndefined();
    // Qwen2 configs carry sliding_window with use_sliding_window false: full attention.
    expect(parseDecoderConfig({ ...qwen2, sliding_window: 32768, use_sliding_window: false }).slidingWindow).toBeUndefined();
    expect(parseDecoderConfig({ ...qwen2, sliding_window: 256, use_sliding_window: true }).slidingWindow).toBe(256);
    expect(parseDecoderConfig({ ...llama, sliding_window: 64, layer_types: ['full_attention', 'sliding_attention'] }).slidingWindow).toBe(64);
    expect(parseDecoderConfig({ ...llama, sliding_window: 64, layer_types: ['full_attention', 'full_attention'] }).slidingWindow).toBeUndefined();
  });

  it('refuses a context beyond the sliding window always, beyond max_position_embeddings unless allowed', () => {
    const config = parseDecoderConfig({ ...llama, architectures: ['MistralForCausalLM'], model_type: 'mistral', sliding_window: 128, max_position_embeddings: 4096 });
    expect(() => checkContextLength(128, config)).not.toThrow();
    expect(() => checkContextLength(129, config, '--seqlen', true)).toThrow(/option "--seqlen": 129 tokens is more than the model's sliding_window 128/);
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
