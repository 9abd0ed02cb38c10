import { MissingFileError } from '@layerquant/core';
import { readdirSync, statSync } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { checkInputFile, inputPathKind, pathEntryExists } from './input-file.js';
import { checkOneWeightSet } from './model-file-set.js';
import { INDEX_NAME, findShards, openCheckpointFiles, readShardIndex, type Checkpoint, type CheckpointShards, type ModelFiles } from './model-files.js';

export type { Checkpoint, WeightSource } from './model-files.js';

/**
 * A directory as the file-access port sees it (model-files.ts): paths relative to it, read with node:fs; each file
 * is opened once and kept open until `close`.
 */
export function nodeModelFiles(dir: string): ModelFiles {
  const root = resolve(dir);
  const handles = new Map<string, Promise<FileHandle>>();
  const handleFor = (path: string) => {
    let handle = handles.get(path);
    if (!handle) {
      // A FIFO would block the read forever, a dangling link or a directory would fail untyped: named first.
      checkInputFile(join(root, path), 'a file of the model');
      handle = open(join(root, path), 'r');
      handles.set(path, handle);
    }
    return handle;
  };
  return {
    name: root,
    list: () => readdirSync(root).filter((name) => pathEntryExists(join(root, name)) && !isDirectory(join(root, name))),
    // A dangling link, a FIFO or a directory in a file's place is "there": reading it names what it is.
    has: (path) => pathEntryExists(join(root, path)),
    size: async (path) => (await (await handleFor(path)).stat()).size,
    async bytes(path, start = 0, end) {
      const handle = await handleFor(path);
      const stop = end ?? (await handle.stat()).size;
      const bytes = new Uint8Array(Math.max(0, stop - start));
      let done = 0;
      while (done < bytes.length) {
        const { bytesRead } = await handle.read(bytes, done, bytes.length - done, start + done);
        if (bytesRead === 0) return bytes.subarray(0, done);
        done += bytesRead;
      }
      return bytes;
    },
    text: (path) => {
      checkInputFile(join(root, path), 'a file of the model');
      return readFile(join(root, path), 'utf8');
    },
    async close() {
      const all = [...handles.values()];
      handles.clear();
      await Promise.all(all.map(async (h) => (await h).close()));
    },
  };
}

/** The directory and shard files a path names: a model directory, a single .safetensors file, or an index file. */
async function resolveShards(path: string): Promise<{ files: ModelFiles; shards: CheckpointShards }> {
  const absolute = resolve(path);
  if (inputPathKind(absolute, 'a model directory or a .safetensors file') === 'file') {
    const files = nodeModelFiles(dirname(absolute));
    if (absolute.endsWith('.index.json')) return { files, shards: await readShardIndex(files, basename(absolute)) };
    return { files, shards: { shards: [basename(absolute)] } };
  }
  const files = nodeModelFiles(absolute);
  const shards = await findShards(files);
  // Two models' weights in one directory (a copy over an older one) would be read as one: refused, naming both.
  checkOneWeightSet(absolute, shards.index ? shards.shards : undefined);
  for (const shard of shards.shards) checkInputFile(join(absolute, shard), 'a .safetensors file of the model');
  return { files, shards };
}

/**
 * Opens a checkpoint: a directory with `model.safetensors`, a sharded directory with
 * `model.safetensors.index.json`, or a single `.safetensors` file. Headers are validated up front; data is not read.
 */
export async function openCheckpoint(path: string): Promise<Checkpoint> {
  const { files, shards } = await resolveShards(path);
  try {
    return await openCheckpointFiles(files, shards);
  } catch (error) {
    await files.close?.();
    throw error;
  }
}

/** Whether a path is a directory (following links; a dangling link is not one). */
function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

export { INDEX_NAME };
