import { GgufFormatError, InvalidOptionError, seededNormal } from '@layerquant/core';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeGgml } from './codecs.js';
import { ggufTensorBytes } from './ggml-types.js';
import { openGgufFile, writeGgufFile } from './gguf-file.js';
import { gguf, ggufLayout, parseGgufBytes, type GgufValue } from './gguf-format.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-gguf-format-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const metadata = new Map<string, GgufValue>([
  ['general.architecture', gguf.string('llama')],
  ['general.alignment', gguf.u32(64)],
  ['u8', { type: 'UINT8', value: 255 }],
  ['i8', { type: 'INT8', value: -128 }],
  ['u16', { type: 'UINT16', value: 65535 }],
  ['i16', { type: 'INT16', value: -32768 }],
  ['i32', gguf.i32(-2_000_000_000)],
  ['f32', gguf.f32(0.5)],
  ['f64', { type: 'FLOAT64', value: Math.PI }],
  ['bool', gguf.bool(true)],
  ['u64', gguf.u64(2n ** 63n + 5n)],
  ['i64', { type: 'INT64', value: -(2n ** 62n) }],
  ['strings', gguf.array('STRING', ['', 'é', '<|endoftext|>'])],
  ['ints', gguf.array('INT32', [1, -2, 3])],
  ['empty', gguf.array('FLOAT32', [])],
]);

describe('GGUF header writer and reader', () => {
  const random = seededNormal(1);
  const matrix = Float32Array.from({ length: 8 * 256 }, () => random());
  const tensors = [
    { name: 'a.weight', type: 'Q4_K' as const, shape: [8, 256], encode: () => encodeGgml('Q4_K', matrix, [8, 256]) },
    { name: 'b.weight', type: 'F32' as const, shape: [5], encode: () => encodeGgml('F32', Float32Array.of(1, 2, 3, 4, 5), [5]) },
    { name: 'c.weight', type: 'Q8_0' as const, shape: [2, 2, 32], encode: () => encodeGgml('Q8_0', matrix.subarray(0, 128), [2, 2, 32]) },
  ];

  it('writes a file of exactly the size ggufLayout predicts and reads every value and tensor back', async () => {
    const file = join(root, 'round-trip.gguf');
    const layout = await writeGgufFile(file, metadata, tensors);
    expect(statSync(file).size).toBe(layout.fileBytes);
    expect(layout.fileBytes).toBe(ggufLayout(metadata, tensors).fileBytes);
    expect(layout.alignment).toBe(64);
    expect(layout.tensorBytes).toBe(ggufTensorBytes('Q4_K', [8, 256]) + 20 + ggufTensorBytes('Q8_0', [2, 2, 32]));
    expect(layout.fileBytes).toBe(layout.headerBytes + layout.tensorBytes + layout.paddingBytes);
    expect(readdirSync(root).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const opened = await openGgufFile(file);
    expect([...opened.header.metadata]).toEqual([...metadata]);
    expect(opened.header.tensors.map((t) => [t.name, t.type.name, [...t.shape], [...t.dims]])).toEqual([
      ['a.weight', 'Q4_K', [8, 256], [256, 8]],
      ['b.weight', 'F32', [5], [5]],
      ['c.weight', 'Q8_0', [2, 2, 32], [32, 2, 2]],
    ]);
    expect(opened.header.tensors.every((t) => (t.byteOffset % 64) === 0)).toBe(true);
    expect(Array.from((await opened.read('b.weight')).data)).toEqual([1, 2, 3, 4, 5]);
    await opened.close();
  });

  it('an independent reader (@huggingface/gguf) reads every value type', async () => {
    const file = join(root, 'independent.gguf');
    await writeGgufFile(file, metadata, tensors);
    const { gguf: read } = await import('@huggingface/gguf');
    const result = await read(file, { allowLocalFile: true });
    const theirs = result.metadata as unknown as Record<string, unknown>;
    const tensorInfos = result.tensorInfos;
    expect(theirs['u8']).toBe(255);
    expect(theirs['i16']).toBe(-32768);
    expect(theirs['u64']).toBe(2n ** 63n + 5n);
    expect(theirs['i64']).toBe(-(2n ** 62n));
    expect(theirs['f64']).toBe(Math.PI);
    expect(theirs['bool']).toBe(true);
    expect(theirs['strings']).toEqual(['', 'é', '<|endoftext|>']);
    expect(theirs['ints']).toEqual([1, -2, 3]);
    expect(tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype])).toEqual([['a.weight', [256, 8], 12], ['b.weight', [5], 0], ['c.weight', [32, 2, 2], 8]]);
  });

  it('refuses bad metadata and tensor specs before writing anything', async () => {
    const file = join(root, 'refused.gguf');
    await expect(writeGgufFile(file, new Map([['x', { type: 'UINT8', value: 256 }]]), [])).rejects.toThrow(InvalidOptionError);
    await expect(writeGgufFile(file, new Map([['general.alignment', gguf.u32(48)]]), [])).rejects.toThrow(/power of 2/);
    await expect(writeGgufFile(file, metadata, [{ ...tensors[0]!, shape: [8, 128] }])).rejects.toThrow(/a\.weight.*256/);
    await expect(writeGgufFile(file, metadata, [{ ...tensors[1]!, encode: () => new Uint8Array(3) }])).rejects.toThrow(/b\.weight.*3 bytes/);
    expect(readdirSync(root).filter((f) => f.startsWith('.refused'))).toEqual([]);
  });

  it('names the tensor whose data the file does not hold', async () => {
    const file = join(root, 'truncated.gguf');
    await writeGgufFile(file, metadata, tensors);
    const bytes = new Uint8Array((await import('node:fs')).readFileSync(file));
    const cut = bytes.subarray(0, bytes.length - 200);
    expect(() => parseGgufBytes(cut, 'truncated.gguf')).toThrow(GgufFormatError);
    expect(() => parseGgufBytes(cut, 'truncated.gguf')).toThrow(/truncated\.gguf \(tensor "c\.weight"\).*truncated/);
  });
});
