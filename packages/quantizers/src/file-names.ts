/** Name of the weights file in a quantized directory. */
export const QUANTIZED_WEIGHTS_FILE = 'model.safetensors';
/** The run's report and allocation, beside the weights. */
export const QUANTIZATION_REPORT_FILE = 'quantization.json';

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
