export * from './graph.js';
export { backend, createSession, emptyTensor, floatTensor, int64Tensor, tensorData, type OrtBackend, type OrtSession, type OrtTensor, type RuntimeOptions } from './session.js';
export { checkDecoderGraph, createKvDecoder, KV_CACHE_STEP_TOKENS, kvDecoderOfSession, type GraphSource, type GraphValue, type KvDecoderOptions } from './kv-decoder.js';
export type { ForwardOptions } from './greedy-decode.js';
export { createDecoderModel, loadDecoderModel, type DecoderModel, type DecoderModelOptions, type TokenBatch } from './decoder-model.js';
export {
  createDecoderBlocks,
  loadDecoderBlocks,
  type AttentionBlockOutput,
  type DecoderBlocks,
  type HiddenStates,
  type MlpBlockOutput,
} from './decoder-blocks.js';
export { referenceForward, type ReferenceLinearInput } from './reference-forward.js';
export {
  floatWeightBytes,
  layerStreamedModel,
  loadLayerStreamedModel,
  streamedWeightBytes,
  type LayerStreamedModel,
  type ScoredWindow,
} from './layer-streamed-model.js';
