import { InvalidDataError, MissingFileError } from '@layerquant/core';
import { Tokenizer as TokenizerEngine } from '@huggingface/tokenizers';
import { filePath, readDecoderConfig, type ModelFiles } from './model-files.js';

/** The slice of a tokenizer that layerquant needs. */
export interface Tokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

export interface TokenizerOptions {
  /**
   * Rows of the model's embedding: a token id at or beyond it is refused. Default: `vocab_size` of the directory's
   * config.json (validated), where there is one.
   */
  readonly vocabSize?: number;
}

/**
 * A model's tokenizer from its tokenizer.json (and tokenizer_config.json), run by @huggingface/tokenizers: the
 * tokenizer engine @huggingface/transformers wraps (`PreTrainedTokenizer.encode` is `Tokenizer.encode(...).ids`), so
 * the ids are transformers.js' (tested on the whole of brown-test), without its model runtime and onnxruntime.
 */
export function createTokenizer(tokenizerJson: unknown, tokenizerConfig: unknown, source = TOKENIZER_FILE): Tokenizer {
  if (typeof tokenizerJson !== 'object' || tokenizerJson === null) throw new InvalidDataError(source, 'is not a JSON object');
  let engine: TokenizerEngine;
  try {
    engine = new TokenizerEngine(tokenizerJson as object, (tokenizerConfig ?? {}) as object);
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error)).split('\n')[0]!.slice(0, 160);
    throw new InvalidDataError(source, `the tokenizer cannot be loaded (${reason}); restore the model's tokenizer.json and tokenizer_config.json`, { cause: error });
  }
  return {
    encode: (text) => engine.encode(text, { add_special_tokens: false }).ids,
    decode: (ids) => engine.decode([...ids], { skip_special_tokens: false }),
  };
}

/** A tokenizer file read and parsed here first, so a missing, empty or corrupt one is named, not left to the engine. */
async function readJsonObject(files: ModelFiles, path: string, expected: string): Promise<Record<string, unknown>> {
  const where = filePath(files, path);
  if (!files.has(path)) throw new MissingFileError(where, `not found; the model directory needs ${expected} of its Hugging Face checkpoint`);
  const text = await files.text(path);
  if (text.trim().length === 0) throw new InvalidDataError(where, `is empty; restore ${expected} of the model`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InvalidDataError(where, `is not valid JSON (${(error as Error).message.slice(0, 120)}); the file is truncated or corrupt, restore ${expected} of the model`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new InvalidDataError(where, `is not a JSON object; restore ${expected} of the model`);
  return json as Record<string, unknown>;
}

/**
 * The largest token id a tokenizer.json can produce (its vocabulary and added tokens) and the token holding it. Every
 * id it hands the model must be a row of the embedding: a larger one would read past it, or evaluate a different text.
 */
export function largestTokenId(json: Record<string, unknown>, file = TOKENIZER_FILE): { id: number; token: string } {
  let best = { id: -1, token: '' };
  const see = (id: unknown, token: string) => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new InvalidDataError(file, `token ${JSON.stringify(token).slice(0, 40)} has id ${JSON.stringify(id)}, not an integer >= 0; the tokenizer is corrupt`);
    if (id > best.id) best = { id, token };
  };
  const model = json.model as Record<string, unknown> | undefined;
  if (!model || typeof model !== 'object') throw new InvalidDataError(file, 'has no "model" object (the vocabulary); it is not a Hugging Face tokenizer.json');
  const vocab = model.vocab;
  if (Array.isArray(vocab)) vocab.forEach((entry, i) => see(i, Array.isArray(entry) ? String(entry[0]) : String(i))); // Unigram: [piece, score] by id
  else if (vocab && typeof vocab === 'object') for (const [token, id] of Object.entries(vocab)) see(id, token);
  else throw new InvalidDataError(file, 'has no "model.vocab"; it is not a Hugging Face tokenizer.json');
  const added = json.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw new InvalidDataError(file, '"added_tokens" is not a list');
    for (const entry of added as Array<Record<string, unknown>>) see(entry?.id, String(entry?.content ?? ''));
  }
  return best;
}

/**
 * Reads and checks a model's tokenizer files: tokenizer.json and tokenizer_config.json present, JSON objects,
 * tokenizer.json with a vocabulary whose every id (added tokens included) is a row of the embedding. Returns both.
 */
export async function readTokenizerFiles(files: ModelFiles, options: TokenizerOptions = {}): Promise<{ tokenizer: Record<string, unknown>; config: Record<string, unknown> }> {
  const tokenizer = await readJsonObject(files, TOKENIZER_FILE, 'the tokenizer.json (and tokenizer_config.json)');
  const config = await readJsonObject(files, TOKENIZER_CONFIG_FILE, 'the tokenizer_config.json');
  const vocabSize = options.vocabSize ?? (files.has('config.json') ? (await readDecoderConfig(files)).vocabSize : undefined);
  const where = filePath(files, TOKENIZER_FILE);
  const largest = largestTokenId(tokenizer, where);
  if (vocabSize !== undefined && largest.id >= vocabSize) {
    throw new InvalidDataError(
      where,
      `token ${JSON.stringify(largest.token).slice(0, 40)} has id ${largest.id}, but the model has ${vocabSize} embedding rows (vocab_size in config.json); the tokenizer belongs to another model, use the model's own tokenizer files`,
    );
  }
  return { tokenizer, config };
}

/** The tokenizer of a model directory, its files checked first (readTokenizerFiles). */
export async function readTokenizer(files: ModelFiles, options: TokenizerOptions = {}): Promise<Tokenizer> {
  const { tokenizer, config } = await readTokenizerFiles(files, options);
  return createTokenizer(tokenizer, config, filePath(files, TOKENIZER_FILE));
}
