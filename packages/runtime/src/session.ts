import { InvalidDataError } from '@layerquant/core';
import { backend } from '#ort-backend';
import type { OrtSession, OrtTensor, RuntimeOptions } from './backend.js';

export type { OrtBackend, OrtSession, OrtTensor, RuntimeOptions } from './backend.js';
export { backend };

/**
 * The only place that creates onnxruntime sessions (through the backend chosen once for Node or the page). A file
 * onnxruntime cannot load (empty, truncated, not ONNX, an operator it lacks) is an InvalidDataError naming the file;
 * bytes built in this process that fail are an internal error and stay onnxruntime's own.
 */
export async function createSession(model: Uint8Array | string, options: RuntimeOptions = {}): Promise<OrtSession> {
  if (typeof model !== 'string') return backend.createSession(model, options);
  try {
    return await backend.createSession(model, options);
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error)).split('\n')[0]!.replace(/\s+/g, ' ').slice(0, 200);
    throw new InvalidDataError(model, `onnxruntime cannot load this file (${reason}); it is truncated, corrupt or not an ONNX model: export the model again`, { cause: error });
  }
}

export function floatTensor(data: Float32Array, dims: readonly number[]): OrtTensor {
  return new backend.Tensor('float32', data, dims);
}

/** A float tensor with no elements (e.g. an empty KV cache [1, heads, 0, headDim]). */
export function emptyTensor(type: 'float32' | 'float16', dims: readonly number[]): OrtTensor {
  return new backend.Tensor(type, type === 'float16' ? new Uint16Array(0) : new Float32Array(0), dims);
}

export function int64Tensor(values: ArrayLike<number>, dims: readonly number[]): OrtTensor {
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]!);
  return new backend.Tensor('int64', data, dims);
}

export function tensorData(tensor: OrtTensor | undefined, name: string): Float32Array {
  if (!tensor || !(tensor.data instanceof Float32Array)) throw new RangeError(`onnxruntime returned no float32 output "${name}"`);
  return tensor.data;
}
