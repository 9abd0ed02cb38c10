import * as ort from 'onnxruntime-web';
import type { OrtBackend } from './backend.js';

/**
 * onnxruntime-web: WebAssembly (one thread unless the page is cross-origin isolated and asks for more) or WebGPU.
 * The page sets `ort.env.wasm.wasmPaths` if it serves the .wasm files somewhere else than its bundler does.
 */
export const backend: OrtBackend = {
  name: 'onnxruntime-web',
  Tensor: ort.Tensor,
  writesOutputsInPlace: false,
  async createSession(model, options = {}) {
    ort.env.wasm.numThreads = options.threads ?? 1;
    const settings: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      executionProviders: [options.device ?? 'wasm'],
    };
    return typeof model === 'string' ? ort.InferenceSession.create(model, settings) : ort.InferenceSession.create(model, settings);
  },
};
