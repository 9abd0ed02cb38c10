import { InvalidDataError } from '@layerquant/core';
import { readTextFile } from '@layerquant/tensor-io';
import { resolve } from 'node:path';

/**
 * Reads an evaluation text: a missing path, a directory, a FIFO or device, a binary file (NUL bytes, not UTF-8) or a
 * file with no non-blank character is a typed error naming it (tensor-io's readTextFile).
 */
export async function readEvaluationText(path: string): Promise<string> {
  const absolute = resolve(path);
  const text = await readTextFile(absolute, 'a UTF-8 text file with --text, or a built-in --dataset');
  if (text.trim().length === 0) throw new InvalidDataError(absolute, 'is empty; perplexity needs text to score');
  return text;
}
