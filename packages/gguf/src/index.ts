// Browser-safe entry: ggml types and their exact sizes, the GGUF header writer and strict parser, the block codecs.
export {
  GGML_CODEC_TYPES,
  GGML_TYPES,
  compatibleTypes,
  ggmlFallbackType,
  ggmlBitsPerWeight,
  ggmlType,
  ggmlTypeById,
  ggufTensorBytes,
  isGgmlCodecType,
  type GgmlTypeInfo,
  type GgmlTypeName,
} from './ggml-types.js';
export {
  GGUF_ALIGNMENT_KEY,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_MAX_DIMS,
  GGUF_MAX_TENSOR_NAME_BYTES,
  GGUF_READABLE_VERSIONS,
  GGUF_VALUE_TYPES,
  GGUF_VERSION,
  GgufHeaderIncomplete,
  encodeGgufHeader,
  gguf,
  ggufLayout,
  ggufMetadataEntryBytes,
  parseGgufBytes,
  parseGgufHeader,
  type GgufHeader,
  type GgufLayout,
  type GgufMetadata,
  type GgufScalar,
  type GgufScalarType,
  type GgufTensorInfo,
  type GgufTensorPlacement,
  type GgufTensorSpec,
  type GgufValue,
  type GgufValueTypeName,
} from './gguf-format.js';
export { decodeGgml, encodeGgml, type GgmlEncodeOptions } from './codecs.js';
export { K_QUANT_SPECS, QK_K, type KQuantType } from './k-quants.js';
export { LEGACY_BLOCK, LEGACY_LAYOUTS, type LegacyType } from './legacy-blocks.js';
export { affineToGgml, exactAffineType, type ExactAffineType } from './affine-mapping.js';
export {
  GGUF_ARCHITECTURES,
  LLAMA_FILE_TYPES,
  decoderConfigOfGguf,
  decoderMetadata,
  ggufArchitecture,
  ggufTensorName,
  hfTensorName,
  isLinearGgufTensor,
  llama3RopeFactors,
  permuteRotaryRows,
  rotaryHeads,
  rotaryRowOrder,
} from './llama-names.js';
export { KNOWN_PRE_TOKENIZERS, TOKEN_TYPES, preTokenizerName, tokenizerMetadata, type TokenizerFiles, type TokenizerMetadataOptions } from './tokenizer-metadata.js';
export {
  GGML_QUANTIZER_TYPES,
  configOfGgmlType,
  dequantizeGgml,
  ggmlBlocks,
  ggmlLadderText,
  ggmlPlugin,
  ggmlTypeOfConfig,
  quantizeGgml,
} from './ggml-quantizer.js';
