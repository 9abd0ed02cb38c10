import { InvalidDataError, MissingFileError } from '@layerquant/core';
import { Tokenizer as TokenizerEngine } from '@huggingface/tokenizers';
import { filePath, type ModelFiles } from './model-files.js';

/** The slice of a tokenizer that layerquant needs. */
export interface Tokenizer {
  /** Token ids of `text`, without special tokens (no BOS), as the perplexity protocols expect. */
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/**
 * A model's tokenizer from its tokenizer.json (and tokenizer_config.json), run by @huggingface/tokenizers: the
 * tokenizer engine @huggingface/transformers wraps (`PreTrainedTokenizer.encode` is `Tokenizer.encode(...).ids`), so
 * the ids are transformers.js' (tested on the whole of brown-test), without its model runtime and onnxruntime.
 */
export function createTokenizer(tokenizerJson: unknown, tokenizerConfig: unknown, source = 'tokenizer.json'): Tokenizer {
  if (typeof tokenizerJson !== 'object' || tokenizerJson === null) throw new InvalidDataError(source, 'is not a JSON object');
  const engine = new TokenizerEngine(tokenizerJson as object, (tokenizerConfig ?? {}) as object);
  return {
    encode: (text) => engine.encode(text, { add_special_tokens: false }).ids,
    decode: (ids) => engine.decode([...ids], { skip_special_tokens: false }),
  };
}

async function jsonFile(files: ModelFiles, path: string): Promise<unknown> {
  try {
    return JSON.parse(await files.text(path));
  } catch (error) {
    throw new InvalidDataError(filePath(files, path), `is not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
}

/** The tokenizer of a model directory: tokenizer.json, with tokenizer_config.json when there is one. */
export async function readTokenizer(files: ModelFiles): Promise<Tokenizer> {
  if (!files.has('tokenizer.json')) {
    throw new MissingFileError(filePath(files, 'tokenizer.json'), 'not found; the model directory needs the tokenizer.json (and tokenizer_config.json) of its Hugging Face checkpoint');
  }
  const config = files.has('tokenizer_config.json') ? await jsonFile(files, 'tokenizer_config.json') : {};
  return createTokenizer(await jsonFile(files, 'tokenizer.json'), config, filePath(files, 'tokenizer.json'));
}
