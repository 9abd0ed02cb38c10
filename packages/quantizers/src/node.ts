// Node-only API: quantize a model directory, read quantized checkpoints, worker threads.
export { MODEL_LOADER_FILES, QUANTIZATION_REPORT_FILE, QUANTIZED_WEIGHTS_FILE } from './file-names.js';
export {
  quantizeModel,
  type MatrixReport,
  type ModelMatrix,
  type QuantizeModelOptions,
  type QuantizeModelReport,
  type QuantizeProgress,
} from './quantize-model.js';
export {
  openModelWeights,
  openQuantizedCheckpoint,
  summarizeQuantizedCheckpoint,
  type QuantizedCheckpoint,
  type QuantizedCheckpointSummary,
} from './quantized-checkpoint.js';
export { createKernelPool, defaultWorkerCount, type KernelPool, type KernelTask, type KernelTaskResult } from './kernel-worker-pool.js';
export { UnknownQuantizerError, type QuantizerLookup } from './quantized-checkpoint.js';
