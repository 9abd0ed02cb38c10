import { DTYPE_BYTES, SafetensorsFormatError, elementCount, type DType } from '@layerquant/core';
import { basename, dirname, resolve } from 'node:path';
import { nodeModelFiles } from './checkpoint.js';
import { readShardHeader } from './model-files.js';
import { writeFileAtomic } from './atomic.js';
import { checkInputFile } from './input-file.js';
import { encodeTensorData, type TensorData } from './dtype.js';
import type { SafetensorsHeader } from './safetensors-header.js';

export { parseSafetensorsBytes, parseSafetensorsHeader, type SafetensorsHeader, type TensorInfo } from './safetensors-header.js';

/** Reads and validates only the header of a safetensors file (a few KB, whatever the model size). */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  checkInputFile(file, 'a .safetensors file');
  const files = nodeModelFiles(dirname(resolve(file)));
  try {
    return await readShardHeader(files, basename(file));
  } finally {
    await files.close?.();
  }
}

export interface TensorSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export interface TensorToWrite extends TensorSpec {
  readonly data: TensorData;
}

function headerBytes(specs: readonly TensorSpec[], metadata: Record<string, string> | undefined): { bytes: Uint8Array; lengths: number[] } {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const lengths: number[] = [];
  const seen = new Set<string>();
  for (const spec of specs) {
    if (seen.has(spec.name)) throw new SafetensorsFormatError('<writer>', 'tensor name written twice', spec.name);
    seen.add(spec.name);
    const length = elementCount(spec.shape) * DTYPE_BYTES[spec.dtype];
    header[spec.name] = { dtype: spec.dtype, shape: spec.shape, data_offsets: [offset, offset + length] };
    lengths.push(length);
    offset += length;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const body = new TextEncoder().encode(json);
  const bytes = new Uint8Array(8 + body.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(body.length), true);
  bytes.set(body, 8);
  return { bytes, lengths };
}

/**
 * Streams tensors into a safetensors file one at a time: `produce(spec)` is called in order and its bytes written
 * before the next is asked for, so a model never sits in memory whole. Atomic (temp file, then rename).
 */
export async function writeSafetensorsStreaming(
  path: string,
  specs: readonly TensorSpec[],
  produce: (spec: TensorSpec, index: number) => Promise<Uint8Array> | Uint8Array,
  metadata?: Record<string, string>,
): Promise<void> {
  const { bytes, lengths } = headerBytes(specs, metadata);
  await writeFileAtomic(path, async (handle) => {
    let position = 0;
    const write = async (chunk: Uint8Array) => {
      let written = 0;
      while (written < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, written, chunk.length - written, position);
        written += bytesWritten;
        position += bytesWritten;
      }
    };
    await write(bytes);
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i]!;
      const data = await produce(spec, i);
      if (data.byteLength !== lengths[i]) {
        throw new SafetensorsFormatError(path, `shape ${JSON.stringify(spec.shape)} of ${spec.dtype} needs ${lengths[i]} bytes but ${data.byteLength} were given`, spec.name);
      }
      await write(data);
    }
  });
}

/** Writes tensors (typed arrays, converted to their dtype) to a safetensors file, atomically. */
export async function writeSafetensors(path: string, tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  await writeSafetensorsStreaming(path, tensors, (spec, i) => encodeTensorData(spec.dtype, tensors[i]!.data), metadata);
}
