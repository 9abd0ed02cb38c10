import { nodeModelFiles } from './checkpoint.js';
import { readTokenizer, type Tokenizer } from './tokenizer.js';

/** Loads the tokenizer of a model directory (tokenizer.json, tokenizer_config.json), from local files only. */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  return readTokenizer(nodeModelFiles(dir));
}
