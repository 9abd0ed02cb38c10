// Browser-safe entry: quantized matrices as MatMulNBits weights (for the runtime's graph builder in a page).
export { MATMUL_NBITS_BITS, UnsupportedExportError, packBytesLsb, storedBits, toMatMulNBits, type MatMulNBitsMatrix, type NativeBits, type ScaleType } from './matmul-nbits.js';
// The exact bytes of the shipped ONNX file of an allocation (a page shows what a user ships).
export { DEFAULT_EXPORT_SCALE_TYPE, onnxCostModel, type OnnxCostModel, type OnnxFileOptions } from './onnx-cost.js';
