import { OutputDirectoryError } from '@layerquant/core';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { access, constants, mkdir, stat } from 'node:fs/promises';
import { temporaryPath } from './atomic.js';
import { pathEntryExists } from './input-file.js';
import { basename, dirname, join, resolve } from 'node:path';

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
/** File-set swaps in progress (writeFileSet): rolled back by a signal or exit before temporaries are removed. */
const activeSwaps = new Set<Swap>();

function removeLeftovers(): void {
  // A swap caught half-way is undone first: its aside directory holds the previous set, not garbage.
  for (const swap of activeSwaps) rollBackSwap(swap);
  activeSwaps.clear();
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
  const stale = names.filter((name) => {
    const match = TEMPORARY_NAME.exec(name);
    if (!match) return false;
    const pid = Number(match[1]);
    return pid !== process.pid && !processAlive(pid);
  });
  // A dead process's swap journal first: undo (or finish) its swap before its staging directory is removed.
  for (const name of stale) {
    const swap = readSwapJournal(dir, name);
    if (swap) rollBackSwap(swap);
  }
  for (const name of stale) {
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
 * Creates `path` below its existing ancestor `from` one component at a time. Node's recursive mkdir loops forever where
 * the kernel answers ENOENT for a parent that exists (/proc); a plain mkdir per component fails at once, and every
 * failure is an OutputDirectoryError naming the directory.
 */
async function makeDirectories(from: string, path: string, dir: string, option: string): Promise<void> {
  const missing: string[] = [];
  for (let p = path; p !== from && p !== dirname(p); p = dirname(p)) missing.unshift(p);
  for (const component of missing) {
    try {
      await mkdir(component);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && statSync(component).isDirectory()) continue;
      throw new OutputDirectoryError(dir, `${option} cannot be created (${code ?? (error as Error).message} on "${component}"); choose a directory on a writable file system`);
    }
  }
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
  await makeDirectories(probe, path, dir, option);
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
 * A swap of one file set for another in `target`: `outgoing` (the previous set) moved into `aside`, then `incoming`
 * (the new set) moved in from `staging`, by renames. Its journal (`aside/.swap.json`) lets whoever finds it unfinished
 * (this process on a signal, or the next run after a SIGKILL) put the previous set back whole.
 */
interface Swap {
  readonly target: string;
  readonly staging: string;
  readonly aside: string;
  readonly incoming: readonly string[];
  readonly outgoing: readonly string[];
}

const SWAP_JOURNAL = '.swap.json';
const SWAP_COMMITTED = '.swap-committed.json';

function readSwapJournal(dir: string, name: string): Swap | undefined {
  const aside = join(dir, name);
  try {
    if (existsSync(join(aside, SWAP_COMMITTED))) return undefined; // finished: only the old files are left to delete
    const journal = JSON.parse(readFileSync(join(aside, SWAP_JOURNAL), 'utf8')) as { staging?: unknown; incoming?: unknown; outgoing?: unknown };
    const names = (value: unknown) => (Array.isArray(value) ? value.filter((n): n is string => typeof n === 'string' && isPlainName(n)) : []);
    if (typeof journal.staging !== 'string' || !TEMPORARY_NAME.test(journal.staging)) return undefined;
    return { target: dir, staging: join(dir, journal.staging), aside, incoming: names(journal.incoming), outgoing: names(journal.outgoing) };
  } catch {
    return undefined;
  }
}

function isPlainName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && name !== LOCK_FILE && !TEMPORARY_NAME.test(name) && !/[/\\]/.test(name);
}


/**
 * Puts the previous set back, from what is on disk (not from bookkeeping, which a signal can interrupt): a new file
 * that made it in (it is no longer in staging) is removed, then every file still aside is renamed back. Synchronous,
 * so a signal handler runs it whole.
 */
function rollBackSwap(swap: Swap): void {
  for (const name of swap.incoming) {
    if (!pathEntryExists(join(swap.staging, name))) rmSync(join(swap.target, name), { recursive: true, force: true });
  }
  for (const name of swap.outgoing) {
    const from = join(swap.aside, name);
    if (!pathEntryExists(from)) continue;
    rmSync(join(swap.target, name), { recursive: true, force: true });
    renameSync(from, join(swap.target, name));
  }
  rmSync(swap.aside, { recursive: true, force: true });
  rmSync(swap.staging, { recursive: true, force: true });
}

/**
 * A test hook's delay: the milliseconds in environment variable `variable` (0 when unset or not a positive number). The
 * interrupt tests use them to send a signal at a chosen step deterministically, never by racing a fast step:
 * LAYERQUANT_TEST_SWAP_DELAY_MS between the renames of a swap, LAYERQUANT_TEST_CELL_DELAY_MS before an experiment
 * records a finished cell or a queue worker reports a computed job.
 */
export function testHookDelayMs(variable: string): number {
  const ms = Number(process.env[variable] ?? 0);
  return Number.isFinite(ms) && ms > 0 ? ms : 0;
}

/**
 * Writes files that belong together (weights, their report, the config and tokenizer they go with) into `dir` so that
 * it holds either the whole previous set or the whole new one at every moment a reader or an interrupt can see it.
 * `write(staging)` writes the whole set into a staging directory inside `dir` (`.<name>.<pid>.<hex>.tmp`, removed on
 * SIGINT/SIGTERM/exit, or as a stale temporary by the next run after a SIGKILL): until it returns, `dir` is unchanged.
 * Then the previous set (every existing entry for which `replace(name, isDirectory)` is true, plus every name of the
 * new set) is renamed into an aside directory and the new files renamed in, `last` (the report) last in and first out.
 * The renames run synchronously, so no signal handler runs between them; should one (with the test hook delaying the
 * renames), or should the process die (SIGKILL), the swap's journal puts the previous set back whole (this process's
 * signal handler, or the next run's removeStaleTemporaries). Other files of `dir` (a statistics cache, the user's own
 * files) are never touched: `replace` is a predicate on names (tensor-io's isModelFileSetEntry for model directories),
 * never a list read from a file another program could have edited. Returns write's result and the names written.
 */
export async function writeFileSet<T>(
  dir: string,
  write: (staging: string) => Promise<T>,
  options: { readonly replace?: (name: string, isDirectory: boolean) => boolean; readonly last?: string } = {},
): Promise<{ result: T; files: string[] }> {
  const target = resolve(dir);
  if (!existsSync(target)) await mkdir(target);
  removeStaleTemporaries(target);
  const staging = temporaryPath(join(target, 'output'));
  trackTemporary(staging);
  try {
    await mkdir(staging);
    const result = await write(staging);
    const files = readdirSync(staging).filter((name) => isPlainName(name));
    const replace = options.replace;
    const previous = readdirSync(target).filter((name) => {
      if (!isPlainName(name)) return false;
      if (files.includes(name)) return true;
      if (!replace) return false;
      try {
        const info = statSync(join(target, name));
        return (info.isFile() || info.isDirectory()) && replace(name, info.isDirectory());
      } catch {
        return false;
      }
    });
    // The report first out, last in: a directory caught half-way never has a report describing other weights.
    const outgoing = [...previous].sort((a, b) => Number(b === options.last) - Number(a === options.last));
    const incoming = [...files].sort((a, b) => Number(a === options.last) - Number(b === options.last));
    const aside = temporaryPath(join(target, 'previous'));
    const swap: Swap = { target, staging, aside, incoming, outgoing };
    await mkdir(aside);
    trackTemporary(aside);
    writeFileSync(join(aside, SWAP_JOURNAL), JSON.stringify({ staging: basename(staging), incoming, outgoing }));
    activeSwaps.add(swap);
    const delay = testHookDelayMs('LAYERQUANT_TEST_SWAP_DELAY_MS');
    try {
      for (const name of outgoing) {
        if (pathEntryExists(join(target, name))) renameSync(join(target, name), join(aside, name));
        if (delay) await new Promise((r) => setTimeout(r, delay));
      }
      for (const name of incoming) {
        renameSync(join(staging, name), join(target, name));
        if (delay) await new Promise((r) => setTimeout(r, delay));
      }
      renameSync(join(aside, SWAP_JOURNAL), join(aside, SWAP_COMMITTED));
    } catch (error) {
      rollBackSwap(swap);
      throw error;
    } finally {
      activeSwaps.delete(swap);
    }
    rmSync(aside, { recursive: true, force: true });
    untrackTemporary(aside);
    return { result, files };
  } finally {
    rmSync(staging, { recursive: true, force: true });
    untrackTemporary(staging);
  }
}

