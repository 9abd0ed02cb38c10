// Test helper: the tiny random model directory of runtime's testing entry (one implementation for every package).
export { huggingFaceConfig, writeModelDirectory } from '@layerquant/runtime/testing';
