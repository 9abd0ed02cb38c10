import { join, resolve } from 'node:path';
import { nodeModelFiles } from './checkpoint.js';
import { checkInputFile, pathEntryExists } from './input-file.js';
import { fileContentHash } from './content-hash.js';
import { withTokenCache } from './token-cache.js';
import { TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, readTokenizer, readTokenizerFiles, type Tokenizer, type TokenizerOptions } from './tokenizer.js';

/** Regular files only: a FIFO, device or directory in a tokenizer file's place is named before anything reads it. */
function checkTokenizerPaths(dir: string): void {
  for (const [name, expected] of [
    [TOKENIZER_FILE, 'the tokenizer.json (and tokenizer_config.json)'],
    [TOKENIZER_CONFIG_FILE, 'the tokenizer_config.json'],
  ] as const) {
    const file = join(dir, name);
    if (pathEntryExists(file)) checkInputFile(file, expected);
  }
}

/**
 * The checks loadTokenizer makes, for commands that copy a tokenizer without running it (export): tokenizer.json and
 * tokenizer_config.json present, regular files, JSON objects, every token id a row of the embedding.
 */
export async function checkTokenizerFiles(dir: string, options: TokenizerOptions = {}): Promise<void> {
  const absolute = resolve(dir);
  checkTokenizerPaths(absolute);
  const files = nodeModelFiles(absolute);
  try {
    await readTokenizerFiles(files, options);
  } finally {
    await files.close?.();
  }
}

/**
 * Loads the tokenizer of a model directory (tokenizer.json, tokenizer_config.json), from local files only. The ids
 * of long texts are cached between runs by the files' and the text's content (token-cache.ts).
 */
export async function loadTokenizer(dir: string, options: TokenizerOptions = {}): Promise<Tokenizer> {
  const absolute = resolve(dir);
  checkTokenizerPaths(absolute);
  const files = nodeModelFiles(absolute);
  let tokenizer: Tokenizer;
  try {
    tokenizer = await readTokenizer(files, options);
  } finally {
    await files.close?.();
  }
  // Read and checked above: both files exist and are regular.
  const filesKey = `${await fileContentHash(join(absolute, TOKENIZER_FILE))}:${await fileContentHash(join(absolute, TOKENIZER_CONFIG_FILE))}`;
  return withTokenCache(tokenizer, filesKey);
}
