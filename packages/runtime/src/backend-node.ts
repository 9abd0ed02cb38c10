import * as ort from 'onnxruntime-node';
import type { OrtBackend } from './backend.js';

/** onnxruntime-node: full graph optimization, sequential execution. */
export const backend: OrtBackend = {
  name: 'onnxruntime-node',
  Tensor: ort.Tensor,
  writesOutputsInPlace: true,
  async createSession(model, options = {}) {
    const settings: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      ...(options.threads ? { intraOpNumThreads: options.threads, interOpNumThreads: 1 } : {}),
    };
    // A path lets onnxruntime find external data files beside the model.
    return typeof model === 'string' ? ort.InferenceSession.create(model, settings) : ort.InferenceSession.create(model, settings);
  },
};
