import { MissingFileError } from '@layerquant/core';
import { brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTokenizer } from './tokenizer-node.js';

// The oracle: @huggingface/transformers' AutoTokenizer, the tokenizer tensor-io loaded before (a devDependency now).
async function transformersTokenizer(dir: string) {
  const { AutoTokenizer } = await import('@huggingface/transformers');
  const tokenizer = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  return {
    encode: (text: string) => tokenizer.encode(text, { add_special_tokens: false }),
    decode: (ids: number[]) => tokenizer.decode(ids, { skip_special_tokens: false }),
  };
}

describe('the tokenizer (tokenizer.json through @huggingface/tokenizers)', () => {
  it('gives transformers.js ids on the whole of brown-test, and decodes them back the same', async () => {
    const ours = await loadTokenizer(shippedModelDir);
    const oracle = await transformersTokenizer(shippedModelDir);
    const text = readFileSync(brownTestPath, 'utf8');
    const ids = ours.encode(text);
    expect(ids).toHaveLength(159_079);
    expect(ids).toEqual(oracle.encode(text));
    expect(ours.decode(ids.slice(0, 5000))).toBe(oracle.decode(ids.slice(0, 5000)));
    // What the whole texts may lack: leading spaces, newlines only, non-Latin text, byte fallback, the empty string.
    for (const text of ['', '  two leading spaces', '\n\n\n', 'naïve café – 東京 🚀', '\u0000\u0001 control', 'a'.repeat(3000)]) {
      expect(ours.encode(text), JSON.stringify(text.slice(0, 20))).toEqual(oracle.encode(text));
    }
  }, 120_000);

  it('names the missing tokenizer.json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'no-tokenizer-'));
    writeFileSync(join(dir, 'config.json'), '{}');
    await expect(loadTokenizer(dir)).rejects.toThrow(MissingFileError);
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer\.json/);
  });
});
