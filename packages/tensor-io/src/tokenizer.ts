import { InvalidDataError, MissingFileError } from '@layerquant/core';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadDecoderConfig } from './config.js';
import { checkInputFile, pathEntryExists } from './input-file.js';

/** The slice of a tokenizer that layerquant needs. */
export interface Tokenizer {
  /** Token ids of `text`, without special tokens (no BOS), as the perplexity protocols expect. */
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

const TOKENIZER_FILE = 'tokenizer.json';
const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/** A tokenizer file read and parsed here first, so a missing, empty, FIFO or corrupt one is named, not left to the loader. */
async function readJsonObject(file: string, expected: string): Promise<Record<string, unknown>> {
  if (!pathEntryExists(file)) throw new MissingFileError(file, `not found; the model directory needs ${expected} of its Hugging Face checkpoint`);
  checkInputFile(file, expected);
  const text = await readFile(file, 'utf8');
  if (text.trim().length === 0) throw new InvalidDataError(file, `is empty; restore ${expected} of the model`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InvalidDataError(file, `is not valid JSON (${(error as Error).message.slice(0, 120)}); the file is truncated or corrupt, restore ${expected} of the model`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new InvalidDataError(file, `is not a JSON object; restore ${expected} of the model`);
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

export interface TokenizerOptions {
  /**
   * Rows of the model's embedding: a token id at or beyond it is refused. Default: `vocab_size` of the directory's
   * config.json (validated), where there is one.
   */
  readonly vocabSize?: number;
}

/**
 * The checks loadTokenizer makes before the library sees the files, for commands that copy a tokenizer without
 * running it (export): tokenizer.json and tokenizer_config.json present, regular files, JSON objects, tokenizer.json
 * with a vocabulary whose every id (added tokens included) is a row of the embedding.
 */
export async function checkTokenizerFiles(dir: string, options: TokenizerOptions = {}): Promise<void> {
  const absolute = resolve(dir);
  const file = join(absolute, TOKENIZER_FILE);
  const json = await readJsonObject(file, 'the tokenizer.json (and tokenizer_config.json)');
  await readJsonObject(join(absolute, TOKENIZER_CONFIG_FILE), 'the tokenizer_config.json');
  const vocabSize = options.vocabSize ?? (existsSync(join(absolute, 'config.json')) ? (await loadDecoderConfig(absolute)).vocabSize : undefined);
  const largest = largestTokenId(json, file);
  if (vocabSize !== undefined && largest.id >= vocabSize) {
    throw new InvalidDataError(
      file,
      `token ${JSON.stringify(largest.token).slice(0, 40)} has id ${largest.id}, but the model has ${vocabSize} embedding rows (vocab_size in config.json); the tokenizer belongs to another model, use the model's own tokenizer files`,
    );
  }
}

/**
 * Loads the tokenizer of a model directory with @huggingface/transformers' AutoTokenizer, from local files only
 * (never the hub). tokenizer.json and tokenizer_config.json are read and checked here first (present, regular files,
 * JSON objects, every token id a row of the embedding); anything the library still refuses is an InvalidDataError
 * naming tokenizer.json. The library is imported on first use: it is large and not every command needs it.
 */
export async function loadTokenizer(dir: string, options: TokenizerOptions = {}): Promise<Tokenizer> {
  const absolute = resolve(dir);
  const file = join(absolute, TOKENIZER_FILE);
  await checkTokenizerFiles(absolute, options);
  const { AutoTokenizer } = await import('@huggingface/transformers');
  let tokenizer: Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>>;
  try {
    tokenizer = await AutoTokenizer.from_pretrained(absolute, { local_files_only: true });
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error)).split('\n')[0]!.slice(0, 160);
    throw new InvalidDataError(file, `the tokenizer cannot be loaded (${reason}); restore the model's tokenizer.json and tokenizer_config.json`, { cause: error });
  }
  return {
    encode: (text) => tokenizer.encode(text, { add_special_tokens: false }),
    decode: (ids) => tokenizer.decode([...ids], { skip_special_tokens: false }),
  };
}
