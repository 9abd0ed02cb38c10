import {
  InvalidOptionError,
  matrixTensorName,
  quantConfig,
  type LinearModule,
  type QuantConfig,
  type Quantizer,
} from '@layerquant/core';
import type { SensitivityPart, SensitivityRow, SensitivityTable } from '@layerquant/stats';
import { hqqQuantizer, squaredError, type KernelPool } from '@layerquant/quantizers';
import type { DecoderBlocks, HiddenStates } from '@layerquant/runtime';
import { cutCalibrationBlocks, type CalibrationBlocks } from './calibration.js';
import { dequantizedWith, type QuantizationErrors } from './pooled-quantize.js';
import { floatLayerHessians, type LayerHessians } from './hessians.js';

/** The config of the paper's measurement: HQQ 4-bit, groups of 64 (upstream defaults: axis 1, zero not rounded). */
export const DEFAULT_SENSITIVITY_CONFIG: QuantConfig = quantConfig(4, 64);

/** The matrices each block measurement quantizes, in the authors' order of the parts. */
export const SENSITIVITY_PART_MODULES: Readonly<Record<SensitivityPart, readonly LinearModule[]>> = Object.freeze({
  attn_in: Object.freeze(['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] as const),
  attn_out: Object.freeze(['self_attn.o_proj'] as const),
  mlp_gate: Object.freeze(['mlp.gate_proj', 'mlp.up_proj'] as const),
  mlp_down: Object.freeze(['mlp.down_proj'] as const),
});

export interface ActivationSensitivityOptions {
  /** Quantization of the measured matrices (default b4g64). */
  readonly config?: QuantConfig;
  /** The quantizer (default: HQQ with upstream settings). */
  readonly quantizer?: Quantizer;
  /** Use at most this many calibration blocks (default: all given). */
  readonly blocks?: number;
  /** Tokens per block when `calibration` is a flat id list (default 512). */
  readonly seqlen?: number;
  /** Blocks per runtime call (default 8): bounds memory, not the result. */
  readonly batchSize?: number;
  /** Names written in the table's `dataset` and `model` columns. */
  readonly dataset?: string;
  readonly model?: string;
  /**
   * Worker threads running the quantizer's WebAssembly kernel (`createKernelPool` of @layerquant/quantizers/node):
   * a layer's seven matrices are quantized in parallel, with results bit-identical to the calling thread's.
   */
  readonly pool?: KernelPool;
  /** Records each matrix's squared dequantization error, for the fnorm table of the same run to reuse. */
  readonly errors?: QuantizationErrors;
  /** Called after each layer. */
  readonly onLayer?: (layer: number, layers: number) => void;
}

/** Sum of squares in float64. */
export function sumOfSquares(a: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i]! * a[i]!;
  return sum;
}

/** a - b elementwise. */
export function subtract(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! - b[i]!;
  return out;
}

/** Calibration blocks from either form, capped at `options.blocks`. */
export function calibrationOf(calibration: CalibrationBlocks | ArrayLike<number>, options: { readonly blocks?: number; readonly seqlen?: number }): CalibrationBlocks {
  if ('seqlen' in calibration && 'blocks' in calibration && 'ids' in calibration) {
    const blocks = Math.min(options.blocks ?? calibration.blocks, calibration.blocks);
    return cutCalibrationBlocks(calibration.ids, { blocks, seqlen: calibration.seqlen, source: 'calibration' });
  }
  return cutCalibrationBlocks(calibration as ArrayLike<number>, { blocks: options.blocks, seqlen: options.seqlen, source: 'calibration' });
}

/**
 * The calibration blocks embedded, in chunks of `batchSize` blocks (default 8; bounds memory, not the result): the
 * float inputs of layer 0 for every block-by-block measurement, with the sizes those measurements average over.
 */
export function embeddedBatches(
  model: DecoderBlocks,
  calibration: CalibrationBlocks | ArrayLike<number>,
  options: { readonly batchSize?: number; readonly blocks?: number; readonly seqlen?: number },
): { hidden: HiddenStates[]; blocks: number; seqlen: number; hiddenSize: number; numLayers: number; elements: number } {
  const batchSize = options.batchSize ?? 8;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new InvalidOptionError('batchSize', `${batchSize} must be a positive integer`);
  const { ids, blocks, seqlen } = calibrationOf(calibration, options);
  const { hiddenSize, numLayers } = model.config;
  const hidden: HiddenStates[] = [];
  for (let start = 0; start < blocks; start += batchSize) {
    const count = Math.min(batchSize, blocks - start);
    hidden.push(model.embed({ ids: ids.subarray(start * seqlen, (start + count) * seqlen), batch: count }));
  }
  return { hidden, blocks, seqlen, hiddenSize, numLayers, elements: blocks * seqlen * hiddenSize };
}

/**
 * Activation sensitivity (the paper's layer-sensitivity measurement, the authors' `SensitiveLayerFinder`):
 * for every decoder layer, with the float outputs of layer i-1 as the inputs of layer i, four mean squared
 * errors between a block's float output and its output with some matrices quantized (the rest float):
 * - `attn_in`:  q, k, v quantized; output of the whole attention block (input_layernorm -> attention -> o_proj).
 * - `attn_out`: o_proj quantized; the same output (= o_proj applied to the float attention context).
 * - `mlp_gate`: gate, up quantized; output of the MLP block (post_attention_layernorm -> MLP -> down_proj).
 * - `mlp_down`: down_proj quantized; the same output (= down_proj applied to the float MLP activation).
 * Each MSE is the mean over every element of the [blocks, seqlen, hidden] output.
 */
export async function activationSensitivity(
  model: DecoderBlocks,
  calibration: CalibrationBlocks | ArrayLike<number>,
  options: ActivationSensitivityOptions = {},
): Promise<SensitivityTable> {
  const config = options.config ?? DEFAULT_SENSITIVITY_CONFIG;
  const quantizer = options.quantizer ?? hqqQuantizer;
  const { blocks, seqlen, hiddenSize, numLayers, elements, hidden: embedded } = embeddedBatches(model, calibration, options);
  let hidden = embedded;

  // Streamed blocks read layer i's weights here, on its first tensor, and drop layer i-1's.
  const weight = async (layer: number, module: LinearModule): Promise<Float32Array> => {
    const name = matrixTensorName(layer, module);
    if (!model.shapes.has(name)) throw new InvalidOptionError('model', `has no weight "${name}"`);
    return model.tensor(name);
  };
  // A calibrated quantizer (GPTQ) gets each matrix's Hessian from the layer's float inputs.
  let hessians: LayerHessians | undefined;
  const dequantized = async (layer: number, module: LinearModule): Promise<Float32Array> => {
    const name = matrixTensorName(layer, module);
    const data = await weight(layer, module);
    return dequantizedWith(quantizer, { name, dtype: 'F32', shape: model.shapes.get(name)!, data }, config, options.pool, hessians?.contextFor(module));
  };

  const rows: SensitivityRow[] = [];
  const dataset = options.dataset ?? 'calibration';
  const modelName = options.model ?? 'model';
  for (let layer = 0; layer < numLayers; layer++) {
    // The layer's weights are read first (one layer in memory), then its seven matrices quantized at once (in
    // parallel on the pool's workers when there is one).
    await weight(layer, SENSITIVITY_PART_MODULES.attn_in[0]!);
    if (quantizer.calibration) hessians = await floatLayerHessians(model, layer, hidden);
    const modules = Object.values(SENSITIVITY_PART_MODULES).flat();
    const layerDequantized = await Promise.all(modules.map((m) => dequantized(layer, m)));
    const dq = (m: LinearModule) => layerDequantized[modules.indexOf(m)]!;
    if (options.errors) {
      for (const m of modules) options.errors.record(quantizer, matrixTensorName(layer, m), config, squaredError(await weight(layer, m), dq(m)));
    }
    const overrides = (part: SensitivityPart) => new Map(SENSITIVITY_PART_MODULES[part].map((m) => [matrixTensorName(layer, m), dq(m)] as const));
    const attentionInput = overrides('attn_in');
    const mlpGate = overrides('mlp_gate');
    // o_proj and down_proj are linear in their float inputs: quantizing them changes the block output by
    // input x (W - Wq)^T, computed directly rather than as the difference of two nearly equal outputs.
    const oError = subtract(await weight(layer, 'self_attn.o_proj'), dq('self_attn.o_proj'));
    const downError = subtract(await weight(layer, 'mlp.down_proj'), dq('mlp.down_proj'));

    const sums: Record<SensitivityPart, number> = { attn_in: 0, attn_out: 0, mlp_gate: 0, mlp_down: 0 };
    const next: HiddenStates[] = [];
    for (const states of hidden) {
      const attention = await model.attention(layer, states);
      sums.attn_in += squaredError(attention.attention, (await model.attention(layer, states, attentionInput)).attention);
      sums.attn_out += sumOfSquares(await model.linear(attention.context, oError, hiddenSize));
      const residual: HiddenStates = { data: attention.residual, batch: states.batch, length: states.length };
      const mlp = await model.mlp(layer, residual);
      sums.mlp_gate += squaredError(mlp.mlp, (await model.mlp(layer, residual, mlpGate)).mlp);
      sums.mlp_down += sumOfSquares(await model.linear(mlp.activation, downError, hiddenSize));
      next.push({ data: mlp.output, batch: states.batch, length: states.length });
    }
    hidden = next;
    for (const part of Object.keys(SENSITIVITY_PART_MODULES) as SensitivityPart[]) {
      rows.push(
        Object.freeze({
          dataset,
          part,
          model: modelName,
          bits: config.bits,
          groupSize: config.groupSize,
          layer,
          sensitivity: sums[part] / elements,
        }),
      );
    }
    options.onLayer?.(layer, numLayers);
  }
  return Object.freeze({ rows: Object.freeze(rows) });
}
