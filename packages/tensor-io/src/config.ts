import { MissingFileError, type DecoderConfig } from '@layerquant/core';
import { basename, dirname, join, resolve } from 'node:path';
import { nodeModelFiles } from './checkpoint.js';
import { checkInputFile, inputPathKind, pathEntryExists } from './input-file.js';
import { readDecoderConfig } from './model-files.js';

export { SUPPORTED_ARCHITECTURES, parseDecoderConfig } from './decoder-config.js';

/** Loads `<dir>/config.json` (or the config file a path names). */
export async function loadDecoderConfig(dir: string): Promise<DecoderConfig> {
  const file = inputPathKind(dir, 'a model directory (with config.json) or a config.json') === 'file' ? resolve(dir) : join(resolve(dir), 'config.json');
  if (!pathEntryExists(file)) throw new MissingFileError(file, 'not found; a model directory needs the config.json of its Hugging Face checkpoint');
  checkInputFile(file, 'the config.json of the model\'s Hugging Face checkpoint');
  return readDecoderConfig(nodeModelFiles(dirname(file)), basename(file));
}
