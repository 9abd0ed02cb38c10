import { backend } from '#ort-backend';
import type { OrtSession, OrtTensor, RuntimeOptions } from './backend.js';

export type { OrtBackend, OrtSession, OrtTensor, RuntimeOptions } from './backend.js';
export { backend };

/** The only place that creates onnxruntime sessions (through the backend chosen once for Node or the page). */
export function createSession(model: Uint8Array | string, options: RuntimeOptions = {}): Promise<OrtSession> {
  return backend.createSession(model, options);
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
