// Test doubles for code built on the runtime: tiny random decoders (Llama, Qwen2, Mistral layouts) and helpers.
export { randomDecoderSource, relativeError, seededNormal, tinyConfig } from './test-models.js';
export { huggingFaceConfig, writeModelDirectory } from './test-model-directory.js';
