import { validateCheckpoint, type CheckpointTensors, type DecoderConfig, type DecoderLayout } from '@layerquant/core';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { openCheckpoint } from './checkpoint.js';
import { loadDecoderConfig } from './config.js';
import type { OpenedModel } from './model-files.js';

export type { OpenedModel } from './model-files.js';

/** The directory whose config.json describes `path` (a model directory, or a .safetensors file in one). */
function configDirOf(path: string): string {
  return existsSync(path) && statSync(path).isFile() ? dirname(path) : path;
}

/**
 * Reads `<dir>/config.json` and validates it against the tensors of `weights` (an open checkpoint, quantized or
 * not): the one check every command runs before it computes anything (see core's validateCheckpoint).
 */
export async function loadValidatedConfig(dir: string, weights: CheckpointTensors): Promise<{ config: DecoderConfig; configFile: string; layout: DecoderLayout }> {
  const configFile = join(configDirOf(dir), 'config.json');
  const config = await loadDecoderConfig(configDirOf(dir));
  const layout = validateCheckpoint(config, weights, configFile);
  return { config, configFile, layout };
}

/**
 * Opens a Hugging Face model directory for computing: config.json read, safetensors headers read, and the one
 * validation (architecture, layer count, every tensor present with the shape the config gives). Close the
 * checkpoint when done. (In a page: openModelFiles over the page's files.)
 */
export async function openModel(dir: string): Promise<OpenedModel> {
  const configFile = join(configDirOf(dir), 'config.json');
  const config = await loadDecoderConfig(configDirOf(dir));
  const checkpoint = await openCheckpoint(dir);
  try {
    const layout = validateCheckpoint(config, checkpoint, configFile);
    return Object.freeze({ config, configFile, layout, checkpoint });
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}
