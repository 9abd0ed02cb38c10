/** Name of the weights file in a quantized directory. */
export const QUANTIZED_WEIGHTS_FILE = 'model.safetensors';
/** The run's report and allocation, beside the weights. */
export const QUANTIZATION_REPORT_FILE = 'quantization.json';
