import { describe, expect, it } from 'vitest';
import { codesPerWord, packCodes, unpackCodes, wordsPerRow } from './bit-packing.js';
import { seededRandom } from './testing/random-matrix.js';

describe('bit packing', () => {
  it('puts floor(32 / bits) codes in a word: 3-bit packs 10 values per 32-bit word', () => {
    expect([1, 2, 3, 4, 5, 6, 8].map(codesPerWord)).toEqual([32, 16, 10, 8, 6, 5, 4]);
    expect(wordsPerRow(64, 3)).toBe(7);
    expect(wordsPerRow(640, 3)).toBe(64);
    expect(wordsPerRow(256, 4)).toBe(32);
  });

  it('lays codes out least significant bits first, rows padded to whole words', () => {
    // 3-bit row of 12 codes: word 0 = codes 0..9, word 1 = codes 10, 11 then zero padding
    const codes = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 7, 5]);
    const packed = packCodes(codes, 1, 12, 3);
    let expected = 0;
    for (let i = 0; i < 10; i++) expected += codes[i]! * 2 ** (3 * i);
    expect(Array.from(packed)).toEqual([expected, 7 + 5 * 8]);
    // 4-bit, two rows of 3: each row its own word
    expect(Array.from(packCodes(Uint8Array.from([1, 2, 3, 15, 14, 13]), 2, 3, 4))).toEqual([0x321, 0xdef]);
    // 8-bit is little-endian bytes
    expect(Array.from(packCodes(Uint8Array.from([1, 2, 3, 255]), 1, 4, 8))).toEqual([0xff030201]);
  });

  it('round-trips losslessly for every width and odd row lengths', () => {
    const random = seededRandom(11);
    for (const bits of [1, 2, 3, 4, 5, 6, 8]) {
      for (const [rows, columns] of [[3, 64], [5, 67], [1, 1], [7, 640], [2, 13]] as const) {
        const codes = new Uint8Array(rows * columns);
        for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(random() * 2 ** bits);
        const packed = packCodes(codes, rows, columns, bits);
        expect(packed.length).toBe(rows * wordsPerRow(columns, bits));
        expect(unpackCodes(packed, rows, columns, bits)).toEqual(codes);
      }
    }
  });

  it('rejects a packed array of the wrong length', () => {
    expect(() => unpackCodes(new Uint32Array(3), 2, 64, 4)).toThrow(/expected 16/);
  });
});
