// The names of a model directory's files (browser-safe: no file access).

/**
 * The non-weight files of a Hugging Face model directory that loaders (transformers, transformers.js, tokenizers)
 * read; quantized and exported directories copy these and nothing else (no test references, no notes).
 */
export const MODEL_LOADER_FILES = Object.freeze([
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'tokenizer.model',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
  'chat_template.json',
]);

/** The report layerquant writes beside a model it made (quantize, export). */
export const QUANTIZATION_REPORT_FILE = 'quantization.json';
/** The folder of an ONNX export (`onnx/model_q4.onnx`, ...). */
export const ONNX_FOLDER = 'onnx';
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';
export const SAFETENSORS_FILE = 'model.safetensors';

/**
 * Whether `name`, an entry of a model directory, belongs to its model file set: safetensors weights and their index,
 * the loader files, layerquant's report, and the `onnx` folder (a directory; every other member is a file).
 */
export function isModelFileSetEntry(name: string, isDirectory: boolean): boolean {
  if (isDirectory) return name === ONNX_FOLDER;
  return name.endsWith('.safetensors') || name === SAFETENSORS_INDEX_FILE || name === QUANTIZATION_REPORT_FILE || MODEL_LOADER_FILES.includes(name);
}
