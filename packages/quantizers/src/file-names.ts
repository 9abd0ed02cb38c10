/** Name of the weights file in a quantized directory. */
export const QUANTIZED_WEIGHTS_FILE = 'model.safetensors';
/** The run's report and allocation, beside the weights. */
export { QUANTIZATION_REPORT_FILE } from '@layerquant/tensor-io/browser';

// The loader files and the report name are tensor-io's (its model file set), one definition for every package.
export { MODEL_LOADER_FILES } from '@layerquant/tensor-io/browser';
