import type { FnormTable, KurtosisTable, SensitivityTable } from '@layerquant/allocators';
import type { InputHessian, QuantConfig } from '@layerquant/core';
import type { KldSummary } from '@layerquant/perplexity/browser';
import type { ModelSummary, TensorInfo } from '@layerquant/tensor-io/browser';
import type { ModelFilesSpec } from './model-files.js';

/** What the page asks the model worker; every request has an id, answered once by a result or an error. */
export type WorkerRequest =
  | { readonly kind: 'open'; readonly files: ModelFilesSpec; readonly textUrl: string; readonly calibrationUrl: string }
  | { readonly kind: 'load-float' }
  | { readonly kind: 'quantize'; readonly matrices: readonly { readonly name: string; readonly config: QuantConfig }[]; readonly quantizer?: PageQuantizer }
  | { readonly kind: 'perplexity'; readonly model: 'float' | 'quantized'; readonly windows: number; readonly seqlen: number }
  /** The quantized model's KL divergence from the float model on the first windows (the float logits computed once). */
  | { readonly kind: 'kld'; readonly windows: number; readonly seqlen: number }
  | { readonly kind: 'generate'; readonly model: 'float' | 'quantized'; readonly prompt: string; readonly tokens: number; readonly device: GenerateDevice }
  /** One matrix with HQQ, or with GPTQ on the given input Hessian. */
  | { readonly kind: 'quantize-matrix'; readonly name: string; readonly config: QuantConfig; readonly hessian?: InputHessian }
  /** kurtosis (read every matrix once), fnorm (12 HQQ runs per matrix) or activation sensitivity (the model on calibration blocks). */
  | { readonly kind: 'statistics'; readonly table: PageTable; readonly blocks?: number }
  | { readonly kind: 'tokenize-text'; readonly maxTokens: number };

export interface OpenResult {
  readonly summary: ModelSummary;
  readonly tensors: readonly Pick<TensorInfo, 'name' | 'dtype' | 'shape' | 'byteLength'>[];
  readonly files: readonly string[];
  /** Float32 bytes of every weight the forward pass reads. */
  readonly float32Bytes: number;
  readonly fits: { readonly ok: boolean; readonly limitBytes: number; readonly message: string };
  readonly hasTokenizer: boolean;
}

export interface LoadResult {
  readonly seconds: number;
}

export interface QuantizeResult {
  readonly seconds: number;
  readonly matrices: number;
  readonly squaredError: number;
  readonly kernel: string;
  readonly quantizer: PageQuantizerId;
  /** GPTQ: the calibration blocks and tokens per block its Hessians were collected on. */
  readonly blocks?: number;
  readonly seqlen?: number;
}

/** The quantizers the page runs: HQQ (weights only) or GPTQ (calibrated in the page on brown-calib). */
export type PageQuantizerId = 'hqq' | 'gptq';
export const PAGE_QUANTIZERS: readonly PageQuantizerId[] = Object.freeze(['hqq', 'gptq']);

export interface PageQuantizer {
  readonly id: PageQuantizerId;
  /** GPTQ's calibration blocks of brown-calib (default PAGE_CALIBRATION_BLOCKS). */
  readonly blocks?: number;
}

export interface PerplexityAnswer {
  readonly ppl: number;
  readonly nll: number;
  readonly windows: number;
  readonly tokens: number;
  readonly seconds: number;
}

/**
 * llama.cpp's KL-divergence statistics of the quantized model against the float one (@layerquant/perplexity's
 * summary: mean KLD with its error, median, 99% and 99.9%, maximum, same top p, RMS Δp, perplexity ratio).
 */
export interface KldAnswer {
  readonly summary: KldSummary;
  /** Scored tokens. */
  readonly tokens: number;
  /** The quantized model's perplexity from its pass (what a `perplexity` request gives it). */
  readonly perplexity: PerplexityAnswer;
  /** The fp32 model's, when its logits were computed on exactly these windows (a held larger set: absent). */
  readonly floatPerplexity?: PerplexityAnswer;
  /** Seconds of the quantized model's pass. */
  readonly seconds: number;
  /** The float logits: computed by this request or held from an earlier one, their seconds, bytes and windows. */
  readonly base: { readonly computed: boolean; readonly seconds: number; readonly bytes: number; readonly windows: number };
}

/** onnxruntime-web's execution provider for generation: WebAssembly, or WebGPU where the browser has an adapter. */
export type GenerateDevice = 'wasm' | 'webgpu';

export interface GenerateAnswer {
  readonly promptIds: readonly number[];
  readonly ids: readonly number[];
  readonly text: string;
  readonly seconds: number;
  /** The prompt in one pass (to the first new token), and the new tokens after the first, per second. */
  readonly prefillSeconds: number;
  readonly decodeTokensPerSecond: number | null;
  readonly device: GenerateDevice;
  /** What the session holds: the export's graph over packed MatMulNBits weights, or float32 weights. */
  readonly weights: 'packed' | 'float32';
}

export interface QuantizedMatrixAnswer {
  readonly packed: Uint32Array;
  readonly scale: Float32Array;
  readonly zero: Float32Array;
  readonly kernel: string;
}

/** The calibration text of the page's activation sensitivity (served beside brown-test) and its default size. */
export const CALIBRATION_NAME = 'brown-calib';
/** Few blocks: the page's measurement takes seconds on a small model; `layerquant sensitivity` defaults to 128. */
export const PAGE_CALIBRATION_BLOCKS = 8;
/** Tokens per block (the CLI's default), or the model's max_position_embeddings where that is shorter. */
export const PAGE_CALIBRATION_SEQLEN = 512;

/** The statistics tables the page measures itself. */
export type PageTable = 'kurtosis' | 'fnorm' | 'sensitivity';

export interface StatisticsAnswer {
  readonly kurtosis?: KurtosisTable;
  readonly fnorm?: FnormTable;
  readonly sensitivity?: SensitivityTable;
  /** Calibration blocks and tokens per block of a sensitivity run. */
  readonly blocks?: number;
  readonly seqlen?: number;
  readonly seconds: number;
}

export interface Progress {
  readonly done: number;
  readonly total: number;
  readonly label: string;
}

export type WorkerMessage =
  | { readonly id: number; readonly progress: Progress }
  | { readonly id: number; readonly result: unknown }
  | { readonly id: number; readonly error: { readonly name: string; readonly message: string } };
