import { MissingFileError } from '@layerquant/core';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** The Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (as huggingface_hub). */
export function huggingFaceCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, 'hub');
  return join(homedir(), '.cache', 'huggingface', 'hub');
}

const MODEL_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/**
 * The local directory a model argument names. layerquant reads local directories only (no network): a path is
 * returned absolute; a Hugging Face model id (`org/name` or `hf://org/name`) that is not a local path is resolved to
 * its snapshot in the local Hugging Face cache (refs/main, or the only snapshot), and otherwise is an error saying
 * how to point layerquant at a downloaded model.
 */
export function resolveModelPath(argument: string, env: NodeJS.ProcessEnv = process.env): string {
  const id = argument.startsWith('hf://') ? argument.slice('hf://'.length).replace(/\/+$/, '') : undefined;
  if (id === undefined && (existsSync(argument) || !MODEL_ID.test(argument))) return resolve(argument);
  const name = id ?? argument;
  const cache = huggingFaceCacheDir(env);
  const repo = join(cache, `models--${name.split('/').join('--')}`);
  const snapshots = join(repo, 'snapshots');
  if (MODEL_ID.test(name) && existsSync(snapshots)) {
    const ref = join(repo, 'refs', 'main');
    const revision = existsSync(ref) ? readFileSync(ref, 'utf8').trim() : undefined;
    if (revision && existsSync(join(snapshots, revision))) return join(snapshots, revision);
    const all = readdirSync(snapshots);
    if (all.length === 1) return join(snapshots, all[0]!);
  }
  throw new MissingFileError(
    argument,
    `is not a local directory: layerquant reads local model directories only (no download). ` +
      `Download the model first (e.g. \`huggingface-cli download ${MODEL_ID.test(name) ? name : 'org/name'}\`) and pass its snapshot ` +
      `directory, ${join(cache, `models--${MODEL_ID.test(name) ? name.split('/').join('--') : 'org--name'}`, 'snapshots', '<revision>')}, or any directory with config.json and *.safetensors`,
  );
}
