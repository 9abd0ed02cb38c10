import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync, type Stats } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { checkInputFile, inputPathKind } from './input-file.js';
import { ONNX_FOLDER, isModelFileSetEntry } from './model-file-set.js';

/**
 * Content hashes: the sha256 of every byte, one hasher for the whole project (experiment keys, statistics caches,
 * queue jobs and their results). A file's digest is computed once and cached by its path, size, modification and
 * change times, inode and device: in this process, and on disk in `$LAYERQUANT_CACHE_DIR` (default
 * `~/.cache/layerquant/content-hashes`), so a 7B checkpoint is read whole once, not on every run or worker. The cache
 * trusts those stamps: every write moves the change time (which, unlike the modification time, no user call can set
 * back), so only an edit under a clock set back goes unseen; delete the cache directory to rehash everything.
 */

const memory = new Map<string, { stamp: string; digest: string }>();

function stampOf(info: Stats): string {
  return `${info.size}:${info.mtimeMs}:${info.ctimeMs}:${info.ino}:${info.dev}`;
}

/**
 * A folder of layerquant's cache between runs: `$LAYERQUANT_CACHE_DIR/<name>`, else `$XDG_CACHE_HOME/layerquant/<name>`
 * (`~/.cache/layerquant/<name>` without it); empty when `LAYERQUANT_CACHE_DIR` is set empty (no cache).
 */
export function layerquantCacheDir(name: string, env: NodeJS.ProcessEnv = process.env): string {
  if (env.LAYERQUANT_CACHE_DIR !== undefined) return env.LAYERQUANT_CACHE_DIR === '' ? '' : join(env.LAYERQUANT_CACHE_DIR, name);
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'layerquant', name);
}

/** Where digests are kept between runs ($LAYERQUANT_CACHE_DIR, else ~/.cache/layerquant/content-hashes); empty: none. */
export function contentHashCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return layerquantCacheDir('content-hashes', env);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

async function cachedOnDisk(path: string, stamp: string): Promise<string | undefined> {
  const dir = contentHashCacheDir();
  if (!dir) return undefined;
  try {
    const entry = JSON.parse(await readFile(join(dir, `${sha256(path)}.json`), 'utf8')) as { path?: unknown; stamp?: unknown; digest?: unknown };
    return entry.path === path && entry.stamp === stamp && typeof entry.digest === 'string' && /^[0-9a-f]{64}$/.test(entry.digest) ? entry.digest : undefined;
  } catch {
    return undefined;
  }
}

async function saveOnDisk(path: string, stamp: string, digest: string): Promise<void> {
  const dir = contentHashCacheDir();
  if (!dir) return;
  try {
    await mkdir(dir, { recursive: true });
    const file = join(dir, `${sha256(path)}.json`);
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify({ path, stamp, digest }));
    await rename(tmp, file);
  } catch {
    // A cache that cannot be written costs a rehash next time, nothing else.
  }
}

/** sha256 (hex) of every byte of a regular file, cached by path and stamps (see above). */
export async function fileContentHash(file: string): Promise<string> {
  const path = resolve(file);
  checkInputFile(path, 'a file to hash');
  const info = statSync(path);
  const stamp = stampOf(info);
  const known = memory.get(path);
  if (known && known.stamp === stamp) return known.digest;
  let digest = await cachedOnDisk(path, stamp);
  if (!digest) {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path, { highWaterMark: 4 * 2 ** 20 })) hash.update(chunk as Buffer);
    digest = hash.digest('hex');
    // Stamped with the state before the read: a file written meanwhile gets a new stamp and is hashed again.
    if (stampOf(statSync(path)) === stamp) await saveOnDisk(path, stamp, digest);
  }
  memory.set(path, { stamp, digest });
  return digest;
}

/** The files of a model directory's model file set (isModelFileSetEntry; the onnx folder's files included), relative, sorted. */
function modelFiles(dir: string): string[] {
  const files: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    let info: Stats;
    try {
      info = statSync(join(dir, name));
    } catch {
      continue;
    }
    if (!isModelFileSetEntry(name, info.isDirectory())) continue;
    if (info.isFile()) files.push(name);
    else if (name === ONNX_FOLDER) {
      for (const inner of readdirSync(join(dir, name)).sort()) if (statSync(join(dir, name, inner)).isFile()) files.push(`${name}/${inner}`);
    }
  }
  return files;
}

/**
 * The content hash of a model directory: the names and full sha256 of every file of its model file set (weights,
 * index, config, tokenizer files, report, an export's onnx folder), nothing sampled. Two directories with the same
 * hash hold the same model byte for byte; files outside the set (notes, caches) do not count.
 */
export async function modelContentHash(modelDir: string): Promise<string> {
  const dir = resolve(modelDir);
  inputPathKind(dir, 'a model directory');
  const hash = createHash('sha256');
  hash.update('layerquant-model-hash/2\n');
  for (const name of modelFiles(dir)) hash.update(`${name}\0${await fileContentHash(join(dir, name))}\n`);
  return hash.digest('hex');
}
