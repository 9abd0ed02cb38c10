import type { InferenceSession, Tensor } from 'onnxruntime-common';

/** Options for the onnxruntime sessions layerquant creates. */
export interface RuntimeOptions {
  /** Intra-op threads (onnxruntime-node's default: one per physical core; onnxruntime-web: 1, the page is not isolated). */
  readonly threads?: number;
  /** onnxruntime-web's execution provider: `wasm` (default) or `webgpu`; onnxruntime-node runs on the CPU. */
  readonly device?: 'wasm' | 'webgpu';
}

/**
 * The one seam between the runtime and onnxruntime: create a session, make tensors. `#ort-backend` resolves to
 * onnxruntime-node's (`backend-node.ts`) in Node and onnxruntime-web's (`backend-web.ts`) under the `browser`
 * condition, as transformers.js picks its backend once; nothing else in the runtime imports onnxruntime.
 */
export interface OrtBackend {
  readonly name: 'onnxruntime-node' | 'onnxruntime-web';
  readonly Tensor: typeof Tensor;
  /**
   * Whether a preallocated output tensor is written in place (onnxruntime-node), so a KV buffer fed as the past and
   * bound as the present is updated by the attention; onnxruntime-web copies tensors in and out of its heap instead.
   */
  readonly writesOutputsInPlace: boolean;
  /** A session over ONNX bytes, or a path (Node: external data beside the file is found) or URL (web). */
  createSession(model: Uint8Array | string, options?: RuntimeOptions): Promise<InferenceSession>;
}

export type OrtSession = InferenceSession;
export type OrtTensor = Tensor;
