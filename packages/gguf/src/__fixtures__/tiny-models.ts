// Test helpers: tiny random Llama / Qwen2 / Mistral checkpoints (runtime's test models) with a small byte-level BPE
// tokenizer, so llama.cpp loads their GGUF exports. Rows of 256 values hold every k-quant block.
import { EMBED_TOKENS, LM_HEAD, type DecoderConfig } from '@layerquant/core';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { openCheckpoint, writeSafetensors } from '@layerquant/tensor-io';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** GPT-2's byte -> printable character map (bytes_to_unicode). */
function byteCharacters(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const chars: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) chars[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  return chars;
}

const MERGE_PAIRS = ['Ġ t', 'h e', 'Ġ a', 'i n', 'Ġt he', 'e r', 'o n', 'Ġ s', 'e d', 'Ġ w', 'r e', 'a t', 'Ġ o', 'n d', 'i s', 'Ġ c', 'e n', 'Ġ b', 'o r', 'Ġ f', 'a n', 'e s', 'Ġ p', 'Ġ m', 'a r', 'Ġ d', 'l l', 'Ġ h', 'o u', 'i t', 'Ġo f', 'Ġ in', 'a l', 'Ġa nd', 'Ġ l', 'l e', 'i c', 'Ġ n', 'o m', 'Ġ th', 'a s', 'Ġt o', 'i on', 'o w', 'Ġ y', 'l y', 'Ġ g'];

/** A byte-level BPE tokenizer.json of exactly `vocabSize` tokens: <|endoftext|>, the 256 bytes, then merges. */
export function byteLevelTokenizer(vocabSize: number): { tokenizer: unknown; tokenizerConfig: unknown } {
  const vocab: Record<string, number> = { '<|endoftext|>': 0 };
  for (const c of byteCharacters()) vocab[c] = Object.keys(vocab).length;
  const merges: string[] = [];
  for (const pair of MERGE_PAIRS) {
    if (Object.keys(vocab).length >= vocabSize) break;
    const [a, b] = pair.split(' ') as [string, string];
    if (!(a in vocab) || !(b in vocab) || a + b in vocab) continue;
    vocab[a + b] = Object.keys(vocab).length;
    merges.push(pair);
  }
  if (Object.keys(vocab).length !== vocabSize) throw new Error(`byteLevelTokenizer: cannot make ${vocabSize} tokens (${Object.keys(vocab).length})`);
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    tokenizer: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [{ id: 0, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
      normalizer: null,
      pre_tokenizer: byteLevel,
      post_processor: byteLevel,
      decoder: byteLevel,
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
    },
    tokenizerConfig: { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', model_max_length: 1024, tokenizer_class: 'PreTrainedTokenizerFast', chat_template: "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}" },
  };
}

export const TINY_VOCAB = 300;

/** The three architectures of the issue, at a size every GGUF type can hold. */
export const TINY_CONFIGS: Readonly<Record<string, DecoderConfig>> = Object.freeze({
  llama: tinyConfig({ hiddenSize: 256, intermediateSize: 256, numLayers: 2, numHeads: 4, numKeyValueHeads: 2, headDim: 64, vocabSize: TINY_VOCAB, maxPositionEmbeddings: 256, eosTokenId: TINY_VOCAB - 1 }),
  qwen2: tinyConfig({
    architecture: 'Qwen2ForCausalLM', modelType: 'qwen2', hiddenSize: 256, intermediateSize: 256, numLayers: 2, numHeads: 4, numKeyValueHeads: 2, headDim: 64,
    vocabSize: TINY_VOCAB, maxPositionEmbeddings: 256, tieWordEmbeddings: true, attentionBias: true, ropeTheta: 1_000_000, rmsNormEps: 1e-6, eosTokenId: TINY_VOCAB - 1,
  }),
  mistral: tinyConfig({ architecture: 'MistralForCausalLM', modelType: 'mistral', hiddenSize: 256, intermediateSize: 256, numLayers: 2, numHeads: 4, numKeyValueHeads: 1, headDim: 64, vocabSize: TINY_VOCAB, maxPositionEmbeddings: 256, eosTokenId: TINY_VOCAB - 1 }),
});

/** Standard deviation of the tiny models' logits: small, as a trained model's are on most of the vocabulary. */
const LOGIT_SCALE = 0.25;

/**
 * A tiny random checkpoint with config.json, model.safetensors and the byte-level tokenizer. The output matrix
 * (lm_head, or the embeddings where tied) is scaled so that logits have a standard deviation of LOGIT_SCALE: with
 * runtime's random weights they would have 1 (untied) or sqrt(hidden) (tied), a model so confidently wrong that
 * float32 rounding alone moves its perplexity.
 */
export async function writeTinyModel(dir: string, config: DecoderConfig, seed: number): Promise<void> {
  await writeModelDirectory(dir, config, seed);
  const file = join(dir, 'model.safetensors');
  const checkpoint = await openCheckpoint(file);
  const tensors = [];
  const output = config.tieWordEmbeddings ? EMBED_TOKENS : LM_HEAD;
  const scale = LOGIT_SCALE / (config.tieWordEmbeddings ? Math.sqrt(config.hiddenSize) : 1);
  for (const info of checkpoint.tensors) {
    const { data } = await checkpoint.read(info.name);
    if (info.name === output) for (let i = 0; i < data.length; i++) data[i] = data[i]! * scale;
    tensors.push({ name: info.name, dtype: 'F32' as const, shape: info.shape, data });
  }
  await checkpoint.close();
  await writeSafetensors(file, tensors, { format: 'pt' });
  const { tokenizer, tokenizerConfig } = byteLevelTokenizer(config.vocabSize);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
}
