import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { layerquantCacheDir } from './content-hash.js';
import type { Tokenizer } from './tokenizer.js';

/**
 * Token ids of long texts, kept on disk between runs: an evaluation or calibration text is tokenized whole on every
 * run (brown-test, 0.6 MB: about 2 s of BPE in JavaScript; a 7B evaluation set: longer), for a few KB of ids.
 *
 * An entry is keyed by the sha256 of the tokenizer's files (tokenizer.json, tokenizer_config.json), the tokenizer
 * engine's version and the text, and holds a sha256 of that key and the ids, checked on every read: a damaged,
 * truncated or foreign file is ignored and rewritten, never read as ids. Files are written under a temporary name and
 * renamed, so concurrent runs never see a half-written one. `LAYERQUANT_CACHE_DIR=''` turns the cache off.
 */

/** Texts shorter than this are tokenized every time (a prompt, a test sentence): the cache would cost more. */
export const TOKEN_CACHE_MIN_CHARS = 64 * 1024;
const MAGIC = Buffer.from('LQTOKID1');

let engineVersion: string | undefined;
/** The version of @huggingface/tokenizers (another version may split a text otherwise). */
function tokenizerEngineVersion(): string {
  if (engineVersion !== undefined) return engineVersion;
  engineVersion = 'unknown';
  try {
    // The package exports no package.json: walk up from its entry to find it.
    let dir = dirname(createRequire(import.meta.url).resolve('@huggingface/tokenizers'));
    for (let i = 0; i < 4 && !existsSync(join(dir, 'package.json')); i++) dir = dirname(dir);
    const json = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
    if (json.name === '@huggingface/tokenizers' && json.version) engineVersion = json.version;
  } catch {
    // Unknown version: entries still carry the files' hashes; 'unknown' never matches a known version's entries.
  }
  return engineVersion;
}

function entryDigest(key: string, ids: Buffer): Buffer {
  return createHash('sha256').update(key).update(ids).digest();
}

function readEntry(file: string, key: string): number[] | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch {
    return undefined;
  }
  const head = MAGIC.length + 32;
  if (bytes.length < head || (bytes.length - head) % 4 !== 0 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const ids = bytes.subarray(head);
  if (!entryDigest(key, ids).equals(bytes.subarray(MAGIC.length, head))) return undefined;
  const out = new Array<number>(ids.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = ids.readUInt32LE(i * 4);
  return out;
}

function writeEntry(dir: string, file: string, key: string, ids: readonly number[]): void {
  try {
    mkdirSync(dir, { recursive: true });
    const body = Buffer.alloc(ids.length * 4);
    for (let i = 0; i < ids.length; i++) body.writeUInt32LE(ids[i]!, i * 4);
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      writeFileSync(tmp, Buffer.concat([MAGIC, entryDigest(key, body), body]));
      renameSync(tmp, file);
    } finally {
      rmSync(tmp, { force: true });
    }
  } catch {
    // A cache that cannot be written costs a tokenization next time, nothing else.
  }
}

/**
 * `tokenizer` with its `encode` of long texts served from the cache. `filesKey` names the tokenizer's files by
 * content (their sha256s); the ids are the tokenizer's own, computed once per text.
 */
export function withTokenCache(tokenizer: Tokenizer, filesKey: string, env: NodeJS.ProcessEnv = process.env): Tokenizer {
  const dir = layerquantCacheDir('tokens', env);
  if (!dir) return tokenizer;
  return {
    ...tokenizer,
    encode(text: string): number[] {
      if (text.length < TOKEN_CACHE_MIN_CHARS) return tokenizer.encode(text);
      const key = createHash('sha256').update(JSON.stringify(['layerquant-token-ids', 1, tokenizerEngineVersion(), filesKey])).update(text).digest('hex');
      const file = join(dir, `${key}.ids`);
      const cached = readEntry(file, key);
      if (cached) return cached;
      const ids = tokenizer.encode(text);
      writeEntry(dir, file, key, ids);
      return ids;
    },
  };
}
