import * as ort from 'onnxruntime-node';

/** Options for the onnxruntime sessions layerquant creates. */
export interface RuntimeOptions {
  /** Intra-op threads (onnxruntime's default: one per physical core). */
  readonly threads?: number;
}

/** The only place that creates onnxruntime sessions: full graph optimization, sequential execution. */
export async function createSession(model: Uint8Array | string, options: RuntimeOptions = {}): Promise<ort.InferenceSession> {
  const settings: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    ...(options.threads ? { intraOpNumThreads: options.threads, interOpNumThreads: 1 } : {}),
  };
  // A path lets onnxruntime find external data files beside the model.
  return typeof model === 'string' ? ort.InferenceSession.create(model, settings) : ort.InferenceSession.create(model, settings);
}

export function floatTensor(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

/** A float tensor with no elements (e.g. an empty KV cache [1, heads, 0, headDim]). */
export function emptyTensor(type: 'float32' | 'float16', dims: readonly number[]): ort.Tensor {
  return new ort.Tensor(type, type === 'float16' ? new Uint16Array(0) : new Float32Array(0), dims);
}

export function int64Tensor(values: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]!);
  return new ort.Tensor('int64', data, dims);
}

export function tensorData(tensor: ort.Tensor | undefined, name: string): Float32Array {
  if (!tensor || !(tensor.data instanceof Float32Array)) throw new RangeError(`onnxruntime returned no float32 output "${name}"`);
  return tensor.data;
}

export type OrtSession = ort.InferenceSession;
export type OrtTensor = ort.Tensor;
