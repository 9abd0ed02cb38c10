import { InvalidDataError, InvalidOptionError } from '@layerquant/core';
import { gguf, type GgufValue } from './gguf-format.js';

// A Hugging Face tokenizer.json as llama.cpp's GGUF metadata (convert_hf_to_gguf.py's _set_vocab_gpt2 and
// gguf-py's SpecialVocab): byte-level BPE only. SentencePiece-style tokenizers (byte_fallback BPE, Unigram,
// tokenizer.model) are refused with an error saying so.

/** llama.cpp's token types (llama_token_type). */
export const TOKEN_TYPES = Object.freeze({ NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 });

/**
 * Byte-level pre-tokenizer regexes of tokenizer.json and the name llama.cpp gives each (its tokenizer.ggml.pre):
 * llama.cpp picks the pre-tokenizer by this name, so a file with the wrong one tokenizes text differently.
 */
const PRE_TOKENIZER_REGEXES: ReadonlyArray<readonly [string, string]> = Object.freeze([
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 'llama-bpe'],
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 'qwen2'],
]);
export const KNOWN_PRE_TOKENIZERS: readonly string[] = Object.freeze(['gpt-2', ...PRE_TOKENIZER_REGEXES.map(([, name]) => name)]);

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** llama.cpp's pre-tokenizer name for a tokenizer.json's pre_tokenizer, or undefined where none is known. */
export function preTokenizerName(preTokenizer: unknown): string | undefined {
  if (!isObject(preTokenizer)) return undefined;
  if (preTokenizer.type === 'ByteLevel') return preTokenizer.use_regex === false ? undefined : 'gpt-2';
  if (preTokenizer.type !== 'Sequence' || !Array.isArray(preTokenizer.pretokenizers)) return undefined;
  const steps = preTokenizer.pretokenizers.filter(isObject);
  const byteLevel = steps.find((s) => s.type === 'ByteLevel');
  const splits = steps.filter((s) => s.type === 'Split');
  if (!byteLevel || byteLevel.use_regex !== false || splits.length !== 1 || steps.length !== 2) return undefined;
  const pattern = isObject(splits[0]!.pattern) ? splits[0]!.pattern.Regex : undefined;
  return PRE_TOKENIZER_REGEXES.find(([regex]) => regex === pattern)?.[1];
}

function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.content === 'string') return value.content;
  return undefined;
}

function looksSpecial(token: string): boolean {
  return (token.startsWith('<|') && token.endsWith('|>')) || (token.startsWith('<unused') && token.endsWith('>')) || ['<pad>', '<mask>'].includes(token);
}

export interface TokenizerFiles {
  /** tokenizer.json, parsed. */
  readonly tokenizer: unknown;
  /** tokenizer_config.json, parsed (absent: none). */
  readonly tokenizerConfig?: unknown;
  /** chat_template.jinja's text, where the directory has one. */
  readonly chatTemplate?: string;
  /** Where tokenizer.json came from, for messages. */
  readonly file: string;
}

export interface TokenizerMetadataOptions {
  /** The model's vocab_size: the token list is padded to it with `[PAD<i>]` (UNUSED), as the converter does. */
  readonly vocabSize: number;
  readonly bosTokenId?: number | undefined;
  readonly eosTokenId?: number | undefined;
  /** llama.cpp's pre-tokenizer name, where tokenizer.json's is not one layerquant recognizes. */
  readonly pre?: string;
}

/** tokenizer.ggml.* and tokenizer.chat_template entries for a byte-level BPE tokenizer. */
export function tokenizerMetadata(files: TokenizerFiles, options: TokenizerMetadataOptions): Map<string, GgufValue> {
  const { file } = files;
  const tokenizer = files.tokenizer;
  if (!isObject(tokenizer) || !isObject(tokenizer.model)) throw new InvalidDataError(file, 'has no "model" object; it is not a Hugging Face tokenizer.json');
  const model = tokenizer.model;
  if (model.type !== 'BPE' || model.byte_fallback === true) {
    throw new InvalidDataError(
      file,
      `is a ${model.type === 'BPE' ? 'byte-fallback BPE (SentencePiece-style)' : String(model.type)} tokenizer; the GGUF export writes byte-level BPE tokenizers (GPT-2, Llama 3, Qwen2 style) only, so this model cannot be exported to GGUF by layerquant yet (llama.cpp's convert_hf_to_gguf.py converts it)`,
    );
  }
  const pre = options.pre ?? preTokenizerName(tokenizer.pre_tokenizer);
  if (!pre) {
    throw new InvalidDataError(
      file,
      `has a pre_tokenizer (${JSON.stringify(tokenizer.pre_tokenizer)?.slice(0, 120)}) that layerquant does not map to one of llama.cpp's (${KNOWN_PRE_TOKENIZERS.join(', ')}); pass the pre-tokenizer name llama.cpp uses for this model (tokenizerPre / --tokenizer-pre)`,
    );
  }
  if (!isObject(model.vocab)) throw new InvalidDataError(file, 'model.vocab is not an object of token -> id');
  const size = options.vocabSize;
  const tokens: Array<string | undefined> = new Array(size).fill(undefined);
  const types = new Array<number>(size).fill(TOKEN_TYPES.NORMAL);
  for (const [token, id] of Object.entries(model.vocab)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new InvalidDataError(file, `token ${JSON.stringify(token)} has id ${String(id)}`);
    if (id >= size) throw new InvalidDataError(file, `token ${JSON.stringify(token)} has id ${id}, beyond vocab_size ${size} of config.json`);
    tokens[id] = token;
  }
  const added = Array.isArray(tokenizer.added_tokens) ? tokenizer.added_tokens.filter(isObject) : [];
  for (const t of added) {
    if (typeof t.id !== 'number' || typeof t.content !== 'string') continue;
    if (t.id >= size) throw new InvalidDataError(file, `added token ${JSON.stringify(t.content)} has id ${t.id}, beyond vocab_size ${size} of config.json`);
    tokens[t.id] = t.content;
    types[t.id] = t.special === true || looksSpecial(t.content) ? TOKEN_TYPES.CONTROL : TOKEN_TYPES.USER_DEFINED;
  }
  for (let i = 0; i < size; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_TYPES.UNUSED;
    }
  }
  const merges = Array.isArray(model.merges) ? model.merges : [];
  const mergeStrings = merges.map((m, i) => {
    if (typeof m === 'string') return m;
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return `${m[0]} ${m[1]}`;
    throw new InvalidDataError(file, `merge ${i} is ${JSON.stringify(m)}, neither "a b" nor ["a", "b"]`);
  });
  const out = new Map<string, GgufValue>();
  out.set('tokenizer.ggml.model', gguf.string('gpt2'));
  out.set('tokenizer.ggml.pre', gguf.string(pre));
  out.set('tokenizer.ggml.tokens', gguf.array('STRING', tokens as string[]));
  out.set('tokenizer.ggml.token_type', gguf.array('INT32', types));
  out.set('tokenizer.ggml.merges', gguf.array('STRING', mergeStrings));
  const config = isObject(files.tokenizerConfig) ? files.tokenizerConfig : {};
  const idOf = (key: string, fallback: number | undefined) => {
    const content = tokenContent(config[key]);
    const byContent = content !== undefined ? tokens.indexOf(content) : -1;
    return byContent >= 0 ? byContent : fallback;
  };
  const ids: Array<[string, number | undefined]> = [
    ['bos_token_id', idOf('bos_token', options.bosTokenId)],
    ['eos_token_id', idOf('eos_token', options.eosTokenId)],
    ['unknown_token_id', idOf('unk_token', undefined)],
    ['padding_token_id', idOf('pad_token', undefined)],
  ];
  for (const [key, id] of ids) if (id !== undefined && id >= 0 && id < size) out.set(`tokenizer.ggml.${key}`, gguf.u32(id));
  // layerquant scores text without BOS; a tokenizer that adds one says so in tokenizer_config.json or its post-processor.
  out.set('tokenizer.ggml.add_bos_token', gguf.bool(typeof config.add_bos_token === 'boolean' ? config.add_bos_token : addsBos(tokenizer.post_processor)));
  if (typeof config.add_eos_token === 'boolean') out.set('tokenizer.ggml.add_eos_token', gguf.bool(config.add_eos_token));
  const template = files.chatTemplate ?? chatTemplateOf(config.chat_template, file);
  if (template !== undefined) out.set('tokenizer.chat_template', gguf.string(template));
  return out;
}

/** Whether a tokenizer.json post-processor puts a special token before a single sequence (TemplateProcessing). */
function addsBos(postProcessor: unknown): boolean {
  if (!isObject(postProcessor)) return false;
  if (postProcessor.type === 'Sequence' && Array.isArray(postProcessor.processors)) return postProcessor.processors.some(addsBos);
  if (postProcessor.type !== 'TemplateProcessing' || !Array.isArray(postProcessor.single)) return false;
  const first = postProcessor.single[0];
  return isObject(first) && isObject(first.SpecialToken);
}

function chatTemplateOf(value: unknown, file: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.filter(isObject);
    const chosen = named.find((t) => t.name === 'default') ?? named[0];
    if (chosen && typeof chosen.template === 'string') return chosen.template;
  }
  throw new InvalidOptionError('chat_template', `${file.replace(/tokenizer\.json$/, 'tokenizer_config.json')}: chat_template is neither a string nor a list of {name, template}`);
}
