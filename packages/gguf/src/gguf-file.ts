import { GgufFormatError, InvalidDataError, MissingFileError } from '@layerquant/core';
import { writeFileAtomic } from '@layerquant/tensor-io';
import { existsSync } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { resolve } from 'node:path';
import { decodeGgml } from './codecs.js';
import { isGgmlCodecType, type GgmlTypeName } from './ggml-types.js';
import { GgufHeaderIncomplete, encodeGgufHeader, parseGgufHeader, type GgufHeader, type GgufLayout, type GgufMetadata, type GgufTensorInfo, type GgufTensorSpec } from './gguf-format.js';

// GGUF files on disk (Node): the strict header read from a growing prefix, lazy tensor reads, and the streaming
// writer (one tensor encoded at a time, written to a temporary name and renamed).

const FIRST_READ = 1 << 20;

async function readAt(handle: FileHandle, length: number, position: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(bytes, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? bytes : bytes.subarray(0, done);
}

/** Reads and validates the header of a GGUF file (parseGgufHeader's rules), reading only as much of the file as it needs. */
export async function readGgufHeader(path: string): Promise<GgufHeader> {
  const file = resolve(path);
  if (!existsSync(file)) throw new MissingFileError(file, 'does not exist; pass a .gguf file');
  const handle = await open(file, 'r');
  try {
    return await readHeaderFrom(handle, file);
  } finally {
    await handle.close();
  }
}

async function readHeaderFrom(handle: FileHandle, file: string): Promise<GgufHeader> {
  const { size } = await handle.stat();
  let length = Math.min(size, FIRST_READ);
  for (;;) {
    const prefix = await readAt(handle, length, 0);
    try {
      return parseGgufHeader(prefix, size, file);
    } catch (error) {
      if (!(error instanceof GgufHeaderIncomplete)) throw error;
      length = Math.min(size, Math.max(error.needed, length * 2));
    }
  }
}

/** An open GGUF file: its validated header, and tensors read one at a time. */
export interface GgufFile {
  readonly path: string;
  readonly header: GgufHeader;
  has(name: string): boolean;
  info(name: string): GgufTensorInfo;
  /** The tensor's stored bytes. */
  readRaw(name: string): Promise<Uint8Array>;
  /** The tensor decoded to float32 (row-major, Hugging Face order), for the types layerquant decodes. */
  read(name: string): Promise<{ readonly shape: readonly number[]; readonly data: Float32Array; readonly type: GgmlTypeName }>;
  close(): Promise<void>;
}

export async function openGgufFile(path: string): Promise<GgufFile> {
  const file = resolve(path);
  if (!existsSync(file)) throw new MissingFileError(file, 'does not exist; pass a .gguf file');
  const handle = await open(file, 'r');
  let header: GgufHeader;
  try {
    header = await readHeaderFrom(handle, file);
  } catch (error) {
    await handle.close();
    throw error;
  }
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  const info = (name: string) => {
    const found = byName.get(name);
    if (!found) throw new GgufFormatError(file, 'no such tensor in the file', name);
    return found;
  };
  const readRaw = async (name: string) => {
    const t = info(name);
    const bytes = await readAt(handle, t.byteLength, t.byteOffset);
    if (bytes.length !== t.byteLength) throw new GgufFormatError(file, 'the file ended while reading the tensor; it is truncated', name);
    return bytes;
  };
  return {
    path: file,
    header,
    has: (name) => byName.has(name),
    info,
    readRaw,
    async read(name) {
      const t = info(name);
      if (!isGgmlCodecType(t.type.name)) {
        throw new GgufFormatError(file, `is ${t.type.name}, which layerquant does not decode (it decodes F32, F16, BF16, Q4_0 ... Q8_0 and Q2_K ... Q6_K); evaluate the file with node-llama-cpp instead`, name);
      }
      const data = decodeGgml(t.type.name, await readRaw(name), t.shape, name);
      return { shape: t.shape, data, type: t.type.name };
    },
    close: () => handle.close(),
  };
}

/** A tensor to write: its place in the header, and its encoded bytes, produced only when the writer reaches it. */
export interface GgufTensorToWrite extends GgufTensorSpec {
  encode(): Promise<Uint8Array> | Uint8Array;
}

/**
 * Writes a GGUF file: the header (its layout known before any tensor is encoded), then each tensor's bytes as
 * `encode()` hands them over, padded with zeros to the alignment. At most one encoded tensor is held at a time. The
 * file is written under a temporary name beside `path` and renamed when complete; on any failure nothing is left.
 */
export async function writeGgufFile(path: string, metadata: GgufMetadata, tensors: readonly GgufTensorToWrite[]): Promise<GgufLayout> {
  const { bytes: header, layout } = encodeGgufHeader(metadata, tensors);
  await writeFileAtomic(resolve(path), async (handle) => {
    let position = 0;
    const write = async (chunk: Uint8Array) => {
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, position + done);
        done += bytesWritten;
      }
      position += chunk.length;
    };
    await write(header);
    for (const [i, tensor] of tensors.entries()) {
      const placement = layout.tensors[i]!;
      const bytes = await tensor.encode();
      if (bytes.length !== placement.byteLength) {
        throw new InvalidDataError(`tensor "${tensor.name}"`, `encoded to ${bytes.length} bytes but ${placement.type.name} [${placement.shape.join(', ')}] takes ${placement.byteLength}`);
      }
      if (position !== layout.dataStart + placement.offset) throw new Error(`GGUF writer at ${position}, tensor "${tensor.name}" belongs at ${layout.dataStart + placement.offset}`);
      await write(bytes);
      const padding = (layout.alignment - (bytes.length % layout.alignment)) % layout.alignment;
      if (padding) await write(new Uint8Array(padding));
    }
    if (position !== layout.fileBytes) throw new Error(`GGUF writer wrote ${position} bytes, the layout says ${layout.fileBytes}`);
  });
  const { size } = await stat(resolve(path));
  if (size !== layout.fileBytes) throw new Error(`${path} has ${size} bytes, the layout says ${layout.fileBytes}`);
  return layout;
}
