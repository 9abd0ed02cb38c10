import { LayerquantError, seededRandom } from '@layerquant/core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseGgufBytes } from './gguf-format.js';
import { readGgufHeader } from './gguf-file.js';

/**
 * Seeded fuzzing of the GGUF reader: 1,000 mutations of a small file built here by an independent writer (from a
 * plain description), each also decoded by `referenceDecode`, written from the format's rules (llama.cpp's
 * gguf.cpp, plus the file size): where it finds the file valid, the reader must return exactly its metadata and
 * tensors; where not, it must throw a LayerquantError naming the file. Nothing may hang or throw anything else.
 */

// ---- an independent writer of GGUF from a description ------------------------------------------------------------

type Item = { t: number; v: unknown };
interface Description {
  magic: number[];
  version: number;
  kv: Array<{ key: string | Uint8Array; type: number; itemType?: number; value: unknown }>;
  tensors: Array<{ name: string | Uint8Array; dims: bigint[]; type: number; offset: bigint }>;
  /** Counts written in the preamble (default: the list lengths). */
  tensorCount?: bigint;
  kvCount?: bigint;
  data: Uint8Array;
  /** Padding between the tensor table and the data (default: to 32). */
  pad?: number;
}

const SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

class Out {
  bytes: number[] = [];
  u8(v: number) { this.bytes.push(v & 0xff); }
  n(v: bigint | number, size: number) { let x = BigInt.asUintN(size * 8, BigInt(v)); for (let i = 0; i < size; i++) { this.bytes.push(Number(x & 0xffn)); x >>= 8n; } }
  f(v: number, size: 4 | 8) { const b = new Uint8Array(size); const d = new DataView(b.buffer); if (size === 4) d.setFloat32(0, v, true); else d.setFloat64(0, v, true); this.bytes.push(...b); }
  s(v: string | Uint8Array) { const b = typeof v === 'string' ? new TextEncoder().encode(v) : v; this.n(b.length, 8); this.bytes.push(...b); }
}

function scalar(o: Out, t: number, v: unknown) {
  if (t === 8) return o.s(v as string);
  if (t === 6) return o.f(v as number, 4);
  if (t === 12) return o.f(v as number, 8);
  if (t === 7) return o.u8(v === true ? 1 : v === false ? 0 : (v as number));
  o.n(v as number | bigint, SIZES[t] ?? 1);
}

function build(d: Description): Uint8Array {
  const o = new Out();
  o.bytes.push(...d.magic);
  o.n(d.version, 4);
  o.n(d.tensorCount ?? BigInt(d.tensors.length), 8);
  o.n(d.kvCount ?? BigInt(d.kv.length), 8);
  for (const e of d.kv) {
    o.s(e.key);
    o.n(e.type, 4);
    if (e.type === 9) {
      o.n(e.itemType!, 4);
      const items = e.value as unknown[];
      o.n(items.length, 8);
      for (const item of items) scalar(o, e.itemType!, item);
    } else scalar(o, e.type, e.value);
  }
  for (const t of d.tensors) {
    o.s(t.name);
    o.n(t.dims.length, 4);
    for (const dim of t.dims) o.n(dim, 8);
    o.n(t.type, 4);
    o.n(t.offset, 8);
  }
  const pad = d.pad ?? (32 - (o.bytes.length % 32)) % 32;
  for (let i = 0; i < pad; i++) o.u8(0);
  const out = new Uint8Array(o.bytes.length + d.data.length);
  out.set(o.bytes);
  out.set(d.data, o.bytes.length);
  return out;
}

// ---- an independent reference decoder -----------------------------------------------------------------------------

/** Block size and bytes of the ggml type ids the reference accepts. */
const TYPES: Record<number, [number, number]> = { 9: [32, 36], 0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 6: [32, 22], 7: [32, 24], 8: [32, 34], 10: [256, 84], 12: [256, 144], 14: [256, 210], 30: [1, 2], 24: [1, 1] };

class Invalid extends Error {}

interface Decoded {
  metadata: Map<string, { type: number; value: unknown }>;
  tensors: Array<{ name: string; dims: number[]; type: number; bytes: Uint8Array }>;
}

function referenceDecode(file: Uint8Array): Decoded | undefined {
  let p = 0;
  const fail = (): never => {
    throw new Invalid();
  };
  const take = (n: number) => {
    if (n < 0 || p + n > file.length) fail();
    const b = file.subarray(p, p + n);
    p += n;
    return b;
  };
  const uint = (size: number) => {
    const b = take(size);
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    return v;
  };
  const str = (strict: boolean) => {
    const n = uint(8);
    if (n > BigInt(file.length)) fail();
    const b = take(Number(n));
    try {
      return new TextDecoder('utf-8', { fatal: strict }).decode(b);
    } catch {
      return fail();
    }
  };
  const value = (t: number): unknown => {
    const dv = (n: number) => new DataView(take(n).slice().buffer);
    switch (t) {
      case 0: return Number(uint(1));
      case 1: return dv(1).getInt8(0);
      case 2: return Number(uint(2));
      case 3: return dv(2).getInt16(0, true);
      case 4: return Number(uint(4));
      case 5: return dv(4).getInt32(0, true);
      case 6: return dv(4).getFloat32(0, true);
      case 7: { const b = Number(uint(1)); if (b > 1) fail(); return b === 1; }
      case 8: return str(false);
      case 10: return uint(8);
      case 11: return BigInt.asIntN(64, uint(8));
      case 12: return dv(8).getFloat64(0, true);
      default: return fail();
    }
  };
  try {
    if (String.fromCharCode(...take(4)) !== 'GGUF') fail();
    const version = Number(uint(4));
    if (version !== 2 && version !== 3) fail();
    const nTensors = uint(8);
    const nKv = uint(8);
    if (nTensors > BigInt(file.length) || nKv > BigInt(file.length)) fail();
    const metadata = new Map<string, { type: number; value: unknown }>();
    for (let i = 0n; i < nKv; i++) {
      const key = str(true);
      if (key === '' || metadata.has(key)) fail();
      const t = Number(BigInt.asIntN(32, uint(4)));
      if (t === 9) {
        const it = Number(BigInt.asIntN(32, uint(4)));
        if (it === 9 || !(it in SIZES || it === 8)) fail();
        const n = uint(8);
        if (n > BigInt(file.length)) fail();
        const items: unknown[] = [];
        for (let j = 0n; j < n; j++) items.push(value(it));
        metadata.set(key, { type: 9, value: items });
      } else metadata.set(key, { type: t, value: value(t) });
    }
    let alignment = 32;
    const a = metadata.get('general.alignment');
    if (a) {
      if (a.type !== 4) fail();
      alignment = a.value as number;
      if (alignment === 0 || (alignment & (alignment - 1)) !== 0) fail();
    }
    const infos: Array<{ name: string; dims: number[]; type: number; offset: bigint; size: number }> = [];
    for (let i = 0n; i < nTensors; i++) {
      const name = str(true);
      if (name === '' || new TextEncoder().encode(name).length > 63 || infos.some((t) => t.name === name)) fail();
      const nd = Number(uint(4));
      if (nd < 1 || nd > 4) fail();
      const dims: bigint[] = [];
      for (let j = 0; j < nd; j++) dims.push(uint(8));
      if (dims.some((x) => x > BigInt(Number.MAX_SAFE_INTEGER))) fail();
      const elements = dims.reduce((x, y) => x * y, 1n);
      if (elements > BigInt(Number.MAX_SAFE_INTEGER)) fail();
      const type = Number(BigInt.asIntN(32, uint(4)));
      const traits = TYPES[type];
      if (!traits || dims[0]! % BigInt(traits[0]) !== 0n) fail();
      const offset = uint(8);
      infos.push({ name, dims: dims.map(Number), type, offset, size: (Number(elements) / traits![0]) * traits![1] });
    }
    const headerEnd = p;
    const dataStart = nTensors > 0n ? Math.ceil(headerEnd / alignment) * alignment : headerEnd;
    let expected = 0n;
    const tensors: Decoded['tensors'] = [];
    for (const t of infos) {
      if (t.offset !== expected) fail();
      const start = dataStart + Number(t.offset);
      if (start + t.size > file.length) fail();
      tensors.push({ name: t.name, dims: t.dims, type: t.type, bytes: file.subarray(start, start + t.size) });
      expected += BigInt(Math.ceil(t.size / alignment) * alignment);
    }
    const last = infos[infos.length - 1];
    const maxEnd = last ? dataStart + Number(expected) : dataStart;
    if (file.length > maxEnd) fail();
    return { metadata, tensors };
  } catch (error) {
    if (error instanceof Invalid) return undefined;
    throw error;
  }
}

// ---- the seed file and its mutations -------------------------------------------------------------------------------

function seed(): Description {
  const kv: Description['kv'] = [
    { key: 'general.architecture', type: 8, value: 'llama' },
    { key: 'llama.block_count', type: 4, value: 2 },
    { key: 'llama.rope.freq_base', type: 6, value: 10000 },
    { key: 'general.flag', type: 7, value: true },
    { key: 'general.big', type: 10, value: 2n ** 40n },
    { key: 'general.neg', type: 11, value: -5n },
    { key: 'general.small', type: 1, value: -3 },
    { key: 'tokenizer.ggml.tokens', type: 9, itemType: 8, value: ['a', 'b', '<|x|>'] },
    { key: 'tokenizer.ggml.token_type', type: 9, itemType: 5, value: [1, 1, 3] },
  ];
  const specs: Array<[string, number, bigint[], number]> = [['token_embd.weight', 0, [4n, 3n], 48], ['blk.0.attn_q.weight', 2, [64n, 2n], 72], ['blk.0.attn_norm.weight', 0, [5n], 20], ['output.weight', 8, [32n, 1n], 34]];
  const tensors: Description['tensors'] = [];
  let offset = 0;
  const chunks: number[] = [];
  for (const [name, type, dims, size] of specs) {
    tensors.push({ name, dims, type, offset: BigInt(offset) });
    for (let i = 0; i < size; i++) chunks.push((offset + i * 37 + 11) & 0xff);
    const padded = Math.ceil(size / 32) * 32;
    for (let i = size; i < padded; i++) chunks.push(0);
    offset += padded;
  }
  return { magic: [0x47, 0x47, 0x55, 0x46], version: 3, kv, tensors, data: Uint8Array.from(chunks) };
}

function mutate(random: () => number): { kind: string; bytes: Uint8Array } {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const d = seed();
  const kinds = ['byte flip', 'truncation', 'trailing bytes', 'version', 'counts', 'key', 'value type', 'bool', 'alignment', 'tensor name', 'dims', 'tensor type', 'offset', 'padding'] as const;
  const kind = pick(kinds);
  const tensor = () => d.tensors[int(d.tensors.length)]!;
  switch (kind) {
    case 'byte flip': {
      const bytes = build(d);
      const headerLength = bytes.length - d.data.length;
      for (let k = 1 + int(3); k > 0; k--) bytes[int(headerLength)] = int(256);
      return { kind, bytes };
    }
    case 'truncation': {
      const bytes = build(d);
      return { kind, bytes: bytes.slice(0, int(bytes.length)) };
    }
    case 'trailing bytes': {
      // Dropping the last tensor's padding is valid; anything past the padded end is not.
      const cut = pick([-30, -2, 1, 5, 40]);
      d.data = cut < 0 ? d.data.slice(0, d.data.length + cut) : Uint8Array.from([...d.data, ...new Array(cut).fill(7)]);
      break;
    }
    case 'version': d.version = pick([0, 1, 2, 3, 4, 0x03000000]); break;
    case 'counts': if (random() < 0.5) d.tensorCount = BigInt(pick([0, 3, 5, 2 ** 40, -1])); else d.kvCount = BigInt(pick([0, 8, 10, 2 ** 40])); break;
    case 'key': {
      const e = d.kv[int(d.kv.length)]!;
      e.key = pick<string | Uint8Array>(['', 'general.architecture', 'llama.block_count', Uint8Array.of(0xff, 0xfe), 'x'.repeat(100), 'fine.key']);
      break;
    }
    case 'value type': {
      const e = d.kv[int(d.kv.length)]!;
      if (random() < 0.5) {
        e.type = pick([13, -1, 100, 4, 8, 10]);
        e.value = e.type === 8 ? 'changed' : e.type === 10 ? 7n : 7;
      } else {
        e.type = 9;
        e.itemType = pick([9, 13, 4, 8]);
        e.value = e.itemType === 8 ? ['a', 'b'] : [1, 2];
      }
      break;
    }
    case 'bool': d.kv[3]!.value = pick([0, 1, 2, 255]); break;
    case 'alignment': d.kv.push({ key: 'general.alignment', type: pick([4, 4, 5, 10]), value: pick([32, 64, 16, 0, 3, 48]) }); break;
    case 'tensor name': tensor().name = pick<string | Uint8Array>(['', 'token_embd.weight', 'n'.repeat(63), 'n'.repeat(64), Uint8Array.of(0xc3), 'fine']); break;
    case 'dims': {
      const t = tensor();
      const op = int(3);
      if (op === 0) t.dims = t.dims.slice(0, pick([0, 1]));
      else if (op === 1) t.dims = [...t.dims, 1n, 1n, 1n];
      else t.dims[int(t.dims.length)] = pick([0n, 1n, 3n, 2n ** 63n, 2n ** 53n, 2n ** 60n]);
      break;
    }
    case 'tensor type': tensor().type = pick([0, 1, 2, 4, 5, 8, 9, 10, 12, 31, 99, -1]); break;
    case 'offset': tensor().offset = BigInt(pick([0, 32, 64, 1, 96, 160, 2 ** 62])); break;
    case 'padding': d.pad = pick([0, 1, 31, 32, 64]); break;
  }
  return { kind, bytes: build(d) };
}

// ---- the test ------------------------------------------------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), 'gguf-fuzz-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const plain = (v: unknown): unknown => v;

describe('GGUF reader under 1,000 seeded mutations', () => {
  it('reads back exactly the metadata and tensors of every valid file and throws a LayerquantError for every invalid one', async () => {
    const random = seededRandom(20_261_206);
    const counts = { valid: 0, invalid: 0 };
    const kinds = new Map<string, { valid: number; invalid: number }>();
    let slowest = 0;
    for (let i = 0; i < 1000; i++) {
      const { kind, bytes } = mutate(random);
      const expected = referenceDecode(bytes);
      const t0 = performance.now();
      let result: ReturnType<typeof parseGgufBytes> | undefined;
      let error: unknown;
      try {
        result = parseGgufBytes(bytes, `case-${i}.gguf`);
      } catch (e) {
        error = e;
      }
      slowest = Math.max(slowest, performance.now() - t0);
      const label = `case ${i} (${kind})`;
      const tally = kinds.get(kind) ?? { valid: 0, invalid: 0 };
      kinds.set(kind, tally);
      if (expected === undefined) {
        counts.invalid++;
        tally.invalid++;
        expect(error, `${label}: invalid by the rules but the reader accepted it`).toBeInstanceOf(LayerquantError);
        expect((error as Error).message, label).toContain(`case-${i}.gguf`);
      } else {
        counts.valid++;
        tally.valid++;
        expect(error, `${label}: valid by the rules but the reader threw`).toBeUndefined();
        const header = result!.header;
        expect(header.tensors.map((t) => ({ name: t.name, dims: [...t.dims], type: t.type.id, bytes: result!.raw(t.name) })), label).toEqual(expected.tensors);
        expect([...header.metadata.keys()], label).toEqual([...expected.metadata.keys()]);
        for (const [key, value] of header.metadata) {
          const theirs = expected.metadata.get(key)!;
          expect(value.value, `${label} ${key}`).toEqual(plain(theirs.value));
        }
      }
      if (i % 10 === 0) {
        const path = join(work, `case-${i}.gguf`);
        writeFileSync(path, bytes);
        const fromFile = await readGgufHeader(path).catch((e: unknown) => e);
        if (expected === undefined) expect(fromFile, label).toBeInstanceOf(LayerquantError);
        else expect((fromFile as { tensors: unknown[] }).tensors.length, label).toBe(expected.tensors.length);
      }
    }
    expect(counts.valid).toBeGreaterThan(100);
    expect(counts.invalid).toBeGreaterThan(400);
    expect(kinds.size).toBe(14);
    for (const [kind, tally] of kinds) expect(tally.invalid, `${kind} produced no invalid file`).toBeGreaterThan(0);
    expect(slowest).toBeLessThan(1000);
  });
});
