import {
  MissingFileError,
  MissingTensorError,
  SafetensorsFormatError,
  UnsupportedDTypeError,
} from '@layerquant/core';
import { shippedModelDir } from '@layerquant/fixtures';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectModel, openCheckpoint, readSafetensorsHeader, writeSafetensors, writeSafetensorsStreaming } from './index.js';

const work = mkdtempSync(join(tmpdir(), 'tensor-io-'));
afterAll(() => undefined);

/** Builds a safetensors file by hand (independent of the writer under test). */
function handMade(header: unknown, dataBytes: number, rawHeader?: string): Uint8Array {
  const json = Buffer.from(rawHeader ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

function fixture(name: string, bytes: Uint8Array): string {
  const dir = mkdtempSync(join(work, `${name}-`));
  writeFileSync(join(dir, 'model.safetensors'), bytes);
  return dir;
}

describe('the shipped model', () => {
  it('has 291 tensors, 26,231,040 params of which 22,020,096 in linear matrices', async () => {
    const summary = await inspectModel(shippedModelDir);
    expect(summary.tensors).toBe(291);
    expect(summary.params).toBe(26_231_040);
    expect(summary.linearParams).toBe(22_020_096);
    expect(summary.linearMatrices).toBe(224);
    expect(summary.numLayers).toBe(32);
    expect(summary.files).toBe(4);
    expect(summary.dtypes).toEqual({ BF16: 291 });
  });

  it('reads BF16 values equal to the stored bit patterns shifted left by 16 (checked on the raw file bytes)', async () => {
    const checkpoint = await openCheckpoint(shippedModelDir);
    const index = JSON.parse(readFileSync(join(shippedModelDir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    for (const name of ['model.layers.7.mlp.down_proj.weight', 'model.embed_tokens.weight', 'model.norm.weight']) {
      const file = readFileSync(join(shippedModelDir, index.weight_map[name]!));
      const headerLength = Number(file.readBigUInt64LE(0));
      const entry = (JSON.parse(file.subarray(8, 8 + headerLength).toString()) as Record<string, { data_offsets: [number, number] }>)[name]!;
      const start = 8 + headerLength + entry.data_offsets[0];
      const tensor = await checkpoint.read(name);
      const scratch = new DataView(new ArrayBuffer(4));
      for (const i of [0, 1, 17, 255, 1000, tensor.data.length - 1].filter((j) => j < tensor.data.length)) {
        scratch.setUint32(0, file.readUInt16LE(start + 2 * i) << 16);
        expect(tensor.data[i]).toBe(scratch.getFloat32(0));
      }
    }
    await checkpoint.close();
  });

  it('writes then reads back bit-exactly (BF16 through float32 and back)', async () => {
    const checkpoint = await openCheckpoint(shippedModelDir);
    const names = checkpoint.tensors.filter((t) => t.name.startsWith('model.layers.3.')).map((t) => t.name);
    const tensors = await Promise.all(names.map((n) => checkpoint.read(n)));
    const out = join(work, 'roundtrip.safetensors');
    await writeSafetensors(out, tensors, { format: 'pt', note: 'roundtrip' });
    const back = await openCheckpoint(out);
    expect(back.metadata).toEqual({ format: 'pt', note: 'roundtrip' });
    for (const name of names) {
      expect(Buffer.from(await back.readRaw(name)).equals(Buffer.from(await checkpoint.readRaw(name)))).toBe(true);
    }
    await back.close();
    await checkpoint.close();
  });
});

describe('bad input gets a typed error naming the file and tensor', () => {
  const good = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const cases: Array<[string, Uint8Array, new (...args: never[]) => Error, RegExp]> = [
    ['truncated below 8 bytes', new Uint8Array(5), SafetensorsFormatError, /truncated/],
    ['header length past the end', (() => { const b = handMade(good, 8); new DataView(b.buffer).setBigUint64(0, 10_000n, true); return b; })(), SafetensorsFormatError, /runs past the end/],
    ['non-JSON header', handMade(null, 8, '{"a": nope'), SafetensorsFormatError, /not valid JSON/],
    ['offsets past the data', handMade({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8), SafetensorsFormatError, /tensor "a".*runs past the data section/],
    ['overlapping offsets', handMade({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12), SafetensorsFormatError, /tensor "b".*overlap.*"a"/],
    ['unknown dtype', handMade({ a: { dtype: 'F8_E9M0', shape: [2], data_offsets: [0, 2] } }, 2), UnsupportedDTypeError, /tensor "a".*"F8_E9M0"/],
    ['shape/byte-count mismatch', handMade({ a: { dtype: 'BF16', shape: [3, 3], data_offsets: [0, 8] } }, 8), SafetensorsFormatError, /tensor "a".*needs 18 bytes/],
    ['header length 3 bytes short (padding cut)', (() => { const b = handMade(null, 8, `${JSON.stringify(good)}    `); const v = new DataView(b.buffer); v.setBigUint64(0, v.getBigUint64(0, true) - 3n, true); return b; })(), SafetensorsFormatError, /tensor "a".*3 trailing bytes/],
    ['a hole between tensors', handMade({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 12), SafetensorsFormatError, /tensor "b".*start at 8 but "a" ends at 4: 4 bytes/],
    ['trailing bytes after the last tensor', handMade(good, 12), SafetensorsFormatError, /tensor "a".*4 trailing bytes/],
    ['a zero-length tensor hiding an overlap', handMade({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, z: { dtype: 'F32', shape: [0], data_offsets: [4, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), SafetensorsFormatError, /overlap those of "a"/],
    ['a duplicate tensor key', handMade(null, 8, '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}'), SafetensorsFormatError, /tensor "a".*appears twice/],
    ['a duplicate field in an entry', handMade(null, 8, '{"a":{"dtype":"U8","dtype":"F32","shape":[2],"data_offsets":[0,8]}}'), SafetensorsFormatError, /tensor "a".*"dtype" appears twice/],
    ['__metadata__ value not a string', handMade({ __metadata__: { format: { nested: 1 } }, ...good }, 8), SafetensorsFormatError, /__metadata__\["format"\].*must be strings/],
    ['a dimension beyond 2^53', handMade(null, 8, '{"a":{"dtype":"U8","shape":[9007199254740993,0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'), SafetensorsFormatError, /tensor "a".*beyond 2\^53/],
    ['a fractional dimension', handMade(null, 8, '{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}'), SafetensorsFormatError, /tensor "a".*not an integer/],
    ['deeply nested metadata', handMade(null, 8, `{"__metadata__":{"x":${'['.repeat(100_000)}${']'.repeat(100_000)}},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`), SafetensorsFormatError, /nested more than 64 levels/],
  ];
  for (const [label, bytes, errorClass, message] of cases) {
    it(label, async () => {
      const dir = fixture(label.replace(/\W+/g, '-'), bytes);
      const error = await openCheckpoint(dir).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(errorClass);
      expect((error as Error).message).toContain(join(dir, 'model.safetensors'));
      expect((error as Error).message).toMatch(message);
    });
  }

  it('an index naming a missing shard', async () => {
    const dir = fixture('missing-shard', handMade(good, 8));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'model.safetensors', b: 'model-00002-of-00002.safetensors' } }));
    const error = await openCheckpoint(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MissingFileError);
    expect((error as Error).message).toMatch(/model-00002-of-00002\.safetensors.*tensor "b"/);
  });

  it('an index naming a tensor the shard lacks', async () => {
    const dir = fixture('stale-index', handMade(good, 8));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'model.safetensors', ghost: 'model.safetensors' } }));
    await expect(openCheckpoint(dir)).rejects.toThrow(MissingTensorError);
    await expect(openCheckpoint(dir)).rejects.toThrow(/"ghost"/);
  });

  it('an index that puts a tensor in the wrong shard, or misses one', async () => {
    const dir = fixture('wrong-shard', handMade(good, 8));
    writeFileSync(join(dir, 'other.safetensors'), handMade({ b: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, c: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'other.safetensors', b: 'model.safetensors', c: 'other.safetensors' } }));
    await expect(openCheckpoint(dir)).rejects.toThrow(/tensor "a".*lists the tensor in other\.safetensors but it is stored in model\.safetensors/);
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'model.safetensors', b: 'other.safetensors' } }));
    await expect(openCheckpoint(dir)).rejects.toThrow(/other\.safetensors \(tensor "c"\).*does not list it/);
  });

  it('a directory with no weights', async () => {
    const dir = mkdtempSync(join(work, 'empty-'));
    await expect(openCheckpoint(dir)).rejects.toThrow(/no model\.safetensors/);
    await expect(openCheckpoint(join(dir, 'nope'))).rejects.toThrow(MissingFileError);
  });

  it('a file truncated inside the data section', async () => {
    const full = handMade({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 16);
    const dir = fixture('cut', full.subarray(0, full.length - 3));
    await expect(readSafetensorsHeader(join(dir, 'model.safetensors'))).rejects.toThrow(/tensor "a".*truncated/);
  });
});

describe('writes are atomic', () => {
  it('a failing write leaves no file behind', async () => {
    const dir = mkdtempSync(join(work, 'atomic-'));
    const target = join(dir, 'out.safetensors');
    const specs = [{ name: 'x', dtype: 'F32' as const, shape: [4] }];
    await expect(writeSafetensorsStreaming(target, specs, () => new Uint8Array(12))).rejects.toThrow(/tensor "x".*needs 16 bytes/);
    await expect(writeSafetensorsStreaming(target, specs, () => { throw new Error('producer failed'); })).rejects.toThrow('producer failed');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('writes a header the reader (and the format) accepts, data 8-byte aligned', async () => {
    const target = join(work, 'aligned.safetensors');
    await writeSafetensors(target, [
      { name: 'w', dtype: 'F16', shape: [3], data: new Float32Array([1, -2.5, 65504]) },
      { name: 'codes', dtype: 'U8', shape: [2], data: new Uint8Array([7, 255]) },
    ]);
    const header = await readSafetensorsHeader(target);
    expect(header.dataStart % 8).toBe(0);
    const checkpoint = await openCheckpoint(target);
    expect([...(await checkpoint.read('w')).data]).toEqual([1, -2.5, 65504]);
    expect([...(await checkpoint.read('codes')).data]).toEqual([7, 255]);
    await checkpoint.close();
  });
});
