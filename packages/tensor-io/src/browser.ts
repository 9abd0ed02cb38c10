// Browser-safe entry: the file formats without file access (safetensors headers and bytes, dtypes, config.json,
// the inspect summary), for pages that read a model from fetch() or a directory picker.
export { READABLE_DTYPES, bf16BitsToFloat32, decodeToFloat32, f16BitsToFloat32, f32BitsToF16Bits, float32ToF16Bits, isDType } from './dtype.js';
export { MAX_HEADER_BYTES, parseSafetensorsBytes, parseSafetensorsHeader, type SafetensorsHeader, type TensorInfo } from './safetensors-header.js';
export { SUPPORTED_ARCHITECTURES, parseDecoderConfig } from './decoder-config.js';
export { summarizeModel, type ModelSummary } from './model-summary.js';
