import { InvalidOptionError, MissingTensorError, ShapeMismatchError, type DecoderConfig } from '@layerquant/core';
import { float32ToF16Bits } from '@layerquant/tensor-io/browser';
import {
  EMBED_TOKENS,
  FINAL_NORM,
  LAYER_TENSORS,
  LM_HEAD,
  expectedShapes,
  type DecoderLayout,
  type LayerTensor,
} from './decoder-weights.js';
import { GraphBuilder } from './graph-builder.js';
import {
  floatData,
  isFloat16,
  isPacked,
  packedCompatible,
  stackPacked,
  type ActivationType,
  type Float16Weight,
  type GraphWeight,
  type MatMulNBitsWeight,
} from './graph-weights.js';
import { OnnxDataType, type OnnxDataTypeValue } from './onnx-proto.js';

/**
 * The one builder of layerquant's Llama-family decoder graphs (Llama 2/3, Mistral, Qwen2): float or packed
 * (com.microsoft MatMulNBits) weights, float32 or float16 activations, with a KV cache in transformers.js' layout
 * or without, and two operator sets:
 *
 * - `standard`: opset-17 operators only (plus MatMulNBits for packed weights): RMSNorm as Pow/ReduceMean/Sqrt/Div,
 *   rotary from the position ids, grouped attention as MatMul/Softmax, the past KV concatenated into the present.
 *   Any ONNX runtime runs it.
 * - `fused`: the contrib operators onnxruntime's own exports use: SimplifiedLayerNormalization and
 *   SkipSimplifiedLayerNormalization (the residual add fused into the next norm), GroupQueryAttention with rotary
 *   inside (do_rotary) and its past/present buffers, one MatMulNBits (or Gemm) for q/k/v and one for gate/up where
 *   their storage matches. About 10 nodes a layer instead of 55. GroupQueryAttention needs head_dim % 16 == 0 in
 *   onnxruntime; other head sizes keep the standard attention (and the fused norms and projections).
 *
 * Weights are initializers (`weights` given; names as in the checkpoint) or, float32 only, graph inputs named as in
 * the checkpoint (swap them per run without a new session). HQQ's fractional zero point is exact on packed weights:
 * an integer zero point in MatMulNBits plus a per-group correction `Y -= S @ C` with `S[m, b]` the sum of the input
 * over block b and `C[b, n] = (z - zp) * scale`.
 */

export type {
  ActivationType,
  Float16Weight,
  GraphWeight,
  MatMulNBitsWeight,
} from './graph-weights.js';

export const MICROSOFT_DOMAIN = 'com.microsoft';
/** transformers.js derives the empty first cache from these symbolic dims. */
export const BATCH_DIM = 'batch_size';
export const SEQUENCE_DIM = 'sequence_length';

export type DecoderOperators = 'fused' | 'standard';
export type WeightMode = 'initializers' | 'inputs';

export interface DecoderGraphOptions {
  /** Every tensor the decoder reads (names as in the checkpoint); leave out to make them float32 graph inputs. */
  readonly weights?: ReadonlyMap<string, GraphWeight>;
  /**
   * Past/present key-value inputs and outputs in transformers.js' layout (`attention_mask`, `past_key_values.{i}.key`
   * ... -> `present.{i}.key` ..., plus `num_logits_to_keep`: logits of only the last rows, 0 for all). Default false:
   * input_ids only.
   */
  readonly kvCache?: boolean;
  /** Activations and KV cache in float32 (default) or float16 (logits stay float32). */
  readonly activations?: ActivationType;
  /** MatMulNBits accuracy_level: 0 keeps activations in float, 4 quantizes them to int8 inside the kernel. Default 0. */
  readonly accuracyLevel?: 0 | 4;
  /** Operator set (see above); default `standard`. */
  readonly operators?: DecoderOperators;
  /** Positions the fused attention's rotary tables cover (default the config's max_position_embeddings). */
  readonly maxPositions?: number;
  /** Output `logits` [B, T, vocab]. Default true. */
  readonly logits?: boolean;
  /** Input `targets` int64 [B, T] and output `token_nll` [B, T] = -log softmax(logits)[target] (no cache only). */
  readonly tokenNll?: boolean;
  /** Output `hidden_<i>` [B, T, hidden], the input of layer i, for i = 0..numLayers (the last is the final norm's input). */
  readonly hiddenStates?: boolean;
}

/** Whether onnxruntime's GroupQueryAttention can run this config (its CPU kernel needs head_dim % 16 == 0). */
export function supportsGroupQueryAttention(config: Pick<DecoderConfig, 'headDim'>): boolean {
  return config.headDim % 16 === 0;
}

/**
 * Rotary inverse frequencies 1 / theta^(2i/d) (float32, as PyTorch computes them), with the `linear` and
 * Llama 3.1 `llama3` scalings of HF's rope_utils applied when the config asks for them.
 */
export function rotaryInverseFrequencies(config: Pick<DecoderConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float32Array {
  const { headDim, ropeTheta: theta, ropeScaling: scaling } = config;
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) out[i] = 1 / Math.fround(theta ** Math.fround((2 * i) / headDim));
  if (!scaling) return out;
  if (scaling.type === 'linear') return out.map((f) => f / scaling.factor);
  if (scaling.type === 'llama3') {
    const { factor, lowFreqFactor = 1, highFreqFactor = 4, originalMaxPositionEmbeddings: context = 8192 } = scaling;
    const lowWavelength = context / lowFreqFactor;
    const highWavelength = context / highFreqFactor;
    return out.map((f) => {
      const wavelength = (2 * Math.PI) / f;
      if (wavelength < highWavelength) return f;
      if (wavelength > lowWavelength) return f / factor;
      const smooth = (context / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
      return (1 - smooth) * (f / factor) + smooth * f;
    });
  }
  throw new InvalidOptionError('rope_scaling', `rope type "${scaling.type}" is not supported; supported are default, linear and llama3`);
}

/** cos and sin of position * inverse frequency for positions [0, count), [count, headDim / 2], as float32 computes them. */
export function rotaryTables(config: Pick<DecoderConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>, count: number): { cos: Float32Array; sin: Float32Array } {
  const frequencies = rotaryInverseFrequencies(config);
  const half = frequencies.length;
  const cos = new Float32Array(count * half);
  const sin = new Float32Array(count * half);
  for (let p = 0; p < count; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * frequencies[i]!);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** Where the graph's tensors come from: initializers (data given) or float32 graph inputs. */
interface WeightSource {
  /** The stored weight, or undefined when weights are graph inputs. */
  stored(name: string): GraphWeight | undefined;
  /** The float tensor as a graph value in its stored type. */
  value(name: string): { value: string; type: OnnxDataTypeValue };
}

function weightSource(g: GraphBuilder, shapes: ReadonlyMap<string, readonly number[]>, weights: ReadonlyMap<string, GraphWeight> | undefined): WeightSource {
  const bound = new Map<string, { value: string; type: OnnxDataTypeValue }>();
  const dimsOf = (name: string) => {
    const dims = shapes.get(name);
    if (!dims) throw new MissingTensorError(name, 'the decoder graph', 'the config does not use this tensor');
    return dims;
  };
  const stored = (name: string) => {
    if (!weights) return undefined;
    const weight = weights.get(name);
    if (!weight) throw new MissingTensorError(name, 'the graph weights', 'every tensor of expectedShapes(config, layout) must be given');
    return weight;
  };
  return {
    stored,
    value(name) {
      const cached = bound.get(name);
      if (cached) return cached;
      const dims = dimsOf(name);
      let result: { value: string; type: OnnxDataTypeValue };
      const weight = stored(name);
      if (!weight) {
        result = { value: g.input(name, OnnxDataType.FLOAT, dims), type: OnnxDataType.FLOAT };
      } else {
        if (isPacked(weight)) throw new InvalidOptionError('weights', `"${name}" is packed for MatMulNBits; only linear matrices, embed_tokens and lm_head may be packed`);
        const data = floatData(weight);
        const expected = dims.reduce((a, b) => a * b, 1);
        if (data.length !== expected) throw new ShapeMismatchError(name, `has ${data.length} values; the config needs [${dims.join(', ')}]`);
        const type = isFloat16(weight) ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
        result = { value: g.initializer(name, type, dims, data), type };
      }
      bound.set(name, result);
      return result;
    },
  };
}

/** Per-graph values shared by all layers. */
interface Context {
  readonly g: GraphBuilder;
  readonly config: DecoderConfig;
  readonly layout: DecoderLayout;
  readonly weights: WeightSource;
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  readonly act: OnnxDataTypeValue;
  readonly accuracyLevel: 0 | 4;
  readonly fused: boolean;
  /** Full tensor name of a layer's tensor (`model.layers.3.self_attn.q_proj.weight`, or layer-relative in block graphs). */
  readonly tensorName: (layer: number, tensor: LayerTensor) => string;
  /** int64[1] values: batch size, new tokens, and total tokens (past + new). */
  readonly batch: string;
  readonly length: string;
  readonly total: string;
  /** Undefined in graphs without attention (MLP block, head). */
  readonly attention: StandardAttentionInputs | GroupQueryInputs | undefined;
  /** Per (input value, block size): the block sums S of the zero-point correction. */
  readonly blockSums: Map<string, string>;
  readonly shapeValues: Map<string, string>;
  readonly constants: Map<string, string>;
  readonly cast: Map<string, string>;
  /** Per packed weight: its codes, scales (as stored and in the activation type) and zero points, made once. */
  readonly packed: Map<string, PackedInputs>;
}

interface PackedInputs {
  readonly codes: string;
  readonly storedScales: string;
  readonly scales: string;
  readonly zeroPoints?: string;
}

interface StandardAttentionInputs {
  readonly kind: 'standard';
  /** [B|1, S, 1, D] cos and sign-folded sin, activation type. */
  readonly cos: string;
  readonly sin: string;
  /** bool [B|1, 1, 1, S, T]: which keys each query may attend to. */
  readonly allowed: string;
  readonly past: boolean;
}

interface GroupQueryInputs {
  readonly kind: 'group-query';
  /** int32 [B]: total valid tokens - 1; int32 scalar: total tokens. */
  readonly seqlensK: string;
  readonly totalLength: string;
  /** [maxPositions, D / 2] in the activation type. */
  readonly cos: string;
  readonly sin: string;
  readonly past: boolean;
}

/** Casts a value to the activation type unless it already has it (once per value). */
function toAct(c: Context, value: string, type: OnnxDataTypeValue): string {
  if (type === c.act) return value;
  let cast = c.cast.get(value);
  if (!cast) {
    cast = c.g.op('Cast', [value], { to: c.act });
    c.cast.set(value, cast);
  }
  return cast;
}

/** A float tensor of the model in the activation type. */
function floatTensor(c: Context, name: string): string {
  const { value, type } = c.weights.value(name);
  return toAct(c, value, type);
}

/** A float constant in the activation type (a float32 initializer, cast once when activations are float16). */
function actConstant(c: Context, values: readonly number[] | Float32Array, dims: readonly number[], hint: string): string {
  const key = `${hint}:${dims.join('x')}:${Array.from(values).join(',')}`;
  const cached = c.constants.get(key);
  if (cached) return cached;
  const value =
    c.act === OnnxDataType.FLOAT16
      ? c.g.initializer(`${hint}_${c.constants.size}`, OnnxDataType.FLOAT16, dims, float32ToF16Bits(Float32Array.from(values)))
      : c.g.floats(values, dims, hint);
  c.constants.set(key, value);
  return value;
}

/** A shape tensor from dynamic and constant dims; built once per distinct shape and shared by all layers. */
function shapeOf(c: Context, parts: readonly (string | number)[]): string {
  const key = parts.join(',');
  const cached = c.shapeValues.get(key);
  if (cached) return cached;
  const inputs: string[] = [];
  let constants: number[] = [];
  for (const p of parts) {
    if (typeof p === 'number') constants.push(p);
    else {
      if (constants.length) inputs.push(c.g.ints(constants));
      constants = [];
      inputs.push(p);
    }
  }
  if (constants.length) inputs.push(c.g.ints(constants));
  const shape = inputs.length === 1 ? inputs[0]! : c.g.op('Concat', inputs, { axis: 0 });
  c.shapeValues.set(key, shape);
  return shape;
}

function rmsNorm(c: Context, x: string, weight: string): string {
  const { g } = c;
  if (c.fused) {
    return g.op('SimplifiedLayerNormalization', [x, floatTensor(c, weight)], { axis: -1, epsilon: { float: c.config.rmsNormEps }, stash_type: 1 });
  }
  const variance = g.op('ReduceMean', [g.op('Pow', [x, actConstant(c, [2], [], 'two')])], { axes: [-1], keepdims: 1 });
  const denominator = g.op('Sqrt', [g.op('Add', [variance, actConstant(c, [c.config.rmsNormEps], [], 'rms_eps')])]);
  return g.op('Mul', [g.op('Div', [x, denominator]), floatTensor(c, weight)]);
}

/** residual + delta, and RMSNorm of that sum: one SkipSimplifiedLayerNormalization when fused. */
function addAndNorm(c: Context, residual: string, delta: string, weight: string): { sum: string; normed: string } {
  if (c.fused) {
    const [normed, , , sum] = c.g.node(
      'SkipSimplifiedLayerNormalization',
      [delta, residual, floatTensor(c, weight)],
      { epsilon: { float: c.config.rmsNormEps } },
      4,
      MICROSOFT_DOMAIN,
    ) as [string, string, string, string];
    return { sum, normed };
  }
  const sum = c.g.op('Add', [residual, delta]);
  return { sum, normed: rmsNorm(c, sum, weight) };
}

/** The initializers of a packed weight (codes, scales, zero points), made once per weight and shared by its users. */
function packedInputs(c: Context, name: string, weight: MatMulNBitsWeight): PackedInputs {
  const cached = c.packed.get(name);
  if (cached) return cached;
  const { g } = c;
  const [n, k] = weight.shape;
  const blocks = k / weight.blockSize;
  const scaleType = weight.scales instanceof Uint16Array ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
  const storedScales = g.initializer(`${name}.scales`, scaleType, [n, blocks], weight.scales);
  const inputs: PackedInputs = {
    codes: g.initializer(`${name}.qweight`, OnnxDataType.UINT8, [n, blocks, (weight.blockSize * weight.bits) / 8], weight.codes),
    storedScales,
    scales: toAct(c, storedScales, scaleType),
    ...(weight.zeroPoints ? { zeroPoints: g.initializer(`${name}.zero_points`, OnnxDataType.UINT8, [n, Math.ceil((blocks * weight.bits) / 8)], weight.zeroPoints) } : {}),
  };
  c.packed.set(name, inputs);
  return inputs;
}

/**
 * y = x W^T - S @ C for a packed W [N, K] (the correction only where the zero is fractional). `name` names the
 * weight's initializers (a tied lm_head reads embed_tokens'), `node` the MatMulNBits node.
 */
function packedLinear(c: Context, x: string, weight: MatMulNBitsWeight, name: string, node = name): string {
  const { g } = c;
  const [n, k] = weight.shape;
  const blocks = k / weight.blockSize;
  const packed = packedInputs(c, name, weight);
  const inputs = [x, packed.codes, packed.scales, ...(packed.zeroPoints ? [packed.zeroPoints] : [])];
  const y = g.node(
    'MatMulNBits',
    inputs,
    { K: k, N: n, bits: weight.bits, block_size: weight.blockSize, accuracy_level: c.accuracyLevel },
    1,
    MICROSOFT_DOMAIN,
    node,
  )[0]!;
  if (!weight.correction) return y;
  const key = `${x}|${weight.blockSize}`;
  let sums = c.blockSums.get(key);
  if (!sums) {
    // [M, K] -> [M, K/block, block] (Reshape's 0 copies M) -> sum over the block.
    sums = g.op('ReduceSum', [g.op('Reshape', [x, g.ints([0, blocks, weight.blockSize])]), g.ints([-1])], { keepdims: 0 });
    c.blockSums.set(key, sums);
  }
  const correctionType = weight.correction instanceof Uint16Array ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
  const correctionName = `${name}.zero_correction`;
  let correction = c.packed.get(correctionName)?.codes;
  if (!correction) {
    correction = toAct(c, g.initializer(correctionName, correctionType, [blocks, n], weight.correction), correctionType);
    c.packed.set(correctionName, { codes: correction, storedScales: correction, scales: correction });
  }
  // Y - S @ C in one Gemm (alpha -1, beta 1, C = Y).
  return g.op('Gemm', [sums, correction, y], { alpha: { float: -1 }, beta: { float: 1 } });
}

function checkPackedShape(c: Context, name: string, weight: MatMulNBitsWeight): void {
  const expected = c.shapes.get(name)!;
  if (expected[0] !== weight.shape[0] || expected[1] !== weight.shape[1]) {
    throw new ShapeMismatchError(name, `is packed as [${weight.shape.join(', ')}]; the config needs [${expected.join(', ')}]`);
  }
}

/** A float tensor made of several [rows, ...] tensors stacked along rows (an initializer when stored, else a Concat). */
function stackedFloat(c: Context, names: readonly string[]): string {
  if (names.length === 1) return floatTensor(c, names[0]!);
  const stored = names.map((n) => c.weights.stored(n));
  if (stored.every((w): w is Float32Array | Float16Weight => w !== undefined && !isPacked(w)) && stored.every((w) => isFloat16(w) === isFloat16(stored[0]!))) {
    const parts = stored.map((w, i) => {
      const data = floatData(w);
      const dims = c.shapes.get(names[i]!)!;
      if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new ShapeMismatchError(names[i]!, `has ${data.length} values; the config needs [${dims.join(', ')}]`);
      return data;
    });
    const total = parts.reduce((n, p) => n + p.length, 0);
    const data = isFloat16(stored[0]!) ? new Uint16Array(total) : new Float32Array(total);
    let offset = 0;
    for (const p of parts) {
      data.set(p, offset);
      offset += p.length;
    }
    const first = c.shapes.get(names[0]!)!;
    const rows = names.reduce((n, name) => n + c.shapes.get(name)![0]!, 0);
    const type = isFloat16(stored[0]!) ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
    return toAct(c, c.g.initializer(`${names.join('+')}`, type, [rows, ...first.slice(1)], data), type);
  }
  return c.g.op('Concat', names.map((n) => floatTensor(c, n)), { axis: 0 });
}

/**
 * Linear layers over the same input x [M, K]: one node for all of them where their weights allow it (all float, or
 * all packed with the same storage) and the graph is fused or the weights float; returns the stacked output
 * [M, sum of N] (`fused`) or one output per matrix.
 */
function linears(c: Context, x: string, names: readonly string[], biases: readonly string[] | undefined): { stacked: string } | { parts: string[] } {
  const stored = names.map((n) => c.weights.stored(n));
  const packed = stored.filter((w): w is MatMulNBitsWeight => w !== undefined && isPacked(w));
  for (const [i, w] of stored.entries()) if (w && isPacked(w)) checkPackedShape(c, names[i]!, w);
  const allFloat = packed.length === 0;
  const stack = names.length > 1 && (allFloat || (c.fused && packed.length === names.length && packedCompatible(packed)));
  const withBias = (y: string, bias: readonly string[] | undefined) => (bias ? c.g.op('Add', [y, stackedFloat(c, bias)]) : y);
  if (stack && allFloat) {
    const inputs = [x, stackedFloat(c, names)];
    if (biases) inputs.push(stackedFloat(c, biases));
    return { stacked: c.g.op('Gemm', inputs, { transB: 1 }) };
  }
  if (stack) return { stacked: withBias(packedLinear(c, x, stackPacked(names, packed), names.join('+')), biases) };
  return {
    parts: names.map((name, i) => {
      const w = stored[i];
      const bias = biases ? [biases[i]!] : undefined;
      if (w && isPacked(w)) return withBias(packedLinear(c, x, w, name), bias);
      const inputs = [x, floatTensor(c, name)];
      if (bias) inputs.push(floatTensor(c, bias[0]!));
      return c.g.op('Gemm', inputs, { transB: 1 });
    }),
  };
}

function linear(c: Context, x: string, name: string, bias: string | undefined, node = name): string {
  const weight = c.weights.stored(name);
  if (weight && isPacked(weight)) {
    checkPackedShape(c, name, weight);
    const y = packedLinear(c, x, weight, name, node);
    return bias ? c.g.op('Add', [y, floatTensor(c, bias)]) : y;
  }
  const result = linears(c, x, [name], bias ? [bias] : undefined);
  return 'stacked' in result ? result.stacked : result.parts[0]!;
}

/**
 * The token embeddings of `ids` as [B*S, hidden] in the activation type: a Gather of a float table, or for a packed
 * one com.microsoft GatherBlockQuantized over the same codes, scales and zero points MatMulNBits reads (uint8 codes as
 * [vocab, hidden * bits / 8], blocks along the hidden dimension; integer zero points only), so a tied lm_head shares
 * every byte with it.
 */
function addEmbedding(c: Context, ids: string): string {
  const { g } = c;
  const [vocabSize, h] = c.shapes.get(EMBED_TOKENS)!;
  const weight = c.weights.stored(EMBED_TOKENS);
  if (!weight || !isPacked(weight)) {
    const table = c.weights.value(EMBED_TOKENS);
    return g.op('Reshape', [toAct(c, g.op('Gather', [table.value, ids]), table.type), g.ints([-1, h!])]);
  }
  if (weight.shape[0] !== vocabSize || weight.shape[1] !== h) {
    throw new ShapeMismatchError(EMBED_TOKENS, `is packed as [${weight.shape.join(', ')}]; the config needs [${vocabSize}, ${h}]`);
  }
  if (weight.correction) {
    throw new InvalidOptionError('weights', `"${EMBED_TOKENS}" has fractional zero points; GatherBlockQuantized takes integer zero points only (quantize it with an -int or -sym config)`);
  }
  const packed = packedInputs(c, EMBED_TOKENS, weight);
  const data = g.op('Reshape', [packed.codes, g.ints([vocabSize!, (h! * weight.bits) / 8])]);
  const scaleType = weight.scales instanceof Uint16Array ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
  // GatherBlockQuantized outputs the scales' type: it reads them as stored, before any cast to the activation type.
  const gathered = g.node(
    'GatherBlockQuantized',
    [data, ids, packed.storedScales, ...(packed.zeroPoints ? [packed.zeroPoints] : [])],
    { gather_axis: 0, quantize_axis: 1, block_size: weight.blockSize, bits: weight.bits },
    1,
    MICROSOFT_DOMAIN,
    `${EMBED_TOKENS}.gather`,
  )[0]!;
  return g.op('Reshape', [toAct(c, gathered, scaleType), g.ints([-1, h!])]);
}

/** The parts of a stacked [M, sum of widths] output, or the parts as they are. */
function splitLinears(c: Context, result: { stacked: string } | { parts: string[] }, widths: readonly number[]): string[] {
  if ('parts' in result) return result.parts;
  return c.g.node('Split', [result.stacked, c.g.ints(widths)], { axis: 1 }, widths.length);
}

/** x [B, S, heads, D] -> x*cos + rotate_half(x)*sin (rotate_half's sign folded into sin). */
function rotate(c: Context, inputs: StandardAttentionInputs, x: string): string {
  const { g } = c;
  const d = c.config.headDim;
  const axis = g.ints([3]);
  const swapped = g.op('Concat', [g.op('Slice', [x, g.ints([d / 2]), g.ints([d]), axis]), g.op('Slice', [x, g.ints([0]), g.ints([d / 2]), axis])], { axis: 3 });
  return g.op('Add', [g.op('Mul', [x, inputs.cos]), g.op('Mul', [swapped, inputs.sin])]);
}

export interface AttentionValues {
  /** [N, numHeads*headDim]: softmax(QK^T)V before o_proj. */
  readonly context: string;
  /** [N, hidden]: the attention block output (o_proj applied), before the residual add. */
  readonly attention: string;
}

function presentNames(layer: number): [string, string] {
  return [`present.${layer}.key`, `present.${layer}.value`];
}

function pastNames(layer: number): [string, string] {
  return [`past_key_values.${layer}.key`, `past_key_values.${layer}.value`];
}

/** q/k/v (+bias) -> rotary -> causal grouped-query attention (with the cache) -> o_proj, on normed [N, hidden]. */
function addAttention(c: Context, layer: number, normed: string): AttentionValues {
  const { g, config, layout } = c;
  const { numHeads: heads, numKeyValueHeads: kvHeads, headDim: d } = config;
  const name = (t: LayerTensor) => c.tensorName(layer, t);
  const qkvNames = [name('q'), name('k'), name('v')];
  const qkv = linears(c, normed, qkvNames, layout.qkvBias ? [name('qBias'), name('kBias'), name('vBias')] : undefined);
  if (!c.attention) throw new RangeError('this graph was built without attention inputs');
  let context: string;
  if (c.attention.kind === 'group-query') {
    const a = c.attention;
    const to3d = (x: string, width: number) => g.op('Reshape', [x, shapeOf(c, [c.batch, c.length, width])]);
    const inputs = 'stacked' in qkv ? [to3d(qkv.stacked, (heads + 2 * kvHeads) * d), '', ''] : qkv.parts.map((p, i) => to3d(p, (i === 0 ? heads : kvHeads) * d));
    const [pastKey, pastValue] = a.past ? pastNames(layer) : ['', ''];
    const outputs = a.past ? [`attention_${layer}`, ...presentNames(layer)] : 3;
    const [output] = g.node(
      'GroupQueryAttention',
      [...inputs, pastKey, pastValue, a.seqlensK, a.totalLength, a.cos, a.sin],
      { num_heads: heads, kv_num_heads: kvHeads, do_rotary: 1, rotary_interleaved: 0, scale: { float: 1 / Math.sqrt(d) } },
      outputs,
      MICROSOFT_DOMAIN,
    ) as [string];
    context = g.op('Reshape', [output, g.ints([-1, heads * d])]);
  } else {
    const a = c.attention;
    const [q, k, v] = splitLinears(c, qkv, [heads * d, kvHeads * d, kvHeads * d]) as [string, string, string];
    const groups = heads / kvHeads;
    const heads4 = (x: string, count: number) => g.op('Reshape', [x, shapeOf(c, [c.batch, c.length, count, d])]);
    const perm = { perm: [0, 2, 1, 3] };
    // Scaling q before the product is what HF's sdpa path computes up to rounding; softmax sees the same scores.
    const qHeads = g.op('Mul', [g.op('Transpose', [rotate(c, a, heads4(q, heads))], perm), actConstant(c, [1 / Math.sqrt(d)], [], 'attention_scale')]);
    let keys = g.op('Transpose', [rotate(c, a, heads4(k, kvHeads))], perm);
    let values = g.op('Transpose', [heads4(v, kvHeads)], perm);
    if (a.past) {
      const [pastKey, pastValue] = pastNames(layer);
      const [presentKey, presentValue] = presentNames(layer);
      keys = g.op('Concat', [pastKey, keys], { axis: 2 }, presentKey);
      values = g.op('Concat', [pastValue, values], { axis: 2 }, presentValue);
    }
    // Query heads h = kv * groups + j read KV head kv: [B, heads, S, D] -> [B, kv, groups*S, D], one MatMul per KV head.
    const qGrouped = g.op('Reshape', [qHeads, shapeOf(c, [c.batch, kvHeads, -1, d])]);
    const scores = g.op('MatMul', [qGrouped, g.op('Transpose', [keys], { perm: [0, 1, 3, 2] })]);
    const scores5 = g.op('Reshape', [scores, shapeOf(c, [c.batch, kvHeads, groups, c.length, c.total])]);
    const lowest = actConstant(c, [c.act === OnnxDataType.FLOAT16 ? -65504 : -3.4028234663852886e38], [], 'mask_value');
    const probabilities = g.op('Softmax', [g.op('Where', [a.allowed, scores5, lowest])], { axis: -1 });
    const context4 = g.op('MatMul', [g.op('Reshape', [probabilities, shapeOf(c, [c.batch, kvHeads, -1, c.total])]), values]);
    const context5 = g.op('Reshape', [context4, shapeOf(c, [c.batch, kvHeads, groups, c.length, d])]);
    context = g.op('Reshape', [g.op('Transpose', [context5], { perm: [0, 3, 1, 2, 4] }), g.ints([-1, heads * d])]);
  }
  const attention = linear(c, context, name('o'), layout.oBias ? name('oBias') : undefined);
  return { context, attention };
}

export interface MlpValues {
  /** [N, intermediate]: silu(gate) * up, the input of down_proj. */
  readonly activation: string;
  /** [N, hidden]: the MLP block output (down_proj applied), before the residual add. */
  readonly mlp: string;
}

/** silu(gate) * up -> down_proj, on normed [N, hidden]. */
function addMlp(c: Context, layer: number, normed: string): MlpValues {
  const { g, config, layout } = c;
  const name = (t: LayerTensor) => c.tensorName(layer, t);
  const biases = layout.mlpBias ? [name('gateBias'), name('upBias')] : undefined;
  const [gate, up] = splitLinears(c, linears(c, normed, [name('gate'), name('up')], biases), [config.intermediateSize, config.intermediateSize]) as [string, string];
  const activation = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  const mlp = linear(c, activation, name('down'), layout.mlpBias ? name('downBias') : undefined);
  return { activation, mlp };
}

interface GraphSizes {
  readonly batch: string;
  readonly length: string;
  readonly total: string;
}

/** The KV-cache inputs the attention reads: position ids (standard graph only), the mask and the past length. */
interface CacheInputs {
  readonly positions?: string;
  readonly mask: string;
  readonly pastLength: string;
}

/** int64[1] batch size, new tokens and total tokens of a [B, S, ...] value (total = past + S with the cache). */
function graphSizes(g: GraphBuilder, shapeSource: string, cache: CacheInputs | undefined): GraphSizes {
  const shape = g.op('Shape', [shapeSource]);
  const batch = g.op('Slice', [shape, g.ints([0]), g.ints([1])]);
  const length = g.op('Slice', [shape, g.ints([1]), g.ints([2])]);
  return { batch, length, total: cache ? g.op('Add', [length, cache.pastLength]) : length };
}

/**
 * The attention's per-graph inputs: rotary tables and the causal mask (standard), or GroupQueryAttention's sequence
 * lengths and cos/sin caches. Without the cache, positions are 0..S-1 and every earlier key is visible.
 */
function attentionInputs(
  g: GraphBuilder,
  config: DecoderConfig,
  act: OnnxDataTypeValue,
  sizes: GraphSizes,
  groupQuery: boolean,
  maxPositions: number,
  cache: CacheInputs | undefined,
): StandardAttentionInputs | GroupQueryInputs {
  const { batch, length, total } = sizes;
  const d = config.headDim;
  const half = d / 2;
  if (groupQuery) {
    const { cos, sin } = rotaryTables(config, maxPositions);
    const table = (values: Float32Array, hint: string) =>
      act === OnnxDataType.FLOAT16
        ? g.initializer(`${hint}_cache`, OnnxDataType.FLOAT16, [maxPositions, half], float32ToF16Bits(values))
        : g.initializer(`${hint}_cache`, OnnxDataType.FLOAT, [maxPositions, half], values);
    let seqlensK: string;
    let totalLength: string;
    if (cache) {
      // attention_mask [B, past + S] of ones for the valid tokens (right padding): seqlens_k = valid - 1.
      seqlensK = g.op('Cast', [g.op('Sub', [g.op('ReduceSum', [cache.mask, g.ints([1])], { keepdims: 0 }), g.ints([1], [])])], { to: OnnxDataType.INT32 });
      totalLength = g.op('Cast', [g.op('Squeeze', [g.op('Slice', [g.op('Shape', [cache.mask]), g.ints([1]), g.ints([2])]), g.ints([0])])], { to: OnnxDataType.INT32 });
    } else {
      seqlensK = g.op('Cast', [g.op('Expand', [g.op('Sub', [length, g.ints([1])]), batch])], { to: OnnxDataType.INT32 });
      totalLength = g.op('Cast', [g.op('Squeeze', [length, g.ints([0])])], { to: OnnxDataType.INT32 });
    }
    return { kind: 'group-query', seqlensK, totalLength, cos: table(cos, 'cos'), sin: table(sin, 'sin'), past: cache !== undefined };
  }

  const lengthScalar = g.op('Squeeze', [length, g.ints([0])]);
  const past = cache ? g.op('Squeeze', [cache.pastLength, g.ints([0])]) : g.ints([0], []);
  const positions = cache?.positions ?? g.op('Unsqueeze', [g.op('Range', [g.ints([0], []), lengthScalar, g.ints([1], [])]), g.ints([0])]);
  // Rotary tables from the position ids, in float32: [B, S, 1, D] cos and sign-folded sin.
  const angles = g.op('Mul', [
    g.op('Unsqueeze', [g.op('Cast', [positions], { to: OnnxDataType.FLOAT }), g.ints([2])]),
    g.floats(rotaryInverseFrequencies(config), [half], 'inverse_frequencies'),
  ]);
  const doubled = g.op('Concat', [angles, angles], { axis: 2 });
  const signs = Float32Array.from({ length: d }, (_, i) => (i < half ? -1 : 1));
  const castAct = (x: string) => (act === OnnxDataType.FLOAT ? x : g.op('Cast', [x], { to: act }));
  const cos = castAct(g.op('Unsqueeze', [g.op('Cos', [doubled]), g.ints([2])]));
  const sin = castAct(g.op('Unsqueeze', [g.op('Mul', [g.op('Sin', [doubled]), g.floats(signs, [d], 'rotate_signs')]), g.ints([2])]));
  // Causal: query i (absolute slot past + i) sees keys j <= past + i; with the cache, padding keys never.
  const totalScalar = g.op('Squeeze', [total, g.ints([0])]);
  const keyPositions = g.op('Range', [g.ints([0], []), totalScalar, g.ints([1], [])]);
  const queryPositions = g.op('Unsqueeze', [g.op('Add', [g.op('Range', [g.ints([0], []), lengthScalar, g.ints([1], [])]), past]), g.ints([1])]);
  const causal = g.op('LessOrEqual', [keyPositions, queryPositions]);
  // attention_mask [B, T] -> [B, 1, 1, 1, T].
  const allowed = cache ? g.op('And', [causal, g.op('Unsqueeze', [g.op('Cast', [cache.mask], { to: OnnxDataType.BOOL }), g.ints([1, 2, 3])])]) : causal;
  return { kind: 'standard', cos, sin, allowed, past: cache !== undefined };
}

function createContext(
  g: GraphBuilder,
  config: DecoderConfig,
  layout: DecoderLayout,
  shapes: ReadonlyMap<string, readonly number[]>,
  weights: WeightSource,
  options: { act: OnnxDataTypeValue; accuracyLevel: 0 | 4; fused: boolean; tensorName: Context['tensorName'] },
  sizes: GraphSizes,
  attention: Context['attention'],
): Context {
  return {
    g, config, layout, shapes, weights, ...options, ...sizes, attention,
    blockSums: new Map(), shapeValues: new Map(), constants: new Map(), cast: new Map(), packed: new Map(),
  };
}

const fullTensorName = (layer: number, tensor: LayerTensor) => `model.layers.${layer}.${LAYER_TENSORS[tensor]}`;

/**
 * The whole decoder. Inputs `input_ids` int64 [batch_size, sequence_length] (and with `kvCache` the cache inputs);
 * outputs `logits` (and `token_nll`, `hidden_<i>`, `present.*` as asked).
 */
export function buildDecoderGraph(config: DecoderConfig, layout: DecoderLayout, options: DecoderGraphOptions = {}): GraphBuilder {
  const kvCache = options.kvCache ?? false;
  const act = options.activations === 'float16' ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
  const accuracyLevel = options.accuracyLevel ?? 0;
  if (accuracyLevel !== 0 && accuracyLevel !== 4) throw new InvalidOptionError('accuracyLevel', `${String(accuracyLevel)} must be 0 or 4`);
  const operators = options.operators ?? 'standard';
  if (operators !== 'fused' && operators !== 'standard') throw new InvalidOptionError('operators', `"${String(operators)}" must be "fused" or "standard"`);
  if (!options.weights && act !== OnnxDataType.FLOAT) throw new InvalidOptionError('activations', 'weights given as graph inputs are float32; give the weights to build a float16 graph');
  if (kvCache && options.tokenNll) throw new InvalidOptionError('tokenNll', 'per-token NLL is computed by the graph without the cache; build it with kvCache false');
  const fused = operators === 'fused';
  const groupQuery = fused && supportsGroupQueryAttention(config);
  const maxPositions = options.maxPositions ?? config.maxPositionEmbeddings;
  if (groupQuery && (!Number.isInteger(maxPositions) || maxPositions < 1)) throw new InvalidOptionError('maxPositions', `${maxPositions} must be a positive integer`);

  const g = new GraphBuilder(kvCache ? 'layerquant-decoder-kv' : 'layerquant-decoder');
  const { numKeyValueHeads: kvHeads, headDim: d, hiddenSize: h, vocabSize } = config;
  const ids = g.input('input_ids', OnnxDataType.INT64, [BATCH_DIM, SEQUENCE_DIM]);
  let cache: CacheInputs | undefined;
  let logitsToKeep: string | undefined;
  if (kvCache) {
    const mask = g.input('attention_mask', OnnxDataType.INT64, [BATCH_DIM, 'total_sequence_length']);
    // GroupQueryAttention places the rotary by the cache length; the standard graph reads position_ids.
    const positions = groupQuery ? undefined : g.input('position_ids', OnnxDataType.INT64, [BATCH_DIM, SEQUENCE_DIM]);
    for (let i = 0; i < config.numLayers; i++) {
      for (const past of pastNames(i)) g.input(past, act, [BATCH_DIM, kvHeads, 'past_sequence_length', d]);
    }
    // transformers.js feeds 1 while generating: logits of the last position only.
    logitsToKeep = g.input('num_logits_to_keep', OnnxDataType.INT64, []);
    const pastLength = g.op('Slice', [g.op('Shape', [pastNames(0)[0]]), g.ints([2]), g.ints([3])]);
    cache = { ...(positions ? { positions } : {}), mask, pastLength };
  }
  const shapes = expectedShapes(config, layout);
  const weights = weightSource(g, shapes, options.weights);
  const sizes = graphSizes(g, ids, cache);
  const attention = attentionInputs(g, config, act, sizes, groupQuery, maxPositions, cache);
  const c = createContext(g, config, layout, shapes, weights, { act, accuracyLevel, fused, tensorName: fullTensorName }, sizes, attention);

  let residual = addEmbedding(c, ids);
  const hiddenOutput = (x: string, i: number) => {
    g.op('Reshape', [x, shapeOf(c, [c.batch, c.length, h])], {}, `hidden_${i}`);
    g.output(`hidden_${i}`, act, [BATCH_DIM, SEQUENCE_DIM, h]);
  };
  let normed = rmsNorm(c, residual, fullTensorName(0, 'inputNorm'));
  for (let i = 0; i < config.numLayers; i++) {
    if (options.hiddenStates) hiddenOutput(residual, i);
    const { attention } = addAttention(c, i, normed);
    const afterAttention = addAndNorm(c, residual, attention, fullTensorName(i, 'postNorm'));
    const { mlp } = addMlp(c, i, afterAttention.normed);
    const next = addAndNorm(c, afterAttention.sum, mlp, i + 1 < config.numLayers ? fullTensorName(i + 1, 'inputNorm') : FINAL_NORM);
    residual = next.sum;
    normed = next.normed;
  }
  if (options.hiddenStates) hiddenOutput(residual, config.numLayers);

  let rows = normed;
  let rowsLength = c.length;
  if (logitsToKeep) {
    // The last num_logits_to_keep positions of each sequence (Slice from -0 = 0 keeps them all).
    const normed3d = g.op('Reshape', [normed, shapeOf(c, [c.batch, c.length, h])]);
    const kept = g.op('Slice', [normed3d, g.op('Neg', [g.op('Unsqueeze', [logitsToKeep, g.ints([0])])]), g.ints([Number.MAX_SAFE_INTEGER]), g.ints([1])]);
    rowsLength = g.op('Slice', [g.op('Shape', [kept]), g.ints([1]), g.ints([2])]);
    rows = g.op('Reshape', [kept, g.ints([-1, h])]);
  }
  // A tied lm_head reads the embedding table: the same float initializer, or the same packed codes and scales.
  const logits2d = linear(c, rows, layout.tiedEmbeddings ? EMBED_TOKENS : LM_HEAD, undefined, LM_HEAD);
  if (options.logits ?? true) {
    const logits3d = g.op('Reshape', [logits2d, shapeOf(c, [c.batch, rowsLength, vocabSize])]);
    if (act === OnnxDataType.FLOAT) g.op('Identity', [logits3d], {}, 'logits');
    else g.op('Cast', [logits3d], { to: OnnxDataType.FLOAT }, 'logits');
    g.output('logits', OnnxDataType.FLOAT, [BATCH_DIM, logitsToKeep ? 'logits_length' : SEQUENCE_DIM, vocabSize]);
  }
  if (options.tokenNll) addTokenNll(c, logits2d);
  if (kvCache) {
    for (let i = 0; i < config.numLayers; i++) {
      for (const present of presentNames(i)) g.output(present, act, [BATCH_DIM, kvHeads, 'total_sequence_length', d]);
    }
  }
  return g;
}

function addTokenNll(c: Context, logits2d: string): void {
  const { g } = c;
  const targets = g.input('targets', OnnxDataType.INT64, [BATCH_DIM, SEQUENCE_DIM]);
  const logits = c.act === OnnxDataType.FLOAT ? logits2d : g.op('Cast', [logits2d], { to: OnnxDataType.FLOAT });
  const logProbabilities = g.op('LogSoftmax', [logits], { axis: -1 });
  const picked = g.op('GatherElements', [logProbabilities, g.op('Reshape', [targets, g.ints([-1, 1])])], { axis: 1 });
  g.op('Reshape', [g.op('Neg', [picked]), shapeOf(c, [c.batch, c.length])], {}, 'token_nll');
  g.output('token_nll', OnnxDataType.FLOAT, [BATCH_DIM, SEQUENCE_DIM]);
}

/** Names of a layer's tensors as block-graph inputs (layer-relative, e.g. `self_attn.q_proj.weight`). */
export function blockInputNames(layout: DecoderLayout, block: 'attention' | 'mlp'): LayerTensor[] {
  if (block === 'attention') {
    return ['inputNorm', 'q', 'k', 'v', 'o', ...(layout.qkvBias ? (['qBias', 'kBias', 'vBias'] as const) : []), ...(layout.oBias ? (['oBias'] as const) : [])];
  }
  return ['postNorm', 'gate', 'up', 'down', ...(layout.mlpBias ? (['gateBias', 'upBias', 'downBias'] as const) : [])];
}

function layerRelativeShapes(config: DecoderConfig, layout: DecoderLayout): Map<string, readonly number[]> {
  const prefix = 'model.layers.0.';
  const shapes = new Map<string, readonly number[]>();
  for (const [name, shape] of expectedShapes({ ...config, numLayers: 1 }, layout)) {
    if (name.startsWith(prefix)) shapes.set(name.slice(prefix.length), shape);
  }
  return shapes;
}

/** A block graph's context: weights are float32 graph inputs named layer-relative; input `hidden` [B, T, hidden]. */
function blockContext(g: GraphBuilder, config: DecoderConfig, layout: DecoderLayout, block: 'attention' | 'mlp'): { c: Context; hidden: string } {
  const shapes = layerRelativeShapes(config, layout);
  const weights = weightSource(g, shapes, undefined);
  const input = g.input('hidden', OnnxDataType.FLOAT, [BATCH_DIM, SEQUENCE_DIM, config.hiddenSize]);
  const tensorName = (_layer: number, tensor: LayerTensor) => LAYER_TENSORS[tensor];
  const sizes = graphSizes(g, input, undefined);
  const attention = block === 'attention' ? attentionInputs(g, config, OnnxDataType.FLOAT, sizes, false, 0, undefined) : undefined;
  const c = createContext(g, config, layout, shapes, weights, { act: OnnxDataType.FLOAT, accuracyLevel: 0, fused: false, tensorName }, sizes, attention);
  for (const t of blockInputNames(layout, block)) weights.value(LAYER_TENSORS[t]);
  return { c, hidden: g.op('Reshape', [input, g.ints([-1, config.hiddenSize])]) };
}

function blockOutput(c: Context, value: string, width: number, name: string): void {
  c.g.op('Reshape', [value, shapeOf(c, [c.batch, c.length, width])], {}, name);
  c.g.output(name, OnnxDataType.FLOAT, [BATCH_DIM, SEQUENCE_DIM, width]);
}

/**
 * One attention block of any layer: input `hidden` [B, T, hidden] and the layer's tensors as inputs
 * (layer-relative names); outputs `context` [B, T, heads*headDim], `attention` [B, T, hidden] (before
 * the residual add) and `residual` = hidden + attention.
 */
export function buildAttentionBlockGraph(config: DecoderConfig, layout: DecoderLayout): GraphBuilder {
  const g = new GraphBuilder('layerquant-attention-block');
  const { c, hidden } = blockContext(g, config, layout, 'attention');
  const { context, attention } = addAttention(c, 0, rmsNorm(c, hidden, LAYER_TENSORS.inputNorm));
  blockOutput(c, context, config.numHeads * config.headDim, 'context');
  blockOutput(c, attention, config.hiddenSize, 'attention');
  blockOutput(c, g.op('Add', [hidden, attention]), config.hiddenSize, 'residual');
  return g;
}

/**
 * One MLP block of any layer: input `hidden` [B, T, hidden] (the attention residual); outputs
 * `activation` [B, T, intermediate], `mlp` [B, T, hidden] (before the residual add) and `output` = hidden + mlp.
 */
export function buildMlpBlockGraph(config: DecoderConfig, layout: DecoderLayout): GraphBuilder {
  const g = new GraphBuilder('layerquant-mlp-block');
  const { c, hidden } = blockContext(g, config, layout, 'mlp');
  const { activation, mlp } = addMlp(c, 0, rmsNorm(c, hidden, LAYER_TENSORS.postNorm));
  blockOutput(c, activation, config.intermediateSize, 'activation');
  blockOutput(c, mlp, config.hiddenSize, 'mlp');
  blockOutput(c, g.op('Add', [hidden, mlp]), config.hiddenSize, 'output');
  return g;
}

/** `y = x W^T (+ b)` for x [M, in], W [out, in]: re-applies one linear layer (o_proj, down_proj) to saved inputs. */
export function buildLinearGraph(bias: boolean): GraphBuilder {
  const g = new GraphBuilder('layerquant-linear');
  const inputs = [g.input('x', OnnxDataType.FLOAT, ['rows', 'in']), g.input('weight', OnnxDataType.FLOAT, ['out', 'in'])];
  if (bias) inputs.push(g.input('bias', OnnxDataType.FLOAT, ['out']));
  g.op('Gemm', inputs, { transB: 1 }, 'y');
  g.output('y', OnnxDataType.FLOAT, ['rows', 'out']);
  return g;
}

/** `y = x^T x` for x [rows, columns] (a Hessian's X^T X): one Gemm with transA, no transposed copy. */
export function buildGramGraph(): GraphBuilder {
  const g = new GraphBuilder('layerquant-gram');
  const x = g.input('x', OnnxDataType.FLOAT, ['rows', 'columns']);
  g.op('Gemm', [x, x], { transA: 1 }, 'y');
  g.output('y', OnnxDataType.FLOAT, ['columns', 'columns']);
  return g;
}

/** The final RMSNorm and lm_head on [B, T, hidden]: outputs `logits`, and `token_nll` given `targets`. */
export function buildHeadGraph(config: DecoderConfig, layout: DecoderLayout, tokenNll: boolean): GraphBuilder {
  const g = new GraphBuilder('layerquant-head');
  const shapes = expectedShapes({ ...config, numLayers: 0 }, layout);
  const weights = weightSource(g, shapes, undefined);
  const h = config.hiddenSize;
  const input = g.input('hidden', OnnxDataType.FLOAT, [BATCH_DIM, SEQUENCE_DIM, h]);
  const c = createContext(g, config, layout, shapes, weights, { act: OnnxDataType.FLOAT, accuracyLevel: 0, fused: false, tensorName: fullTensorName }, graphSizes(g, input, undefined), undefined);
  const normed = rmsNorm(c, g.op('Reshape', [input, g.ints([-1, h])]), FINAL_NORM);
  const logits2d = layout.tiedEmbeddings ? g.op('Gemm', [normed, floatTensor(c, EMBED_TOKENS)], { transB: 1 }) : linear(c, normed, LM_HEAD, undefined);
  g.op('Reshape', [logits2d, shapeOf(c, [c.batch, c.length, config.vocabSize])], {}, 'logits');
  g.output('logits', OnnxDataType.FLOAT, [BATCH_DIM, SEQUENCE_DIM, config.vocabSize]);
  if (tokenNll) addTokenNll(c, logits2d);
  return g;
}
