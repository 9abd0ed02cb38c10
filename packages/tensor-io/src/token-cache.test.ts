import { brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TOKEN_CACHE_MIN_CHARS, withTokenCache } from './token-cache.js';
import { createTokenizer, type Tokenizer } from './tokenizer.js';
import { loadTokenizer } from './tokenizer-node.js';

/** The shipped model's tokenizer run by the engine directly (no cache), counting its encodes. */
function countingTokenizer(): { tokenizer: Tokenizer; calls: () => number } {
  const engine = createTokenizer(JSON.parse(readFileSync(join(shippedModelDir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(shippedModelDir, 'tokenizer_config.json'), 'utf8')));
  let calls = 0;
  return {
    tokenizer: { encode: (text) => (calls++, engine.encode(text)), decode: (ids) => engine.decode(ids) },
    calls: () => calls,
  };
}

const text = readFileSync(brownTestPath, 'utf8').slice(0, 3 * TOKEN_CACHE_MIN_CHARS);

describe('token id cache', () => {
  const saved = process.env.LAYERQUANT_CACHE_DIR;
  afterEach(() => {
    if (saved === undefined) delete process.env.LAYERQUANT_CACHE_DIR;
    else process.env.LAYERQUANT_CACHE_DIR = saved;
  });

  it('serves a long text from disk with the engine\'s ids; recomputes on a damaged entry, another tokenizer or another text', () => {
    const root = mkdtempSync(join(tmpdir(), 'token-cache-'));
    const env = { LAYERQUANT_CACHE_DIR: root };
    const { tokenizer, calls } = countingTokenizer();
    const expected = tokenizer.encode(text);
    const cached = withTokenCache(tokenizer, 'files-a', env);
    expect(cached.encode(text)).toEqual(expected);
    expect(calls()).toBe(2);
    // A second process would build its own wrapper: the ids come from the file.
    expect(withTokenCache(tokenizer, 'files-a', env).encode(text)).toEqual(expected);
    expect(calls()).toBe(2);
    const [entry] = readdirSync(join(root, 'tokens'));
    expect(readdirSync(join(root, 'tokens'))).toHaveLength(1);
    const file = join(root, 'tokens', entry!);
    const bytes = readFileSync(file);
    // One id changed (a valid-looking file): its digest no longer matches, so it is tokenized again and rewritten.
    const flipped = Buffer.from(bytes);
    flipped.writeUInt8(flipped.readUInt8(flipped.length - 4) ^ 0x01, flipped.length - 4);
    writeFileSync(file, flipped);
    expect(cached.encode(text)).toEqual(expected);
    expect(calls()).toBe(3);
    expect(readFileSync(file).equals(bytes)).toBe(true);
    // Truncated in the middle of an id, and cut to its header.
    for (const damaged of [bytes.subarray(0, bytes.length - 2), bytes.subarray(0, 40)]) {
      writeFileSync(file, damaged);
      expect(cached.encode(text)).toEqual(expected);
    }
    expect(calls()).toBe(5);
    // Another tokenizer's files, another text: their own entries.
    expect(withTokenCache(tokenizer, 'files-b', env).encode(text)).toEqual(expected);
    expect(cached.encode(`${text} more`)).toEqual(tokenizer.encode(`${text} more`));
    expect(readdirSync(join(root, 'tokens'))).toHaveLength(3);
    // A short text is never written.
    cached.encode(text.slice(0, 1000));
    expect(readdirSync(join(root, 'tokens'))).toHaveLength(3);
    // LAYERQUANT_CACHE_DIR='' turns it off.
    expect(withTokenCache(tokenizer, 'files-a', { LAYERQUANT_CACHE_DIR: '' })).toBe(tokenizer);
  });

  it('loadTokenizer: the same ids cold and warm as the engine gives, keyed by the tokenizer files\' content', async () => {
    const root = mkdtempSync(join(tmpdir(), 'token-cache-load-'));
    process.env.LAYERQUANT_CACHE_DIR = root;
    const { tokenizer } = countingTokenizer();
    const expected = tokenizer.encode(text);
    expect((await loadTokenizer(shippedModelDir)).encode(text)).toEqual(expected);
    expect(readdirSync(join(root, 'tokens'))).toHaveLength(1);
    expect((await loadTokenizer(shippedModelDir)).encode(text)).toEqual(expected);
    expect(readdirSync(join(root, 'tokens'))).toHaveLength(1);
  });
});
