// Node entry: GGUF files on disk (strict reader, streaming writer), the export of Llama / Mistral / Qwen2
// checkpoints, a GGUF model read back for layerquant's runtime, and evaluation through llama.cpp (node-llama-cpp).
export * from './index.js';
export { openGgufFile, readGgufHeader, writeGgufFile, type GgufFile, type GgufTensorToWrite } from './gguf-file.js';
export { exportGguf, type ExportGgufOptions, type ExportGgufReport, type ExportedGgufTensor, type GgufTensorSource } from './export-gguf.js';
export { openGgufModel, type GgufModel } from './gguf-model.js';
export { NODE_LLAMA_CPP_VERSION, loadNodeLlamaCpp, openLlamaCppModel, type LlamaCppModel, type LlamaCppOptions } from './llama-cpp.js';
export { ggufCostModel, type GgufCostModel, type GgufCostOptions } from './gguf-cost.js';
