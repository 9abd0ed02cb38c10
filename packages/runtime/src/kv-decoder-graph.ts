import { InvalidOptionError, MissingTensorError, ShapeMismatchError, type DecoderConfig } from '@layerquant/core';
import { rotaryInverseFrequencies } from './decoder-graph.js';
import { EMBED_TOKENS, FINAL_NORM, LAYER_TENSORS, LM_HEAD, expectedShapes, type DecoderLayout, type LayerTensor } from './decoder-weights.js';
import { GraphBuilder } from './graph-builder.js';
import { OnnxDataType, type OnnxDataTypeValue } from './onnx-proto.js';

/**
 * The Llama-family decoder with a key/value cache, in the layout transformers.js and onnxruntime-genai-style
 * exports use: inputs `input_ids`, `attention_mask`, `position_ids`, `past_key_values.{i}.key/.value`
 * ([batch_size, kv_heads, past_sequence_length, head_dim]); outputs `logits` and `present.{i}.key/.value`.
 *
 * Every linear matrix is given either in float (a Gemm) or packed for com.microsoft MatMulNBits (one node per
 * matrix, block = group), so the same graph serves the fp32 model, the quantized model we evaluate and the file
 * we ship. HQQ's fractional zero point is exact: an integer zero point in MatMulNBits plus a per-group
 * correction `Y -= S @ C` with `S[m, b] = sum of A[m, k] over block b` and `C[b, n] = (z - zp) * scale`.
 */

/** A linear weight [N, K] packed for com.microsoft MatMulNBits. Dequantized: (code - zp) * scale - correction. */
export interface MatMulNBitsWeight {
  readonly format: 'matmul-nbits';
  readonly bits: 2 | 4 | 8;
  readonly blockSize: number;
  /** [N (out features), K (in features)]. */
  readonly shape: readonly [number, number];
  /** uint8 [N, K / blockSize, blockSize * bits / 8], codes least significant bits first along K. */
  readonly codes: Uint8Array;
  /** [N, K / blockSize]: float32, or float16 bits (a Uint16Array). */
  readonly scales: Float32Array | Uint16Array;
  /** Packed uint8 [N, ceil(K / blockSize * bits / 8)]; absent: 2^(bits-1). */
  readonly zeroPoints?: Uint8Array;
  /** [K / blockSize, N]: (z - zp) * scale where the zero is fractional; absent where zp is exact. */
  readonly correction?: Float32Array | Uint16Array;
}

/** A float tensor stored as IEEE half-precision bits. */
export interface Float16Weight {
  readonly format: 'float16';
  readonly data: Uint16Array;
}

/** A tensor of the graph: float32 data, float16 bits, or (linear matrices only) a packed MatMulNBits weight. */
export type GraphWeight = Float32Array | Float16Weight | MatMulNBitsWeight;

export type ActivationType = 'float32' | 'float16';

export interface KvDecoderGraphOptions {
  /** Every tensor the decoder reads (names as in the checkpoint; expectedShapes lists them). */
  readonly weights: ReadonlyMap<string, GraphWeight>;
  /** Past/present key-value inputs and outputs (default true); without them, inputs are input_ids only. */
  readonly kvCache?: boolean;
  /** Activations and KV cache in float32 (default) or float16 (logits stay float32). */
  readonly activations?: ActivationType;
  /** MatMulNBits accuracy_level: 0 keeps activations in float, 4 quantizes them to int8 inside the kernel. */
  readonly accuracyLevel?: 0 | 4;
}

export const MICROSOFT_DOMAIN = 'com.microsoft';
/** transformers.js derives the empty first cache from these symbolic dims. */
export const BATCH_DIM = 'batch_size';

function isPacked(weight: GraphWeight): weight is MatMulNBitsWeight {
  return (weight as MatMulNBitsWeight).format === 'matmul-nbits';
}

function isFloat16(weight: GraphWeight): weight is Float16Weight {
  return (weight as Float16Weight).format === 'float16';
}

interface PackedInputs {
  readonly codes: string;
  readonly storedScales: string;
  readonly scales: string;
  readonly zeroPoints?: string;
}

interface KvContext {
  readonly g: GraphBuilder;
  readonly config: DecoderConfig;
  readonly layout: DecoderLayout;
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  readonly weights: ReadonlyMap<string, GraphWeight>;
  readonly act: OnnxDataTypeValue;
  readonly accuracyLevel: 0 | 4;
  readonly batch: string;
  readonly length: string;
  readonly total: string;
  readonly cos: string;
  readonly sin: string;
  /** bool [batch or 1, 1, 1, S, T]: which keys each query may attend to. */
  readonly allowed: string;
  /** Per (input value, block size): the block sums S of the zero-point correction, shared by q/k/v and gate/up. */
  readonly blockSums: Map<string, string>;
  readonly bound: Map<string, string>;
  /** Per packed weight: its codes, scales (as stored and in the activation type) and zero points. */
  readonly packed: Map<string, PackedInputs>;
  readonly shapes1d: Map<string, string>;
  readonly constants: Map<string, string>;
}

/** Casts a value to the activation type unless it already has it. */
function toAct(c: KvContext, value: string, type: OnnxDataTypeValue): string {
  return type === c.act ? value : c.g.op('Cast', [value], { to: c.act });
}

/** A float constant in the activation type (a float32 initializer, cast once when activations are float16). */
function actConstant(c: KvContext, values: readonly number[], dims: readonly number[], hint: string): string {
  const key = `${hint}:${values.join(',')}`;
  const cached = c.constants.get(key);
  if (cached) return cached;
  const value = c.g.floats(values, dims, hint);
  const typed = c.act === OnnxDataType.FLOAT ? value : c.g.op('Cast', [value], { to: c.act });
  c.constants.set(key, typed);
  return typed;
}

function weightOf(c: KvContext, name: string): GraphWeight {
  const weight = c.weights.get(name);
  if (!weight) throw new MissingTensorError(name, 'the graph weights', 'every tensor of expectedShapes(config, layout) must be given');
  return weight;
}

/** A float tensor as an initializer, stored as given (float32 or float16), made once. */
function floatTensorStored(c: KvContext, name: string): string {
  const key = `${name}#stored`;
  const cached = c.bound.get(key);
  if (cached) return cached;
  const weight = weightOf(c, name);
  if (isPacked(weight)) throw new InvalidOptionError('weights', `"${name}" is packed for MatMulNBits; only linear matrices, embed_tokens and lm_head may be packed`);
  const dims = c.shapes.get(name)!;
  const expected = dims.reduce((a, b) => a * b, 1);
  const data = isFloat16(weight) ? weight.data : weight;
  if (data.length !== expected) throw new ShapeMismatchError(name, `has ${data.length} values; the config needs [${dims.join(', ')}]`);
  const value = c.g.initializer(name, isFloat16(weight) ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT, dims, data);
  c.bound.set(key, value);
  return value;
}

/** A float tensor as an initializer (stored as given) cast to the activation type. */
function floatTensor(c: KvContext, name: string): string {
  const cached = c.bound.get(name);
  if (cached) return cached;
  const weight = weightOf(c, name);
  const value = toAct(c, floatTensorStored(c, name), isFloat16(weight) ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT);
  c.bound.set(name, value);
  return value;
}

function addRmsNorm(c: KvContext, x: string, weight: string): string {
  const { g } = c;
  const variance = g.op('ReduceMean', [g.op('Pow', [x, actConstant(c, [2], [], 'two')])], { axes: [-1], keepdims: 1 });
  const denominator = g.op('Sqrt', [g.op('Add', [variance, actConstant(c, [c.config.rmsNormEps], [], 'rms_eps')])]);
  return g.op('Mul', [g.op('Div', [x, denominator]), floatTensor(c, weight)]);
}

/** The initializers of a packed weight (codes, scales, zero points), made once per weight and shared by its users. */
function packedInputs(c: KvContext, name: string, weight: MatMulNBitsWeight): PackedInputs {
  const { g } = c;
  const key = `${name}#packed`;
  const cached = c.packed.get(key);
  if (cached) return cached;
  const [n] = weight.shape;
  const blocks = weight.shape[1] / weight.blockSize;
  const scaleType = weight.scales instanceof Uint16Array ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
  const storedScales = g.initializer(`${name}.scales`, scaleType, [n, blocks], weight.scales);
  const inputs = {
    codes: g.initializer(`${name}.qweight`, OnnxDataType.UINT8, [n, blocks, (weight.blockSize * weight.bits) / 8], weight.codes),
    storedScales,
    scales: toAct(c, storedScales, scaleType),
    ...(weight.zeroPoints ? { zeroPoints: g.initializer(`${name}.zero_points`, OnnxDataType.UINT8, [n, Math.ceil((blocks * weight.bits) / 8)], weight.zeroPoints) } : {}),
  };
  c.packed.set(key, inputs);
  return inputs;
}

/**
 * y = x W^T (+ b) for x [M, K]: a Gemm for a float W, one MatMulNBits (+ zero correction) for a packed one. `name` is
 * the weight's tensor name (lm_head of a tied model reads embed_tokens'), `node` the name the MatMulNBits node gets.
 */
function addLinear(c: KvContext, x: string, name: string, bias: string | undefined, node = name): string {
  const { g } = c;
  const weight = weightOf(c, name);
  let y: string;
  if (!isPacked(weight)) {
    const inputs = [x, floatTensor(c, name)];
    if (bias) inputs.push(floatTensor(c, bias));
    return g.op('Gemm', inputs, { transB: 1 });
  }
  const [n, k] = weight.shape;
  const expected = c.shapes.get(name)!;
  if (expected[0] !== n || expected[1] !== k) {
    throw new ShapeMismatchError(name, `is packed as [${n}, ${k}]; the config needs [${expected.join(', ')}]`);
  }
  const blocks = k / weight.blockSize;
  const packed = packedInputs(c, name, weight);
  const inputs = [x, packed.codes, packed.scales, ...(packed.zeroPoints ? [packed.zeroPoints] : [])];
  y = g.node(
    'MatMulNBits',
    inputs,
    { K: k, N: n, bits: weight.bits, block_size: weight.blockSize, accuracy_level: c.accuracyLevel },
    1,
    MICROSOFT_DOMAIN,
    node,
  )[0]!;
  if (weight.correction) {
    const key = `${x}|${weight.blockSize}`;
    let sums = c.blockSums.get(key);
    if (!sums) {
      const grouped = g.op('Reshape', [x, g.ints([0, blocks, weight.blockSize])]);
      // [M, K] -> [M, K/block, block]: Reshape's 0 copies M.
      sums = g.op('ReduceSum', [grouped, g.ints([-1])], { keepdims: 0 });
      c.blockSums.set(key, sums);
    }
    const correctionType = weight.correction instanceof Uint16Array ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
    const correction = toAct(c, g.initializer(`${name}.zero_correction`, correctionType, [blocks, n], weight.correction), correctionType);
    y = g.op('Sub', [y, g.op('MatMul', [sums, correction])]);
  }
  return bias ? g.op('Add', [y, floatTensor(c, bias)]) : y;
}

/**
 * The token embeddings of `ids` as [B*S, hidden] in the activation type: a Gather of a float table, or for a packed
 * one com.microsoft GatherBlockQuantized over the same codes, scales and zero points MatMulNBits reads (uint8 codes as
 * [vocab, hidden * bits / 8], blocks along the hidden dimension; integer zero points only), so a tied lm_head shares
 * every byte with it.
 */
function addEmbedding(c: KvContext, ids: string): string {
  const { g } = c;
  const weight = weightOf(c, EMBED_TOKENS);
  const [vocabSize, h] = c.shapes.get(EMBED_TOKENS)!;
  if (!isPacked(weight)) {
    const embedType = isFloat16(weight) ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
    const table = floatTensorStored(c, EMBED_TOKENS);
    return g.op('Reshape', [toAct(c, g.op('Gather', [table, ids]), embedType), g.ints([-1, h!])]);
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

/** A shape tensor from dynamic and constant dims; built once per distinct shape and shared by all layers. */
function shapeOf(c: KvContext, parts: readonly (string | number)[]): string {
  const key = parts.join(',');
  const cached = c.shapes1d.get(key);
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
  const shape = c.g.op('Concat', inputs, { axis: 0 });
  c.shapes1d.set(key, shape);
  return shape;
}

/** x [B, S, heads, D] -> x*cos + rotate_half(x)*sin (rotate_half's sign folded into sin). */
function rotate(c: KvContext, x: string): string {
  const { g } = c;
  const d = c.config.headDim;
  const axis = g.ints([3]);
  const swapped = g.op('Concat', [g.op('Slice', [x, g.ints([d / 2]), g.ints([d]), axis]), g.op('Slice', [x, g.ints([0]), g.ints([d / 2]), axis])], { axis: 3 });
  return g.op('Add', [g.op('Mul', [x, c.cos]), g.op('Mul', [swapped, c.sin])]);
}

function addAttention(c: KvContext, layer: number, hidden: string): string {
  const { g, config, layout } = c;
  const { numHeads: heads, numKeyValueHeads: kvHeads, headDim: d } = config;
  const groups = heads / kvHeads;
  const name = (t: LayerTensor) => `model.layers.${layer}.${LAYER_TENSORS[t]}`;
  const normed = addRmsNorm(c, hidden, name('inputNorm'));
  const bias = (t: LayerTensor) => (layout.qkvBias ? name(t) : undefined);
  const q = addLinear(c, normed, name('q'), bias('qBias'));
  const k = addLinear(c, normed, name('k'), bias('kBias'));
  const v = addLinear(c, normed, name('v'), bias('vBias'));
  const heads4 = (x: string, count: number) => g.op('Reshape', [x, shapeOf(c, [c.batch, c.length, count, d])]);
  const perm = { perm: [0, 2, 1, 3] };
  // Scaling q before the product is what HF's sdpa path computes up to rounding; softmax sees the same scores.
  const qHeads = g.op('Mul', [g.op('Transpose', [rotate(c, heads4(q, heads))], perm), actConstant(c, [1 / Math.sqrt(d)], [], 'attention_scale')]);
  let keys = g.op('Transpose', [rotate(c, heads4(k, kvHeads))], perm);
  let values = g.op('Transpose', [heads4(v, kvHeads)], perm);
  if (c.total !== c.length) {
    keys = g.op('Concat', [`past_key_values.${layer}.key`, keys], { axis: 2 }, `present.${layer}.key`);
    values = g.op('Concat', [`past_key_values.${layer}.value`, values], { axis: 2 }, `present.${layer}.value`);
  }
  // Query heads h = kv * groups + j read KV head kv: [B, heads, S, D] -> [B, kv, groups*S, D], one MatMul per KV head.
  const qGrouped = g.op('Reshape', [qHeads, shapeOf(c, [c.batch, kvHeads, -1, d])]);
  const scores = g.op('MatMul', [qGrouped, g.op('Transpose', [keys], { perm: [0, 1, 3, 2] })]);
  const scores5 = g.op('Reshape', [scores, shapeOf(c, [c.batch, kvHeads, groups, c.length, c.total])]);
  const lowest = actConstant(c, [c.act === OnnxDataType.FLOAT16 ? -65504 : -3.4028234663852886e38], [], 'mask_value');
  const probabilities = g.op('Softmax', [g.op('Where', [c.allowed, scores5, lowest])], { axis: -1 });
  const context = g.op('MatMul', [g.op('Reshape', [probabilities, shapeOf(c, [c.batch, kvHeads, -1, c.total])]), values]);
  const context5 = g.op('Reshape', [context, shapeOf(c, [c.batch, kvHeads, groups, c.length, d])]);
  const context2d = g.op('Reshape', [g.op('Transpose', [context5], { perm: [0, 3, 1, 2, 4] }), g.ints([-1, heads * d])]);
  return addLinear(c, context2d, name('o'), layout.oBias ? name('oBias') : undefined);
}

function addMlp(c: KvContext, layer: number, hidden: string): string {
  const { g, layout } = c;
  const name = (t: LayerTensor) => `model.layers.${layer}.${LAYER_TENSORS[t]}`;
  const bias = (t: LayerTensor) => (layout.mlpBias ? name(t) : undefined);
  const normed = addRmsNorm(c, hidden, name('postNorm'));
  const gate = addLinear(c, normed, name('gate'), bias('gateBias'));
  const up = addLinear(c, normed, name('up'), bias('upBias'));
  const activation = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  return addLinear(c, activation, name('down'), bias('downBias'));
}

/** Builds the decoder graph with a KV cache (or without: `kvCache: false`) over float or packed linear weights. */
export function buildKvDecoderGraph(config: DecoderConfig, layout: DecoderLayout, options: KvDecoderGraphOptions): GraphBuilder {
  const kvCache = options.kvCache ?? true;
  const act = options.activations === 'float16' ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
  const accuracyLevel = options.accuracyLevel ?? 0;
  if (accuracyLevel !== 0 && accuracyLevel !== 4) throw new InvalidOptionError('accuracyLevel', `${String(accuracyLevel)} must be 0 or 4`);
  const g = new GraphBuilder(kvCache ? 'layerquant-decoder-kv' : 'layerquant-decoder');
  const { numKeyValueHeads: kvHeads, headDim: d, hiddenSize: h, vocabSize } = config;
  const ids = g.input('input_ids', OnnxDataType.INT64, [BATCH_DIM, 'sequence_length']);
  const shape = g.op('Shape', [ids]);
  const batch = g.op('Slice', [shape, g.ints([0]), g.ints([1])]);
  const length = g.op('Slice', [shape, g.ints([1]), g.ints([2])]);
  const lengthScalar = g.op('Squeeze', [length, g.ints([0])]);
  let total = length;
  let past: string;
  let positions: string;
  let keyMask: string | undefined;
  if (kvCache) {
    const mask = g.input('attention_mask', OnnxDataType.INT64, [BATCH_DIM, 'total_sequence_length']);
    positions = g.input('position_ids', OnnxDataType.INT64, [BATCH_DIM, 'sequence_length']);
    for (let i = 0; i < config.numLayers; i++) {
      for (const part of ['key', 'value']) g.input(`past_key_values.${i}.${part}`, act, [BATCH_DIM, kvHeads, 'past_sequence_length', d]);
    }
    const pastLength = g.op('Slice', [g.op('Shape', ['past_key_values.0.key']), g.ints([2]), g.ints([3])]);
    past = g.op('Squeeze', [pastLength, g.ints([0])]);
    total = g.op('Add', [length, pastLength]);
    // attention_mask [B, T] -> [B, 1, 1, 1, T]: padding keys are never attended to.
    keyMask = g.op('Unsqueeze', [g.op('Cast', [mask], { to: OnnxDataType.BOOL }), g.ints([1, 2, 3])]);
  } else {
    past = g.ints([0], []);
    positions = g.op('Unsqueeze', [g.op('Range', [g.ints([0], []), lengthScalar, g.ints([1], [])]), g.ints([0])]);
  }

  // Rotary tables from the position ids, in float32: [B, S, 1, D] cos and sign-folded sin.
  const half = d / 2;
  const angles = g.op('Mul', [
    g.op('Unsqueeze', [g.op('Cast', [positions], { to: OnnxDataType.FLOAT }), g.ints([2])]),
    g.floats(rotaryInverseFrequencies(config), [half], 'inverse_frequencies'),
  ]);
  const doubled = g.op('Concat', [angles, angles], { axis: 2 });
  const signs = Float32Array.from({ length: d }, (_, i) => (i < half ? -1 : 1));
  const castAct = (x: string) => (act === OnnxDataType.FLOAT ? x : g.op('Cast', [x], { to: act }));
  const cos = castAct(g.op('Unsqueeze', [g.op('Cos', [doubled]), g.ints([2])]));
  const sin = castAct(g.op('Unsqueeze', [g.op('Mul', [g.op('Sin', [doubled]), g.floats(signs, [d], 'rotate_signs')]), g.ints([2])]));

  // Causal: query i (absolute slot past + i) sees keys j <= past + i.
  const totalScalar = g.op('Squeeze', [total, g.ints([0])]);
  const keyPositions = g.op('Range', [g.ints([0], []), totalScalar, g.ints([1], [])]);
  const queryPositions = g.op('Unsqueeze', [g.op('Add', [g.op('Range', [g.ints([0], []), lengthScalar, g.ints([1], [])]), past]), g.ints([1])]);
  const causal = g.op('LessOrEqual', [keyPositions, queryPositions]);
  const allowed = keyMask ? g.op('And', [causal, keyMask]) : causal;

  const shapes = expectedShapes(config, layout);
  const c: KvContext = {
    g, config, layout, shapes, weights: options.weights, act, accuracyLevel, batch, length, total: kvCache ? total : length,
    cos, sin, allowed, blockSums: new Map(), bound: new Map(), packed: new Map(), shapes1d: new Map(), constants: new Map(),
  };
  let hidden = addEmbedding(c, ids);
  for (let i = 0; i < config.numLayers; i++) {
    const residual = g.op('Add', [hidden, addAttention(c, i, hidden)]);
    hidden = g.op('Add', [residual, addMlp(c, i, residual)]);
  }
  const normed = addRmsNorm(c, hidden, FINAL_NORM);
  // A tied lm_head reads the embedding table: the same float initializer, or the same packed codes and scales.
  const logits2d = addLinear(c, normed, layout.tiedEmbeddings ? EMBED_TOKENS : LM_HEAD, undefined, LM_HEAD);
  const logits3d = g.op('Reshape', [logits2d, shapeOf(c, [batch, length, vocabSize])]);
  if (act === OnnxDataType.FLOAT) g.op('Identity', [logits3d], {}, 'logits');
  else g.op('Cast', [logits3d], { to: OnnxDataType.FLOAT }, 'logits');
  g.output('logits', OnnxDataType.FLOAT, [BATCH_DIM, 'sequence_length', vocabSize]);
  if (kvCache) {
    for (let i = 0; i < config.numLayers; i++) {
      for (const part of ['key', 'value']) g.output(`present.${i}.${part}`, act, [BATCH_DIM, kvHeads, 'total_sequence_length', d]);
    }
  }
  return g;
}
