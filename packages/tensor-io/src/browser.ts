// Browser-safe entry: the file formats, and models read through the file-access port (ModelFiles: checkpoints,
// config.json, the tokenizer), for pages that read a model from fetch() or a directory picker.
export { READABLE_DTYPES, bf16BitsToFloat32, decodeToFloat32, f16BitsToFloat32, f32BitsToF16Bits, float32ToBf16Bits, float32ToF16Bits, isDType } from './dtype.js';
export { MAX_HEADER_BYTES, parseSafetensorsBytes, parseSafetensorsHeader, type SafetensorsHeader, type TensorInfo } from './safetensors-header.js';
export { SUPPORTED_ARCHITECTURES, parseDecoderConfig } from './decoder-config.js';
export { architectureFacts, summarizeModel, type ModelSummary } from './model-summary.js';
export {
  filePath,
  findShards,
  openCheckpointFiles,
  openModelFiles,
  readDecoderConfig,
  readShardHeader,
  readShardIndex,
  type Checkpoint,
  type CheckpointShards,
  type ModelFiles,
  type OpenedModel,
  type WeightSource,
} from './model-files.js';
export { createTokenizer, readTokenizer, type Tokenizer } from './tokenizer.js';
export { checkFinite, firstNonFinite } from './finite.js';
export { MODEL_LOADER_FILES, ONNX_FOLDER, QUANTIZATION_REPORT_FILE, SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, isModelFileSetEntry } from './model-file-names.js';
