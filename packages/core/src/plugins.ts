import type { QuantConfig, ZeroKind } from './config.js';
import type { MatrixKey, UnitModule } from './model.js';
import type { WeightTensor } from './tensor.js';

/**
 * A quantized matrix: integer codes packed per row, one scale and zero per group.
 * `dequant = (code - zero) / scale` (HQQ's convention: scale multiplies W on the way in).
 */
export interface QuantizedTensor {
  readonly name: string;
  /** [rows (out features), cols (in features)] of the original matrix. */
  readonly shape: readonly [number, number];
  readonly config: QuantConfig;
  /** Id of the quantizer that made it (`rtn`, `hqq`). */
  readonly method: string;
  /** Packed codes; layout given by `packing` (see @layerquant/quantizers README). */
  readonly packed: Uint32Array;
  readonly packing: string;
  /** One per group, in group order (row-major over the reshaped `[-1, groupSize]` view for axis 1). */
  readonly scale: Float32Array;
  readonly zero: Float32Array;
  /**
   * What a quantizer wants said about this matrix (e.g. GPTQ: `deadColumns`, `dampening`, `dampeningRetries`), copied
   * into the run's report; not stored in checkpoints.
   */
  readonly report?: Readonly<Record<string, number>>;
  /**
   * The code width of each input column, where a quantizer gives columns different widths (BAQ; its Quantizer says
   * `columnBits: true`). The packed codes are then one bitstream per row (each code its column's width, least
   * significant bits first, rows padded to `config.bits`' words) that only that quantizer's dequantize reads.
   */
  readonly columnBits?: Uint8Array;
}

/**
 * The second moment of a linear layer's inputs over a calibration set, `H = 2 X^T X / N` for the N input rows
 * X [N, columns] the layer saw (GPTQ's Hessian of the layer's squared output error). Row-major, symmetric. A
 * calibrated quantizer reads it; it must not modify it (the q/k/v projections share one, as do gate/up).
 */
export interface InputHessian {
  readonly columns: number;
  /** N, the input rows (tokens) it averages over. */
  readonly samples: number;
  readonly data: Float64Array;
}

/** What a pipeline hands a quantizer beside the weight: the statistics a calibrated quantizer declares it needs. */
export interface QuantizeContext {
  readonly hessian?: InputHessian;
}

/** A quantizer plug-in. Stateless: same input, same output. */
export interface Quantizer {
  readonly id: string;
  /** `context` carries the statistics `calibration` asks for; quantizers without `calibration` ignore it. */
  quantize(weight: WeightTensor, config: QuantConfig, context?: QuantizeContext): QuantizedTensor;
  dequantize(quantized: QuantizedTensor): Float32Array;
  /**
   * `'affine'`: every group's stored codes, scale and zero dequantize as (code - zero) / scale, the layout ONNX
   * MatMulNBits holds (the export and packed-weight evaluation use the codes as they are). Absent: only this
   * quantizer's `dequantize` reads its codes (the export refuses them; evaluation runs the dequantized weights).
   * `'ggml'`: llama.cpp blocks held as codes and, per sub-block (group), the multiplier and offset with
   * x = scale * code - zero, each an fp16 value times a small integer (@layerquant/gguf's ggml quantizer): the GGUF
   * export rebuilds the blocks from them; ONNX refuses them as it refuses any non-affine layout.
   */
  readonly packedLayout?: 'affine' | 'ggml';
  /**
   * `'hessian'`: a calibrated quantizer. It needs each matrix's InputHessian (`context.hessian`), which the pipeline
   * collects in a layer pass over calibration text with the layers before already quantized; without one,
   * `quantize` throws. Absent: the quantizer sees weights only.
   */
  readonly calibration?: 'hessian';
  /**
   * The zero kinds its configs can take (`b4g64` fractional, `b4g64-int` integer, `b4g64-sym` none): what a shipped
   * format's ladder offers it (an integer zero needs no correction bytes in ONNX MatMulNBits). Absent: fractional and
   * integer (rtn, hqq's `roundZero`).
   */
  readonly zeroKinds?: readonly ZeroKind[];
  /** Its QuantizedTensors carry `columnBits` (a width per input column), stored beside the codes. */
  readonly columnBits?: boolean;
}

/**
 * One unit of a model as allocators see it: a linear matrix of a layer, or an embedding unit (`embed_tokens`,
 * `lm_head`; layer NO_LAYER = -1) where the statistics cover them.
 */
export interface MatrixInfo {
  readonly key: MatrixKey;
  readonly layer: number;
  readonly module: UnitModule;
  readonly params: number;
}

export interface MatrixAllocation extends MatrixInfo {
  /** `null` = leave the matrix in float. */
  readonly config: QuantConfig | null;
}

/** The result of an allocator: one config per matrix, with totals. */
export interface Allocation {
  readonly method: string;
  readonly options: Readonly<Record<string, unknown>>;
  /** The budget asked for, in bits per weight. */
  readonly budget: number;
  readonly matrices: readonly MatrixAllocation[];
  readonly totals: AllocationTotals;
}

export interface AllocationTotals {
  readonly params: number;
  /** Parameter-weighted bits per weight of the quantized matrices (the paper's accounting). */
  readonly bpp: number;
  /** Memory of the quantized matrices in MB (2^20 bytes), paper accounting. */
  readonly memoryMB: number;
}

/** An allocator plug-in. `Input` is the statistics table it reads, `Options` its knobs. */
export interface Allocator<Input = unknown, Options = unknown> {
  readonly id: string;
  allocate(input: Input, options: Options): Allocation;
}

/** A sensitivity metric plug-in (kurtosis, activation sensitivity, ...). */
export interface SensitivityMetric<Input = unknown, Output = unknown, Options = unknown> {
  readonly id: string;
  measure(input: Input, options: Options): Output | Promise<Output>;
}
