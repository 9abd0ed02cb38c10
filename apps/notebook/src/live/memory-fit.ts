import type { DecoderConfig } from '@layerquant/core';
import type { ModelSummary } from '@layerquant/tensor-io/browser';

/**
 * How large a model the page runs: the float and the quantized sessions each hold every weight in float32 inside
 * onnxruntime-web's WebAssembly memory (4 GiB at most, wasm32), and each session is built from an ONNX protobuf
 * that holds the same weights again while it is created (and must stay under protobuf's 2 GiB). 160M parameters
 * (610 MiB of float32) keep the two sessions, one protobuf and the worker's own float32 copy near 2.4 GiB.
 */
export const PAGE_PARAMETER_LIMIT = 160_000_000;

export interface MemoryFit {
  readonly ok: boolean;
  readonly limitBytes: number;
  readonly message: string;
}

export function memoryFit(config: DecoderConfig, summary: ModelSummary): MemoryFit {
  const limitBytes = 4 * PAGE_PARAMETER_LIMIT;
  const bytes = 4 * summary.params;
  const millions = (n: number) => `${(n / 1e6).toFixed(1)}M`;
  if (summary.params <= PAGE_PARAMETER_LIMIT) {
    return { ok: true, limitBytes, message: `${millions(summary.params)} parameters (${(bytes / 2 ** 20).toFixed(0)} MiB in float32) fit the page's limit of ${millions(PAGE_PARAMETER_LIMIT)}.` };
  }
  return {
    ok: false,
    limitBytes,
    message:
      `${summary.dir} has ${millions(summary.params)} parameters (${(bytes / 2 ** 30).toFixed(2)} GiB in float32, ${config.numLayers} layers): more than the ` +
      `${millions(PAGE_PARAMETER_LIMIT)} the page can quantize and evaluate (two float32 sessions in onnxruntime-web's 4 GiB WebAssembly memory). ` +
      'Inspect, kurtosis and allocation still work here; quantize and evaluate it with the CLI: `layerquant quantize` then `layerquant eval`.',
  };
}
