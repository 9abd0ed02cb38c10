export { checkOutputFile, copyFileAtomic, writeDirectoryAtomic, writeFileAtomic, writeTextAtomic, temporaryPath } from './atomic.js';
export {
  openOutputDirectory,
  processAlive,
  removeStaleTemporaries,
  testHookDelayMs,
  trackTemporary,
  untrackTemporary,
  writeFileSet,
  type OutputDirectory,
} from './output-dir.js';
export {
  READABLE_DTYPES,
  bf16BitsToFloat32,
  decodeToFloat32,
  encodeTensorData,
  f16BitsToFloat32,
  float32ToBf16Bits,
  float32ToF16Bits,
  f32BitsToF16Bits,
  isDType,
  type TensorData,
} from './dtype.js';
export {
  parseSafetensorsBytes,
  parseSafetensorsHeader,
  readSafetensorsHeader,
  writeSafetensors,
  writeSafetensorsStreaming,
  type SafetensorsHeader,
  type TensorInfo,
  type TensorSpec,
  type TensorToWrite,
} from './safetensors.js';
export { nodeModelFiles, openCheckpoint, type Checkpoint, type WeightSource } from './checkpoint.js';
export { SUPPORTED_ARCHITECTURES, loadDecoderConfig, parseDecoderConfig } from './config.js';
export { checkTokenizerFiles, loadTokenizer } from './tokenizer-node.js';
export { createTokenizer, largestTokenId, readTokenizer, readTokenizerFiles, type Tokenizer, type TokenizerOptions } from './tokenizer.js';
export { findShards, openCheckpointFiles, openModelFiles, readDecoderConfig, readShardHeader, type CheckpointShards, type ModelFiles } from './model-files.js';
export { inspectModel, summarizeModel, type ModelSummary } from './inspect.js';
export { architectureFacts } from './model-summary.js';
export { openModel, loadValidatedConfig, type OpenedModel } from './model.js';
export { checkFinite, firstNonFinite } from './finite.js';
// The one config-vs-tensors check lives in core (pure, browser-safe); re-exported here beside openModel.
export { validateCheckpoint, type CheckpointTensors } from '@layerquant/core';
export {
  MODEL_LOADER_FILES,
  ONNX_FOLDER,
  QUANTIZATION_REPORT_FILE,
  SAFETENSORS_FILE,
  SAFETENSORS_INDEX_FILE,
  checkOneWeightSet,
  isModelFileSetEntry,
  modelFileSetEntries,
} from './model-file-set.js';
export { checkInputFile, inputPathKind, readTextFile } from './input-file.js';
export { contentHashCacheDir, fileContentHash, layerquantCacheDir, modelContentHash } from './content-hash.js';
export { TOKEN_CACHE_MIN_CHARS, withTokenCache } from './token-cache.js';
