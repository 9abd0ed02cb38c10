export { MATMUL_NBITS_BITS, UnsupportedExportError, packBytesLsb, storedBits, toMatMulNBits, type MatMulNBitsMatrix, type NativeBits, type ScaleType } from './matmul-nbits.js';
export {
  DEFAULT_ACCURACY_LEVEL,
  DEFAULT_OPERATORS,
  EXTERNAL_DATA_THRESHOLD,
  buildModelGraph,
  exportOnnx,
  onnxFileName,
  type ExportGraph,
  type ModelGraphSource,
  type ExportOnnxOptions,
  type ExportReport,
  type ExportedMatrix,
  type FloatType,
  type OnnxExportOptions,
} from './export-onnx.js';
export {
  findOnnxModel,
  isOnnxExportDir,
  openKvDecoder,
  openOnnxExport,
  summarizeOnnxExport,
  type OnnxExportModel,
  type OnnxExportSummary,
} from './onnx-model-dir.js';
export { readOnnxSummary, type OnnxFileSummary, type OnnxInitializerSummary, type OnnxNodeSummary } from './onnx-reader.js';
export { IN_MEMORY_GRAPH_LIMIT, nllFromLogits, openPackedModel, sessionLogits, sessionLogitsAndNll, sessionNll, type PackedModel, type PackedModelOptions } from './packed-model.js';
export {
  DEFAULT_EXPORT_SCALE_TYPE,
  ONNX_LADDER_GROUPS,
  matMulNBitsProblem,
  nativeBits,
  onnxCostModel,
  type OnnxCostModel,
  type OnnxFileOptions,
} from './onnx-cost.js';
