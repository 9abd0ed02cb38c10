// Browser-safe entry: the ONNX graph builders and weight plumbing, without onnxruntime-node or node:fs.
// Run the encoded graphs with onnxruntime-web: `InferenceSession.create(buildDecoderGraph(...).encode())`.
export {
  ProtoWriter,
  OnnxDataType,
  encodeModel,
  encodeModelWithExternalData,
  encodedInitializerLength,
  encodedModelLength,
  encodedNodeLength,
  varintLength,
  type ExternalDataLocation,
  type ModelWithExternalData,
  type OnnxDataTypeValue,
  type OnnxModel, type OnnxGraph, type OnnxNode, type OnnxTensor, type OnnxValueInfo } from './onnx-proto.js';
export { GraphBuilder, ONNX_OPSET } from './graph-builder.js';
export {
  BATCH_DIM,
  MICROSOFT_DOMAIN,
  SEQUENCE_DIM,
  buildAttentionBlockGraph,
  buildDecoderGraph,
  buildHeadGraph,
  buildGramGraph,
  buildLinearGraph,
  buildMlpBlockGraph,
  blockInputNames,
  rotaryInverseFrequencies,
  rotaryTables,
  supportsGroupQueryAttention,
  type ActivationType,
  type DecoderGraphOptions,
  type DecoderOperators,
  type Float16Weight,
  type GraphWeight,
  type MatMulNBitsWeight,
  type WeightMode,
} from './decoder-graph.js';
export { packedCompatible, stackPacked } from './graph-weights.js';
export {
  EMBED_TOKENS,
  FINAL_NORM,
  LAYER_TENSORS,
  LM_HEAD,
  checkSupportedConfig,
  decoderLayout,
  expectedShapes,
  layerTensorName,
  loadDecoderWeights,
  tensorSourceFromMap,
  withOverrides,
  type DecoderLayout,
  type DecoderWeights,
  type LayerTensor,
  type TensorSource,
  type WeightOverrides,
} from './decoder-weights.js';
export { argmaxRow, greedyDecode, type GreedyOptions, type KvDecoder } from './greedy-decode.js';
