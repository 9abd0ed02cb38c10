import { MissingFileError, type DecoderConfig } from '@layerquant/core';
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { nodeModelFiles } from './checkpoint.js';
import { readDecoderConfig } from './model-files.js';

export { SUPPORTED_ARCHITECTURES, parseDecoderConfig } from './decoder-config.js';

/** Loads `<dir>/config.json` (or the config file a path names). */
export async function loadDecoderConfig(dir: string): Promise<DecoderConfig> {
  const file = existsSync(dir) && statSync(dir).isFile() ? resolve(dir) : join(resolve(dir), 'config.json');
  if (!existsSync(file)) throw new MissingFileError(file, 'not found; a model directory needs the config.json of its Hugging Face checkpoint');
  return readDecoderConfig(nodeModelFiles(dirname(file)), basename(file));
}
