import { Tokenizer } from '@huggingface/tokenizers';
import { InvalidDataError } from '@layerquant/core';

/** The slice of a tokenizer the page uses; the same as tensor-io's `Tokenizer` (no special tokens added). */
export interface PageTokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/**
 * The model's tokenizer.json run by @huggingface/tokenizers, the tokenizer engine that @huggingface/transformers
 * (which the CLI loads through tensor-io) wraps: `PreTrainedTokenizer.encode` is `Tokenizer.encode(...).ids`, so the
 * page's ids are the CLI's (checked against tensor-io's loadTokenizer in the tests). Without transformers' model
 * runtime, its second onnxruntime-web and its CDN defaults, which the page does not need.
 */
export function createPageTokenizer(tokenizerJson: unknown, tokenizerConfig: unknown, source: string): PageTokenizer {
  if (typeof tokenizerJson !== 'object' || tokenizerJson === null) throw new InvalidDataError(`${source}/tokenizer.json`, 'is not a JSON object');
  const tokenizer = new Tokenizer(tokenizerJson, (tokenizerConfig ?? {}) as object);
  return {
    encode: (text) => tokenizer.encode(text, { add_special_tokens: false }).ids,
    decode: (ids) => tokenizer.decode([...ids], { skip_special_tokens: false }),
  };
}
