import { InvalidDataError } from '@layerquant/core';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, isModelFileSetEntry } from './model-file-names.js';

/**
 * The model file set of a directory: the files that together are one model (weights, the config and tokenizer files
 * loaders read, layerquant's report, an ONNX export's folder). Writers replace a set whole (writeFileSet's `replace`),
 * readers refuse a directory holding two, and nothing outside the set (a statistics cache, the user's notes) is ever
 * touched: the one definition of what "the model in a directory" is.
 */
export { MODEL_LOADER_FILES, ONNX_FOLDER, QUANTIZATION_REPORT_FILE, SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, isModelFileSetEntry } from './model-file-names.js';

/** The entries of `dir` that belong to its model file set (plain files, or the onnx folder), sorted. */
export function modelFileSetEntries(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((name) => {
      try {
        const info = statSync(join(dir, name));
        return (info.isFile() || info.isDirectory()) && isModelFileSetEntry(name, info.isDirectory());
      } catch {
        return false; // a dangling link is nobody's model
      }
    })
    .sort();
}

/**
 * Refuses a directory holding the safetensors weights of two models: a `model.safetensors` beside a shard index, or
 * `*.safetensors` files the index does not name (stale shards of an earlier model), or a `model.safetensors` beside
 * other safetensors files. Reading either would measure one of them silently; the error names both.
 */
export function checkOneWeightSet(dir: string, indexShards?: readonly string[]): void {
  const weights = readdirSync(dir).filter((name) => name.endsWith('.safetensors')).sort();
  const fix = 'the directory holds the weights of two models (a copy over an older one?); keep one model per directory, or rerun the command that wrote it with --force';
  if (indexShards) {
    const listed = new Set(indexShards);
    const stray = weights.filter((name) => !listed.has(name));
    if (stray.length > 0) throw new InvalidDataError(join(dir, SAFETENSORS_INDEX_FILE), `does not name ${stray.slice(0, 3).join(', ')}${stray.length > 3 ? `, ... (${stray.length})` : ''} beside it; ${fix}`);
    return;
  }
  if (existsSync(join(dir, SAFETENSORS_FILE)) && weights.length > 1) {
    throw new InvalidDataError(join(dir, SAFETENSORS_FILE), `has other safetensors files beside it (${weights.filter((n) => n !== SAFETENSORS_FILE).slice(0, 3).join(', ')}) and no index naming them; ${fix}`);
  }
}
