import { MissingFileError } from '@layerquant/core';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The slice of a tokenizer that layerquant needs. */
export interface Tokenizer {
  /** Token ids of `text`, without special tokens (no BOS), as the perplexity protocols expect. */
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/**
 * Loads the tokenizer of a model directory with @huggingface/transformers' AutoTokenizer, from local files
 * only (never the hub). The library is imported on first use: it is large and not every command needs it.
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const absolute = resolve(dir);
  const file = join(absolute, 'tokenizer.json');
  if (!existsSync(file)) {
    throw new MissingFileError(file, 'not found; the model directory needs the tokenizer.json (and tokenizer_config.json) of its Hugging Face checkpoint');
  }
  const { AutoTokenizer } = await import('@huggingface/transformers');
  const tokenizer = await AutoTokenizer.from_pretrained(absolute, { local_files_only: true });
  return {
    encode: (text) => tokenizer.encode(text, { add_special_tokens: false }),
    decode: (ids) => tokenizer.decode([...ids], { skip_special_tokens: false }),
  };
}
