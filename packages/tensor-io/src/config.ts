import { InvalidDataError, MissingFileError, type DecoderConfig } from '@layerquant/core';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDecoderConfig } from './decoder-config.js';
import { checkInputFile, inputPathKind, pathEntryExists } from './input-file.js';


export { SUPPORTED_ARCHITECTURES, parseDecoderConfig } from './decoder-config.js';

/** Loads `<dir>/config.json`. */
export async function loadDecoderConfig(dir: string): Promise<DecoderConfig> {
  const file = inputPathKind(dir, 'a model directory (with config.json) or a config.json') === 'file' ? dir : join(dir, 'config.json');
  if (!pathEntryExists(file)) throw new MissingFileError(file, 'not found; a model directory needs the config.json of its Hugging Face checkpoint');
  checkInputFile(file, 'the config.json of the model\'s Hugging Face checkpoint');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new InvalidDataError(file, `is not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  return parseDecoderConfig(json, file);
}
