import { InvalidDataError, MissingFileError } from '@layerquant/core';
import { lstatSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { readFile } from 'node:fs/promises';

/**
 * What a path given as input is, checked before anything opens it: a missing path, a dangling link, a link loop, a
 * FIFO (which would block a read forever), a device such as /dev/null or a socket are typed errors naming the path and
 * what was expected; a directory where a file is expected (or the reverse) too. The one check every reader of a
 * user-named file or directory makes.
 */
function statOf(path: string, expected: string): Stats {
  let link: Stats;
  try {
    link = lstatSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new MissingFileError(path, `does not exist; pass ${expected}`);
    throw new MissingFileError(path, `cannot be read (${code ?? (error as Error).message}); pass ${expected}`);
  }
  try {
    return statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (link.isSymbolicLink() && (code === 'ENOENT' || code === 'ENOTDIR')) {
      let target = '';
      try {
        target = ` to ${readlinkSync(path)}`;
      } catch {
        // unreadable link text: named without it
      }
      throw new MissingFileError(path, `is a dangling symbolic link${target}; pass ${expected}`);
    }
    if (code === 'ELOOP') throw new MissingFileError(path, `is a symbolic link loop; pass ${expected}`);
    throw new MissingFileError(path, `cannot be read (${code ?? (error as Error).message}); pass ${expected}`);
  }
}

function kindOf(info: Stats): string {
  if (info.isFIFO()) return 'a FIFO (named pipe)';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'a device';
  if (info.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** Whether a directory entry is there (a link counts as itself, dangling or looping; existsSync follows links). */
export function pathEntryExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Checks that `path` is a regular file (after links); `expected` says what should be there ("the tokenizer.json of the model"). */
export function checkInputFile(path: string, expected: string): void {
  const info = statOf(path, expected);
  if (info.isFile()) return;
  if (info.isDirectory()) throw new InvalidDataError(path, `is a directory, not a file; pass ${expected}`);
  throw new InvalidDataError(path, `is ${kindOf(info)}, not a regular file; pass ${expected}`);
}

/** Whether `path` is a regular file or a directory (after links); anything else is a typed error naming it. */
export function inputPathKind(path: string, expected: string): 'file' | 'directory' {
  const info = statOf(path, expected);
  if (info.isFile()) return 'file';
  if (info.isDirectory()) return 'directory';
  throw new InvalidDataError(path, `is ${kindOf(info)}, not a file or directory; pass ${expected}`);
}

/**
 * Reads a UTF-8 text file a user named (an evaluation or calibration text): a regular file (checkInputFile), valid
 * UTF-8 and free of NUL bytes, so a binary file is refused naming it instead of being tokenized into a number.
 */
export async function readTextFile(path: string, expected: string): Promise<string> {
  checkInputFile(path, expected);
  const bytes = await readFile(path);
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw new InvalidDataError(path, `holds a NUL byte at offset ${nul}: it is a binary file, not text; pass ${expected}`);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new InvalidDataError(path, `is not valid UTF-8: it is a binary file or another encoding; pass ${expected} (convert it to UTF-8 first)`);
  }
}
