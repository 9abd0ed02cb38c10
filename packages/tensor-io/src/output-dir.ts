import { OutputDirectoryError } from '@layerquant/core';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { access, constants, mkdir, rename, stat } from 'node:fs/promises';
import { temporaryPath } from './atomic.js';
import { dirname, join, resolve } from 'node:path';

/**
 * Output directories: one writer at a time (a lock file), no temporaries left behind on Ctrl-C, SIGTERM or a
 * crash, and stale temporaries of dead processes removed on the next run.
 *
 * Temporary names come from `temporaryPath` (`.<name>.<pid>.<hex>.tmp`), so the pid of the process that wrote
 * one is in its name: a temporary whose process is gone can never be finished and is safe to delete.
 */

const LOCK_FILE = '.layerquant.lock';
const TEMPORARY_NAME = /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/;

/** Paths this process may leave behind if it stops now: temporaries being written, locks held. */
const liveTemporaries = new Set<string>();
const heldLocks = new Set<string>();
/** Output directories this process created and still holds: removed again if interrupted while still empty. */
const createdDirectories = new Map<string, string>();
let handlersInstalled = false;

function removeLeftovers(): void {
  for (const path of liveTemporaries) rmSync(path, { recursive: true, force: true });
  liveTemporaries.clear();
  for (const path of heldLocks) {
    rmSync(path, { force: true });
    const created = createdDirectories.get(path);
    try {
      if (created && readdirSync(created).length === 0) rmSync(created, { recursive: true, force: true });
    } catch {
      // Gone already, or unreadable: nothing to tidy.
    }
  }
  heldLocks.clear();
  createdDirectories.clear();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // 'exit' runs on a normal end and after an uncaught exception; signals need their own handlers, which then
  // exit with the shell's code for the signal (128 + n) as a default handler would.
  process.on('exit', removeLeftovers);
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    process.on(signal, () => {
      removeLeftovers();
      process.stderr.write(`\nlayerquant: interrupted (${signal}); temporary files removed\n`);
      process.exit(code);
    });
  }
}

/** Marks `path` (a file or directory being written) for removal if the process stops before `untrack`. */
export function trackTemporary(path: string): void {
  installHandlers();
  liveTemporaries.add(path);
}

export function untrackTemporary(path: string): void {
  liveTemporaries.delete(path);
}

/** True if a process with this pid exists (EPERM: it exists but is not ours). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes temporaries (files or directories) in `dir` left by processes that no longer run; returns their names. */
export function removeStaleTemporaries(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const match = TEMPORARY_NAME.exec(name);
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

interface LockContent {
  readonly pid: number;
  readonly command: string;
  readonly started: string;
}

function readLock(path: string): LockContent | undefined {
  try {
    const content = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockContent>;
    return typeof content.pid === 'number' ? (content as LockContent) : undefined;
  } catch {
    return undefined;
  }
}

/** A held output directory; `release()` removes the lock (also done automatically on exit and on signals). */
export interface OutputDirectory {
  readonly path: string;
  /** Stale temporaries of dead processes that were removed when the directory was opened. */
  readonly removedTemporaries: readonly string[];
  release(): void;
  /**
   * For a failed run: releases the lock and, if openOutputDirectory created the directory and nothing was left in
   * it, removes it again, so a failed command leaves --out as it found it (a signal does the same).
   */
  abandon(): void;
}

/**
 * Checks that `dir` can be an output directory (not a file, not under a file, writable), creates it, removes
 * stale temporaries of dead processes and takes its lock, so a second layerquant writing the same directory gets
 * an error instead of both reporting success. `option` names the flag in messages (default `--out`).
 */
export async function openOutputDirectory(dir: string, command: string, option = '--out'): Promise<OutputDirectory> {
  const path = resolve(dir);
  // Find the nearest existing ancestor: a file there means the directory can never be created.
  let probe = path;
  for (;;) {
    const info = await stat(probe).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
      throw new OutputDirectoryError(dir, `cannot be used as ${option}: ${error.message}`);
    });
    if (info) {
      if (!info.isDirectory()) {
        throw new OutputDirectoryError(
          dir,
          probe === path
            ? `${option} is an existing file, not a directory; choose a directory path or remove the file`
            : `${option} lies under "${probe}", which is a file; choose a path whose parents are directories`,
        );
      }
      break;
    }
    const parent = dirname(probe);
    if (parent === probe) break;
    probe = parent;
  }
  try {
    await access(probe, constants.W_OK);
  } catch {
    throw new OutputDirectoryError(dir, `${option} is not writable (no write permission on "${probe}"); choose another directory or fix its permissions`);
  }
  const created = !existsSync(path);
  await mkdir(path, { recursive: true });
  const removedTemporaries = removeStaleTemporaries(path);
  const lockPath = join(path, LOCK_FILE);
  installHandlers();
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, JSON.stringify({ pid: process.pid, command, started: new Date().toISOString() } satisfies LockContent));
      closeSync(fd);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') break; // lost a race on a stale lock: fall to the check below
        throw new OutputDirectoryError(dir, `cannot create the lock file: ${(error as Error).message}`);
      }
      const holder = readLock(lockPath);
      if (holder && holder.pid !== process.pid && processAlive(holder.pid)) {
        throw new OutputDirectoryError(
          dir,
          `another layerquant process (pid ${holder.pid}, "${holder.command}", started ${holder.started}) is writing this directory; wait for it to finish or choose another ${option}`,
          'OUTPUT_LOCKED',
        );
      }
      // The holder is dead (or the lock is unreadable, left by a crash while writing it): take it over.
      rmSync(lockPath, { force: true });
    }
  }
  const holder = readLock(lockPath);
  if (!holder || holder.pid !== process.pid) {
    throw new OutputDirectoryError(dir, `another layerquant process took this directory's lock at the same time; choose another ${option}`, 'OUTPUT_LOCKED');
  }
  heldLocks.add(lockPath);
  if (created) createdDirectories.set(lockPath, path);
  const release = () => {
    createdDirectories.delete(lockPath);
    if (!heldLocks.delete(lockPath)) return;
    try {
      unlinkSync(lockPath);
    } catch {
      // Already gone: nothing to release.
    }
  };
  return {
    path,
    removedTemporaries,
    release,
    abandon() {
      const ours = createdDirectories.has(lockPath);
      release();
      if (ours && readdirSync(path).length === 0) rmSync(path, { recursive: true, force: true });
    },
  };
}

/**
 * Writes files that belong together (weights, their report, the config and tokenizer they go with) into `dir` so
 * that it never holds a mixed set of two runs. `write(staging)` writes the whole set into a staging directory
 * inside `dir` (`.<name>.<pid>.<hex>.tmp`, removed on SIGINT/SIGTERM/exit, or as a stale temporary by the next
 * run after a SIGKILL): until it returns, `dir` is unchanged. Then the files of the previous set (`replaces`, e.g.
 * the file list of the previous report, plus every name of the new set) are moved aside and the new ones renamed
 * in, `last` (the report) last. Only renames happen in that step (milliseconds); a process killed inside it leaves
 * part of the new set and nothing of the old. Other files of `dir` (a statistics cache, the user's own files)
 * are left alone. Returns write's result and the names written.
 */
export async function writeFileSet<T>(
  dir: string,
  write: (staging: string) => Promise<T>,
  options: { readonly replaces?: readonly string[]; readonly last?: string } = {},
): Promise<{ result: T; files: string[] }> {
  const target = resolve(dir);
  await mkdir(target, { recursive: true });
  const staging = temporaryPath(join(target, 'output'));
  trackTemporary(staging);
  try {
    await mkdir(staging);
    const result = await write(staging);
    const files = readdirSync(staging).filter((name) => !TEMPORARY_NAME.test(name));
    const aside = temporaryPath(join(target, 'previous'));
    trackTemporary(aside);
    await mkdir(aside);
    const plainName = (name: string) => name !== '' && name !== '.' && name !== '..' && name !== LOCK_FILE && !TEMPORARY_NAME.test(name) && !/[/\\]/.test(name);
    const old = new Set([...(options.replaces ?? []), ...files].filter(plainName));
    // The report first, so a directory caught half-way never has a report that describes other weights.
    const outgoing = [...old].sort((a, b) => Number(b === options.last) - Number(a === options.last));
    const movedAside: string[] = [];
    try {
      for (const name of outgoing) {
        try {
          await rename(join(target, name), join(aside, name));
          movedAside.push(name);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        }
      }
      const incoming = [...files].sort((a, b) => Number(a === options.last) - Number(b === options.last));
      for (const name of incoming) await rename(join(staging, name), join(target, name));
    } catch (error) {
      // Put the previous set back as it was (the new files that made it in are removed first).
      for (const name of files) if (!existsSync(join(staging, name))) rmSync(join(target, name), { recursive: true, force: true });
      for (const name of movedAside.reverse()) await rename(join(aside, name), join(target, name)).catch(() => undefined);
      throw error;
    }
    rmSync(aside, { recursive: true, force: true });
    untrackTemporary(aside);
    return { result, files };
  } finally {
    rmSync(staging, { recursive: true, force: true });
    untrackTemporary(staging);
  }
}
