import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidDataError, InvalidOptionError } from '@layerquant/core';
import { brownCalibPath, shippedModelDir } from '@layerquant/fixtures';
import { loadTokenizer, type Tokenizer } from '@layerquant/tensor-io';
import { calibrationBlocks, cutCalibrationBlocks, seededPermutation } from './calibration.js';

let tokenizer: Tokenizer;
beforeAll(async () => {
  tokenizer = await loadTokenizer(shippedModelDir);
});

describe('calibration blocks', () => {
  it('in order: the first blocks*seqlen tokens of the whole text, tokenized once', () => {
    const text = readFileSync(brownCalibPath, 'utf8');
    const whole = tokenizer.encode(text);
    const blocks = calibrationBlocks(text, tokenizer, { blocks: 32, seqlen: 512 });
    expect(blocks.blocks).toBe(32);
    expect(blocks.seqlen).toBe(512);
    expect(Array.from(blocks.ids)).toEqual(whole.slice(0, 32 * 512));
  });

  it('gives fewer blocks for a short text and rejects text shorter than one block', () => {
    const ids = Array.from({ length: 1000 }, (_, i) => i);
    const cut = cutCalibrationBlocks(ids, { blocks: 128, seqlen: 300 });
    expect(cut.blocks).toBe(3);
    expect(Array.from(cut.ids.subarray(600, 603))).toEqual([600, 601, 602]);
    expect(() => cutCalibrationBlocks(ids.slice(0, 10), { seqlen: 512, source: 'tiny.txt' })).toThrow(/tiny\.txt: has 10 tokens/);
    expect(() => calibrationBlocks('  \n ', tokenizer, { source: 'empty.txt' })).toThrow(InvalidDataError);
    expect(() => cutCalibrationBlocks(ids, { blocks: 0 })).toThrow(InvalidOptionError);
    expect(() => calibrationBlocks('some text', tokenizer, { order: 'random' as never })).toThrow(/option "order"/);
  });

  it('shuffled: whole lines in a seeded order, lines longer than a block skipped, same seed same blocks', () => {
    const lines = Array.from({ length: 60 }, (_, i) => `Line number ${i} says something about the jury and the court .`);
    lines[7] = Array.from({ length: 200 }, () => 'word').join(' '); // longer than a block of 64 tokens
    const text = lines.join('\n');
    const options = { blocks: 4, seqlen: 64, order: 'shuffled' as const };
    const a = calibrationBlocks(text, tokenizer, options);
    expect(a.blocks).toBe(4);
    expect(Array.from(calibrationBlocks(text, tokenizer, options).ids)).toEqual(Array.from(a.ids));
    const other = calibrationBlocks(text, tokenizer, { ...options, seed: 1 });
    expect(Array.from(other.ids)).not.toEqual(Array.from(a.ids));

    // The stream is the concatenation of encoded lines in permutation order, the long line left out.
    const order = seededPermutation(lines.length, 42);
    const expected = Array.from(order).filter((i) => i !== 7).flatMap((i) => tokenizer.encode(lines[i]!));
    expect(Array.from(a.ids)).toEqual(expected.slice(0, 4 * 64));
    expect(tokenizer.decode(Array.from(a.ids))).not.toContain('word word');
  });

  it('seeded permutations are permutations', () => {
    const p = seededPermutation(1000, 42);
    expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(Array.from(p.subarray(0, 10))).not.toEqual(Array.from({ length: 10 }, (_, i) => i));
  });
});
