import { LayerquantError, seededRandom, type DecoderConfig } from '@layerquant/core';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkTokenizerFiles, parseDecoderConfig } from './index.js';

/**
 * Seeded fuzzing of config.json and tokenizer files (issue 27), like the safetensors fuzz: each mutated input is also
 * judged by an oracle written here from the rules (independently of the parser); where the oracle accepts, the reader
 * must return exactly the values the oracle reads, where it refuses, the reader must throw a LayerquantError. Nothing
 * may throw anything else, hang, or accept what the rules refuse.
 */

type Json = Record<string, unknown>;
const SUPPORTED: Record<string, string> = { LlamaForCausalLM: 'llama', MistralForCausalLM: 'mistral', Qwen2ForCausalLM: 'qwen2' };

// ---- the oracle ------------------------------------------------------------------------------------------------

class Refused extends Error {}
const refuse = (why: string): never => {
  throw new Refused(why);
};
const present = (v: unknown) => v !== undefined && v !== null;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const posInt = (c: Json, k: string, required: boolean): number | undefined => {
  if (!present(c[k])) return required ? refuse(`${k} missing`) : undefined;
  return isNum(c[k]) && Number.isInteger(c[k]) && (c[k] as number) >= 1 ? (c[k] as number) : refuse(`${k} not a positive integer`);
};
const bool = (c: Json, k: string): boolean | undefined => (!present(c[k]) ? undefined : typeof c[k] === 'boolean' ? (c[k] as boolean) : refuse(`${k} not boolean`));

/** What a config.json means by the rules: the fields the decoder reads, or Refused. */
function oracle(c: unknown): Partial<DecoderConfig> {
  if (typeof c !== 'object' || c === null || Array.isArray(c)) return refuse('not an object');
  const j = c as Json;
  if (present(j.model_type) && typeof j.model_type !== 'string') refuse('model_type');
  if (present(j.architectures) && !Array.isArray(j.architectures)) refuse('architectures');
  const names = Array.isArray(j.architectures) ? j.architectures.filter((a): a is string => typeof a === 'string') : [];
  const byType = Object.keys(SUPPORTED).find((a) => SUPPORTED[a] === j.model_type);
  const architecture = names.length > 0 ? names.find((a) => a in SUPPORTED) : byType;
  if (!architecture) refuse('architecture');
  if (typeof j.model_type === 'string' && j.model_type !== '' && SUPPORTED[architecture!] !== j.model_type) refuse('model_type mismatch');
  for (const k of ['hidden_act', 'hidden_activation']) if (present(j[k]) && j[k] !== 'silu' && j[k] !== 'swish') refuse(k);
  if (present(j.quantization_config)) refuse('quantized');
  const hidden = posInt(j, 'hidden_size', true)!;
  const heads = posInt(j, 'num_attention_heads', true)!;
  if (present(j.rope_theta) && !(isNum(j.rope_theta) && j.rope_theta > 0)) refuse('rope_theta');
  const kv = posInt(j, 'num_key_value_heads', false) ?? heads;
  const headDim = posInt(j, 'head_dim', false) ?? hidden / heads;
  const vocab = posInt(j, 'vocab_size', true)!;
  const ffn = posInt(j, 'intermediate_size', true)!;
  const layers = posInt(j, 'num_hidden_layers', true)!;
  if (present(j.rms_norm_eps) && !(isNum(j.rms_norm_eps) && j.rms_norm_eps > 0 && j.rms_norm_eps <= 1)) refuse('eps');
  const positions = posInt(j, 'max_position_embeddings', false) ?? 2048;
  const tie = bool(j, 'tie_word_embeddings') === true;
  const attentionBias = architecture === 'Qwen2ForCausalLM' || bool(j, 'attention_bias') === true;
  const mlpBias = bool(j, 'mlp_bias') === true;
  const id = (k: string): number | undefined => {
    if (!present(j[k])) return undefined;
    const list = Array.isArray(j[k]) ? (j[k] as unknown[]) : [j[k]];
    for (const v of list) if (!(isNum(v) && Number.isInteger(v) && v >= 0)) refuse(k);
    return list[0] as number | undefined;
  };
  const rope = j.rope_scaling;
  if (present(rope)) {
    if (typeof rope !== 'object' || Array.isArray(rope)) refuse('rope_scaling');
    const r = rope as Json;
    const type = r.rope_type ?? r.type ?? 'default';
    const positive = (k: string, required: boolean) => (present(r[k]) ? (isNum(r[k]) && (r[k] as number) > 0 ? (r[k] as number) : refuse(k)) : required ? refuse(k) : undefined);
    if (type === 'linear') positive('factor', true);
    else if (type === 'llama3') {
      positive('factor', true);
      const low = positive('low_freq_factor', true)!;
      const high = positive('high_freq_factor', true)!;
      const original = positive('original_max_position_embeddings', true)!;
      if (!Number.isInteger(original) || !(high > low)) refuse('llama3 bands');
    } else if (type !== 'default') refuse('rope type');
  }
  const bos = id('bos_token_id');
  const eos = id('eos_token_id');
  if (!Number.isInteger(headDim) || heads % kv !== 0 || headDim % 2 !== 0) refuse('heads');
  return { architecture, hiddenSize: hidden, numHeads: heads, numKeyValueHeads: kv, headDim, vocabSize: vocab, intermediateSize: ffn, numLayers: layers, maxPositionEmbeddings: positions, tieWordEmbeddings: tie, attentionBias, mlpBias, bosTokenId: bos, eosTokenId: eos, ...(isNum(j.rope_theta) ? { ropeTheta: j.rope_theta } : {}), ...(isNum(j.rms_norm_eps) ? { rmsNormEps: j.rms_norm_eps } : {}) };
}

// ---- mutations -------------------------------------------------------------------------------------------------

const BASES: Json[] = [
  { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, intermediate_size: 160, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 100, rms_norm_eps: 1e-5, rope_theta: 500000, max_position_embeddings: 2048, tie_word_embeddings: false, hidden_act: 'silu', bos_token_id: 1, eos_token_id: [2, 3] },
  { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 96, intermediate_size: 256, num_hidden_layers: 3, num_attention_heads: 6, num_key_value_heads: 2, vocab_size: 300, rms_norm_eps: 1e-6, rope_theta: 1e6, tie_word_embeddings: true, use_sliding_window: false, sliding_window: 32768, bos_token_id: null },
  { architectures: ['MistralForCausalLM'], model_type: 'mistral', hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, head_dim: 16, vocab_size: 50, sliding_window: null, attention_bias: false, mlp_bias: false },
];
const KEYS = ['rope_scaling', 'architectures', 'model_type', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'vocab_size', 'rms_norm_eps', 'rope_theta', 'max_position_embeddings', 'tie_word_embeddings', 'attention_bias', 'mlp_bias', 'bos_token_id', 'eos_token_id', 'hidden_act', 'quantization_config'];
const VALUES: unknown[] = [
  { rope_type: 'linear', factor: 2 },
  { rope_type: 'linear', factor: 0 },
  { rope_type: 'yarn', factor: 2 },
  { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  { type: 'default' },
  'linear',
  undefined,
  null, 0, -1, 1, 2, 3, 4, 7, 8, 16, 0.5, 1e-5, 2.5, 1e300, -0, '64', 'gelu', 'silu', 'swish', 'llama', true, false, [], [1], ['LlamaForCausalLM'], ['GPT2LMHeadModel'], {}, { quant_method: 'gptq' }];

function mutate(base: Json, random: () => number): Json {
  const config = structuredClone(base);
  const edits = 1 + Math.floor(random() * 3);
  for (let e = 0; e < edits; e++) {
    const key = KEYS[Math.floor(random() * KEYS.length)]!;
    const value = VALUES[Math.floor(random() * VALUES.length)];
    if (value === undefined) delete config[key];
    else config[key] = structuredClone(value);
  }
  return config;
}

describe('config.json fuzz (2,000 seeded mutations of three real-shaped configs)', () => {
  it('accepts exactly what the rules accept, with the values they give, and refuses the rest with a LayerquantError', () => {
    const random = seededRandom(2027);
    let accepted = 0;
    let refused = 0;
    for (let trial = 0; trial < 2000; trial++) {
      const json = mutate(BASES[trial % BASES.length]!, random);
      let expected: Partial<DecoderConfig> | undefined;
      try {
        expected = oracle(json);
      } catch (error) {
        if (!(error instanceof Refused)) throw error;
      }
      let actual: DecoderConfig | undefined;
      let thrown: unknown;
      try {
        actual = parseDecoderConfig(json, 'fuzz/config.json');
      } catch (error) {
        thrown = error;
      }
      const context = `trial ${trial}: ${JSON.stringify(json)}`;
      if (expected) {
        expect(thrown, context).toBeUndefined();
        expect(actual, context).toMatchObject(expected);
        accepted++;
      } else {
        expect(thrown, context).toBeInstanceOf(LayerquantError);
        expect((thrown as Error).message.startsWith('fuzz/config.json'), context).toBe(true);
        refused++;
      }
    }
    // Both sides are exercised: the fuzz is not all refusals.
    expect(accepted).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(200);
  });
});

// ---- tokenizer files --------------------------------------------------------------------------------------------

const root = mkdtempSync(join(tmpdir(), 'lq-tokenizer-fuzz-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A BPE tokenizer.json of `size` single-character tokens (id 0 the added `<unk>`). */
function tokenizer(size: number): Json {
  const chars = ['<unk>', ...'abcdefghijklmnopqrstuvwxyz0123456789'].slice(0, size);
  return { version: '1.0', added_tokens: [{ id: 0, content: '<unk>', special: true }], model: { type: 'BPE', unk_token: '<unk>', vocab: Object.fromEntries(chars.map((c, i) => [c, i])), merges: [] } };
}

/** The oracle for a tokenizer.json text: refused unless a JSON object with a model.vocab whose every id and added token id is an integer in [0, vocab). */
function tokenizerValid(text: string, vocab: number): boolean {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return false;
  }
  if (text.trim() === '' || typeof json !== 'object' || json === null || Array.isArray(json)) return false;
  const model = (json as Json).model as Json | undefined;
  if (!model || typeof model !== 'object') return false;
  const ids: unknown[] = [];
  if (Array.isArray(model.vocab)) model.vocab.forEach((_, i) => ids.push(i));
  else if (model.vocab && typeof model.vocab === 'object') ids.push(...Object.values(model.vocab as Json));
  else return false;
  const added = (json as Json).added_tokens;
  if (present(added)) {
    if (!Array.isArray(added)) return false;
    for (const a of added) ids.push((a as Json | null)?.id);
  }
  return ids.every((id) => isNum(id) && Number.isInteger(id) && id >= 0 && id < vocab);
}

describe('tokenizer files fuzz (400 seeded mutations)', () => {
  it('every mutated tokenizer.json is accepted exactly when the oracle accepts it, else refused with a LayerquantError naming the file', async () => {
    const random = seededRandom(99);
    const dir = join(root, 'model');
    mkdirSync(dir);
    writeFileSync(join(dir, 'tokenizer_config.json'), '{"tokenizer_class": "PreTrainedTokenizerFast"}');
    const vocab = 30;
    let accepted = 0;
    for (let trial = 0; trial < 400; trial++) {
      const json = tokenizer(20 + Math.floor(random() * 17));
      const kind = trial % 5;
      let text: string;
      if (kind === 0) {
        // an id changed to something else
        const entries = Object.keys((json.model as Json).vocab as Json);
        ((json.model as Json).vocab as Json)[entries[Math.floor(random() * entries.length)]!] = VALUES[Math.floor(random() * VALUES.length)];
        text = JSON.stringify(json);
      } else if (kind === 1) {
        (json.added_tokens as Json[]).push({ id: Math.floor(random() * 40) - 2, content: `<x${trial}>` });
        text = JSON.stringify(json);
      } else if (kind === 2) {
        const full = JSON.stringify(json);
        text = full.slice(0, Math.floor(random() * full.length));
      } else if (kind === 3) {
        const full = Buffer.from(JSON.stringify(json));
        for (let k = 0; k < 3; k++) full[Math.floor(random() * full.length)] = Math.floor(random() * 256);
        text = full.toString('latin1');
      } else {
        const key = ['model', 'added_tokens', 'version'][Math.floor(random() * 3)]!;
        json[key] = VALUES[Math.floor(random() * VALUES.length)];
        text = JSON.stringify(json);
      }
      writeFileSync(join(dir, 'tokenizer.json'), text, 'latin1');
      const expected = tokenizerValid(text, vocab);
      const error = await checkTokenizerFiles(dir, { vocabSize: vocab }).then(() => undefined, (e: unknown) => e);
      if (expected) {
        expect(error, `trial ${trial}: ${text.slice(0, 200)}`).toBeUndefined();
        accepted++;
      } else {
        expect(error, `trial ${trial}: ${text.slice(0, 200)}`).toBeInstanceOf(LayerquantError);
        expect((error as Error).message.startsWith(join(dir, 'tokenizer.json'))).toBe(true);
      }
    }
    expect(accepted).toBeGreaterThan(40);
  });
});
