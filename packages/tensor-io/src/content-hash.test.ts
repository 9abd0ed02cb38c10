import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { contentHashCacheDir, fileContentHash, modelContentHash } from './content-hash.js';

const root = mkdtempSync(join(tmpdir(), 'lq-hash-'));
process.env.LAYERQUANT_CACHE_DIR = join(root, 'cache');

/** Oracle: sha256 of the whole file read at once (the hasher streams it in chunks and caches the digest). */
const oracle = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

function randomFile(path: string, bytes: number, seed: number): void {
  const data = Buffer.alloc(bytes);
  let s = seed;
  for (let i = 0; i < bytes; i++) data[i] = (s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0) >>> 24;
  writeFileSync(path, data);
}

/** Overwrites one byte in place and puts the modification time back, as the sweep's surgery did. */
function flipByteKeepingMtime(path: string, offset: number): void {
  const { atime, mtime } = statSync(path);
  const fd = openSync(path, 'r+');
  const byte = Buffer.alloc(1);
  byte[0] = readFileSync(path)[offset]! ^ 0x40;
  writeSync(fd, byte, 0, 1, offset);
  closeSync(fd);
  utimesSync(path, atime, mtime);
}

describe('fileContentHash', () => {
  it('is the sha256 of every byte (files larger than one read chunk included)', async () => {
    for (const [name, bytes] of [['empty', 0], ['small', 1000], ['chunks', 9 * 2 ** 20 + 7]] as const) {
      const path = join(root, name);
      randomFile(path, bytes, bytes + 1);
      expect(await fileContentHash(path)).toBe(oracle(path));
    }
  });

  it('sees a byte changed anywhere, even with the size and modification time kept', async () => {
    const path = join(root, 'edited');
    randomFile(path, 3 * 2 ** 20, 5);
    const before = await fileContentHash(path);
    for (const offset of [0, 1_500_000, 3 * 2 ** 20 - 1]) {
      flipByteKeepingMtime(path, offset);
      const after = await fileContentHash(path);
      expect(after).toBe(oracle(path));
      expect(after).not.toBe(before);
    }
  });

  it('keeps digests on disk by path and stamps: an entry whose stamps match is used, a stale one is not', async () => {
    const path = join(root, 'cached');
    randomFile(path, 4096, 9);
    const digest = await fileContentHash(path);
    const cache = contentHashCacheDir();
    const entries = readdirSync(cache).map((f) => JSON.parse(readFileSync(join(cache, f), 'utf8')) as { path: string; stamp: string; digest: string });
    const entry = entries.find((e) => e.path === path)!;
    expect(entry.digest).toBe(digest);
    // A file of the same size written later has new stamps: hashed again, not served from the cache.
    randomFile(path, 4096, 10);
    expect(await fileContentHash(path)).toBe(oracle(path));
    expect(await fileContentHash(path)).not.toBe(digest);
  });
});

describe('modelContentHash', () => {
  it('covers every file of the model file set and nothing else', async () => {
    const dir = join(root, 'model');
    mkdirSync(dir);
    randomFile(join(dir, 'model.safetensors'), 2 ** 20, 1);
    writeFileSync(join(dir, 'config.json'), '{"a": 1}');
    writeFileSync(join(dir, 'tokenizer.json'), '{}');
    const first = await modelContentHash(dir);
    writeFileSync(join(dir, 'notes.txt'), 'not the model');
    mkdirSync(join(dir, 'stats'));
    writeFileSync(join(dir, 'stats', 'fnorm.csv'), 'a cache');
    expect(await modelContentHash(dir)).toBe(first);
    flipByteKeepingMtime(join(dir, 'model.safetensors'), 700_000);
    const edited = await modelContentHash(dir);
    expect(edited).not.toBe(first);
    writeFileSync(join(dir, 'tokenizer.json'), '{ }');
    expect(await modelContentHash(dir)).not.toBe(edited);
    mkdirSync(join(dir, 'onnx'));
    writeFileSync(join(dir, 'onnx', 'model_q4.onnx'), 'graph');
    expect(await modelContentHash(dir)).not.toBe(edited);
  });
});
