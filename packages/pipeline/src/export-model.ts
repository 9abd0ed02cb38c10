import { exportOnnx, type ExportReport, type OnnxExportOptions } from '@layerquant/export';
import { exportGguf, type ExportGgufOptions, type ExportGgufReport } from '@layerquant/gguf/node';
import type { QuantizerLookup } from '@layerquant/quantizers/node';

/** A GGUF export's options other than where it reads and writes. */
export type GgufExportOptions = Omit<ExportGgufOptions, 'modelDir' | 'outFile' | 'quantizers'>;

/**
 * A format to write a model in and its options: `onnx` a directory transformers.js and onnxruntime load, `gguf` one
 * file llama.cpp loads. `export` and `quantize --format` both go through exportModel.
 */
export type ExportRequest =
  | { readonly format: 'onnx'; readonly options: OnnxExportOptions }
  | { readonly format: 'gguf'; readonly options: GgufExportOptions };

/** The report of the format written (`report.format` says which). */
export type ExportResult = ExportReport | ExportGgufReport;

/**
 * Writes a quantized checkpoint (or a float one) in the requested format at `out` (ONNX: a directory; GGUF: a .gguf
 * file). `quantizers` is where the quantizer a checkpoint records is found (the app's registry, --plugin's included).
 */
export async function exportModel(modelDir: string, out: string, request: ExportRequest, quantizers?: QuantizerLookup['quantizers']): Promise<ExportResult> {
  const lookup = quantizers ? { quantizers } : {};
  switch (request.format) {
    case 'onnx':
      return exportOnnx({ ...request.options, ...lookup, modelDir, outDir: out });
    case 'gguf':
      return exportGguf({ ...request.options, ...lookup, modelDir, outFile: out });
  }
}

/** Every byte of the files an export wrote: the ONNX graph and its external data, or the .gguf file. */
export function exportedBytes(report: ExportResult): number {
  return report.format === 'onnx' ? report.fileBytes + report.externalDataBytes : report.fileBytes;
}
