// Test doubles for code built on the runtime: tiny random decoders (Llama, Qwen2, Mistral layouts) and helpers.
export { huggingFaceConfig, randomDecoderSource, relativeError, seededNormal, tinyConfig, tinyTokenizerFiles, writeModelDirectory, type ModelDirectoryOptions } from './test-models.js';
