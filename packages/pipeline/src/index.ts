// The steps of layerquant as library calls on model directories: plug-in registries, statistics (measured or
// cached by settings), quantization in its three run modes, export by format (ONNX, GGUF), and the model every
// evaluation opens.
export * from './plugins.js';
export * from './keys.js';
export * from './statistics.js';
export * from './quantize.js';
export * from './export-model.js';
export * from './evaluation-model.js';
export * from './model-sizes.js';
export * from './model-path.js';
export * from './shipped-format.js';
export * from './kld.js';
export * from './refine.js';
