// Browser-safe entry: quantized matrices as MatMulNBits weights (for the runtime's graph builder in a page).
export { MATMUL_NBITS_BITS, UnsupportedExportError, packBytesLsb, storedBits, toMatMulNBits, type MatMulNBitsMatrix, type NativeBits, type ScaleType } from './matmul-nbits.js';
