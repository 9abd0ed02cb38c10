import { InvalidOptionError, LayerquantError } from '@layerquant/core';
import { inputPathKind, modelContentHash } from '@layerquant/tensor-io';
import { realpathSync } from 'node:fs';
import { isAbsolute, resolve, sep } from 'node:path';
import { printable } from './job-schema.js';
import { ModelMismatchError } from './jobs.js';

/**
 * The models a worker serves: the directories it was started with (`--model`, repeatable) and any directory under
 * the roots it was given (`--model-root`). A job's model path is compared with them after both sides are resolved
 * to real paths (so `..` and symbolic links cannot leave a root) and before any file of it is read or hashed.
 */
export interface ServedModels {
  /** Real paths of the `--model` directories. */
  readonly models: readonly string[];
  /** Real paths of the `--model-root` directories. */
  readonly roots: readonly string[];
}

/** A job naming a model directory this worker was not started for. */
export class ModelNotServedError extends LayerquantError {
  constructor(
    readonly jobId: string,
    readonly path: string,
    served: ServedModels,
    expected: string,
    copies: readonly string[],
  ) {
    const list = [...served.models.map((m, i) => `--model ${m}${copies[i] ? ` (content hash ${copies[i]!.slice(0, 16)})` : ''}`), ...served.roots.map((r) => `--model-root ${r}`)].join(', ');
    super(
      'QUEUE_MODEL_NOT_SERVED',
      `job ${printable(jobId)}: the model directory "${printable(path, 300)}" is not one this worker serves (${list}), and no --model directory has the job's content hash ${expected.slice(0, 16)}; nothing of that directory was read. Start a worker with --model <dir> (a copy of the coordinator's model) or --model-root <dir> for it`,
    );
  }
}

function realDirectory(path: string, option: string): string {
  const absolute = resolve(path);
  // A typed error naming the path for a missing directory, a dangling or looping link, a FIFO, a device.
  if (inputPathKind(absolute, `a model directory to ${option}`) !== 'directory') throw new InvalidOptionError(option, `${absolute} is a file, not a directory`);
  return realpathSync.native(absolute);
}

/** The worker's served models from its options: each must be an existing directory (a typed error otherwise). */
export function servedModels(options: { readonly models?: readonly string[]; readonly roots?: readonly string[] }): ServedModels {
  const models = (options.models ?? []).map((m) => realDirectory(m, '--model'));
  const roots = (options.roots ?? []).map((r) => realDirectory(r, '--model-root'));
  if (models.length === 0 && roots.length === 0) {
    throw new InvalidOptionError('--model', 'a worker serves only the models it is started for: give --model <dir> (repeatable) or --model-root <dir> (every model directory under it)');
  }
  return { models: [...new Set(models)], roots: [...new Set(roots)] };
}

/** The real path of a job's model directory when this worker serves it, else undefined; reads no file. */
export function servedPath(served: ServedModels, path: string): string | undefined {
  if (typeof path !== 'string' || !isAbsolute(path)) return undefined;
  let real: string;
  try {
    real = realpathSync.native(path);
  } catch {
    return undefined;
  }
  if (served.models.includes(real)) return real;
  return served.roots.some((root) => real.startsWith(root.endsWith(sep) ? root : `${root}${sep}`)) ? real : undefined;
}

/**
 * The directory a worker reads for a job, and its full content hash. The job's own path when it is served
 * (its hash must then be the job's: ModelMismatchError otherwise); else a `--model` directory
 * whose hash is the job's (a copy of the coordinator's model at another path on this machine); else
 * ModelNotServedError, before any file of the job's path is read.
 */
export async function resolveJobModel(
  served: ServedModels,
  jobId: string,
  job: { readonly modelDir: string; readonly modelHash: string },
): Promise<{ dir: string; hash: string }> {
  const real = servedPath(served, job.modelDir);
  if (real !== undefined) {
    const hash = await modelContentHash(real);
    if (hash !== job.modelHash) throw new ModelMismatchError(real, job.modelHash, hash);
    return { dir: real, hash };
  }
  const copies: string[] = [];
  for (const dir of served.models) {
    const hash = await modelContentHash(dir);
    if (hash === job.modelHash) return { dir, hash };
    copies.push(hash);
  }
  throw new ModelNotServedError(jobId, job.modelDir, served, job.modelHash, copies);
}
