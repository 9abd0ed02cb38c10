import { randomBytes } from 'node:crypto';
import { OutputDirectoryError } from '@layerquant/core';
import { closeSync, openSync, statSync } from 'node:fs';
import { copyFile, mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { trackTemporary, untrackTemporary } from './output-dir.js';

/** A temp name beside the target, so the final rename stays on one file system. */
export function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Writes through `write(handle)` into a temp file, then renames it over `path`; on any failure the temp file is
 * removed, so no half-written file is ever left behind, also when the process is interrupted (see output-dir.ts).
 */
export async function writeFileAtomic(path: string, write: (handle: FileHandle) => Promise<void>): Promise<void> {
  checkOutputFile(path);
  const tmp = temporaryPath(path);
  let handle: FileHandle | undefined;
  trackTemporary(tmp);
  try {
    // Created synchronously, so a signal handler that runs between two ticks always finds it on disk (an async
    // create still running in libuv's thread pool could land after the handler removed its temporaries). The
    // async open below does not create: if the handler removed the file meanwhile, it fails instead.
    try {
      closeSync(openSync(tmp, 'wx'));
    } catch (error) {
      throw new OutputDirectoryError(dirname(path), `cannot write ${basename(path)} here (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); choose a writable directory`, 'OUTPUT_FILE');
    }
    handle = await open(tmp, 'r+');
    await write(handle);
    await handle.close();
    handle = undefined;
    await rename(tmp, path);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw error;
  } finally {
    untrackTemporary(tmp);
  }
}

/**
 * An output file path must name a file in an existing directory: a directory, a FIFO or a device there, or a parent
 * that is missing or not a directory, is an OutputDirectoryError naming the path (the rename would fail, or replace a
 * directory, after the whole file was written).
 */
export function checkOutputFile(path: string): void {
  let info;
  try {
    info = statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new OutputDirectoryError(path, `cannot be written (${code ?? (error as Error).message}); choose another output file`, 'OUTPUT_FILE');
  }
  if (info && !info.isFile()) throw new OutputDirectoryError(path, `is ${info.isDirectory() ? 'a directory' : 'not a regular file'}; give the path of a file to write`, 'OUTPUT_FILE');
  const parent = dirname(path);
  let parentInfo;
  try {
    parentInfo = statSync(parent);
  } catch {
    throw new OutputDirectoryError(path, `its directory ${parent} does not exist; create it first or choose another path`, 'OUTPUT_FILE');
  }
  if (!parentInfo.isDirectory()) throw new OutputDirectoryError(path, `${parent} is not a directory; choose another path`, 'OUTPUT_FILE');
}

/** Atomic write of a whole string or byte array. */
export async function writeTextAtomic(path: string, content: string | Uint8Array): Promise<void> {
  await writeFileAtomic(path, async (handle) => {
    await handle.writeFile(content);
  });
}

/** Copies a file through a temp name beside the target, so a failed copy leaves nothing behind. */
export async function copyFileAtomic(from: string, to: string): Promise<void> {
  checkOutputFile(to);
  const tmp = temporaryPath(to);
  trackTemporary(tmp);
  try {
    await copyFile(from, tmp);
    await rename(tmp, to);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  } finally {
    untrackTemporary(tmp);
  }
}

/**
 * Fills a temporary directory beside `dir` through `fill(tmp)`, then renames it over `dir` (a previous one removed
 * first): a reader sees the old directory or the whole new one, never part of it; on any failure or interruption
 * the temporary is removed (see output-dir.ts). The directory form of writeFileAtomic (a statistics cache entry).
 */
export async function writeDirectoryAtomic(dir: string, fill: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = temporaryPath(dir);
  trackTemporary(tmp);
  try {
    await mkdir(tmp, { recursive: true });
    await fill(tmp);
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw error;
  } finally {
    untrackTemporary(tmp);
  }
}
