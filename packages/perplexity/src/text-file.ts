import { InvalidDataError, MissingFileError } from '@layerquant/core';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';

/** Reads an evaluation text: a missing file or one with no non-blank character is a typed error. */
export async function readEvaluationText(path: string): Promise<string> {
  const absolute = resolve(path);
  if (!existsSync(absolute)) throw new MissingFileError(absolute, 'does not exist; pass a UTF-8 text file with --text or a built-in --dataset');
  const text = await readFile(absolute, 'utf8');
  if (text.trim().length === 0) throw new InvalidDataError(absolute, 'is empty; perplexity needs text to score');
  return text;
}
