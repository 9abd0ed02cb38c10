import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
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
  const tmp = temporaryPath(path);
  let handle: FileHandle | undefined;
  trackTemporary(tmp);
  try {
    // Created synchronously, so a signal handler that runs between two ticks always finds it on disk (an async
    // create still running in libuv's thread pool could land after the handler removed its temporaries). The
    // async open below does not create: if the handler removed the file meanwhile, it fails instead.
    closeSync(openSync(tmp, 'wx'));
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

/** Atomic write of a whole string or byte array. */
export async function writeTextAtomic(path: string, content: string | Uint8Array): Promise<void> {
  await writeFileAtomic(path, async (handle) => {
    await handle.writeFile(content);
  });
}

/** Copies a file through a temp name beside the target, so a failed copy leaves nothing behind. */
export async function copyFileAtomic(from: string, to: string): Promise<void> {
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
