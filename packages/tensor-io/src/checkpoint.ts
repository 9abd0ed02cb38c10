import { MissingFileError } from '@layerquant/core';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
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
      handle = open(join(root, path), 'r');
      handles.set(path, handle);
    }
    return handle;
  };
  return {
    name: root,
    list: () => readdirSync(root).filter((name) => statSync(join(root, name)).isFile()),
    has: (path) => existsSync(join(root, path)) && statSync(join(root, path)).isFile(),
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
    text: (path) => readFile(join(root, path), 'utf8'),
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
  if (!existsSync(absolute)) throw new MissingFileError(absolute, 'does not exist; pass a model directory or a .safetensors file');
  if (statSync(absolute).isFile()) {
    const files = nodeModelFiles(dirname(absolute));
    if (absolute.endsWith('.index.json')) return { files, shards: await readShardIndex(files, basename(absolute)) };
    return { files, shards: { shards: [basename(absolute)] } };
  }
  const files = nodeModelFiles(absolute);
  return { files, shards: await findShards(files) };
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

export { INDEX_NAME };
