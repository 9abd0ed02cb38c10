import { InvalidOptionError, type DecoderConfig } from '@layerquant/core';
import { GraphBuilder } from './graph-builder.js';
import { OnnxDataType } from './onnx-proto.js';
import {
  EMBED_TOKENS,
  FINAL_NORM,
  LAYER_TENSORS,
  LM_HEAD,
  expectedShapes,
  type DecoderLayout,
  type LayerTensor,
} from './decoder-weights.js';

/**
 * The Llama-family decoder as ONNX graphs built from standard opset-17 operators:
 * embedding Gather, RMSNorm (Pow/ReduceMean/Add/Sqrt/Div/Mul, the pattern onnxruntime fuses),
 * fused q/k/v and gate/up Gemms (weights stay [out, in], `transB = 1`), rotary embeddings computed
 * in the graph from the sequence length, grouped-query attention without copying K/V per head, an
 * additive causal mask (Trilu), SiLU-gated MLP, lm_head and optionally per-token negative log-likelihood.
 *
 * Weights are either initializers (`weights` given: the session pre-packs them) or graph inputs named
 * as in the checkpoint (swap them per run without rebuilding the session).
 */

/** Resolves a weight name to a graph value, as an initializer or as a graph input. */
interface WeightBinding {
  tensor(name: string): string;
  /** The row-wise concatenation of several [rows, cols] (or [rows]) tensors, e.g. fused q/k/v. */
  rows(names: readonly string[]): string;
}

function initializerBinding(g: GraphBuilder, shapes: ReadonlyMap<string, readonly number[]>, data: ReadonlyMap<string, Float32Array>): WeightBinding {
  const cache = new Map<string, string>();
  const shapeOf = (name: string) => {
    const shape = shapes.get(name);
    if (!shape) throw new RangeError(`no shape known for tensor "${name}"`);
    return shape;
  };
  const dataOf = (name: string) => {
    const values = data.get(name);
    if (!values) throw new RangeError(`no data for tensor "${name}"`);
    return values;
  };
  return {
    tensor(name) {
      let value = cache.get(name);
      if (!value) {
        value = g.initializer(name, OnnxDataType.FLOAT, shapeOf(name), dataOf(name));
        cache.set(name, value);
      }
      return value;
    },
    rows(names) {
      if (names.length === 1) return this.tensor(names[0]!);
      const parts = names.map(dataOf);
      const total = parts.reduce((n, p) => n + p.length, 0);
      const fused = new Float32Array(total);
      let offset = 0;
      for (const p of parts) {
        fused.set(p, offset);
        offset += p.length;
      }
      const first = shapeOf(names[0]!);
      const rows = names.reduce((n, name) => n + shapeOf(name)[0]!, 0);
      return g.initializer(`${names[0]}+fused`, OnnxDataType.FLOAT, [rows, ...first.slice(1)], fused);
    },
  };
}

function inputBinding(g: GraphBuilder, shapes: ReadonlyMap<string, readonly number[]>): WeightBinding {
  const cache = new Map<string, string>();
  return {
    tensor(name) {
      let value = cache.get(name);
      if (!value) {
        const shape = shapes.get(name);
        if (!shape) throw new RangeError(`no shape known for tensor "${name}"`);
        value = g.input(name, OnnxDataType.FLOAT, shape);
        cache.set(name, value);
      }
      return value;
    },
    rows(names) {
      if (names.length === 1) return this.tensor(names[0]!);
      return g.op('Concat', names.map((n) => this.tensor(n)), { axis: 0 });
    },
  };
}

/** Per-graph values shared by all layers: dynamic batch/length shapes, rotary tables, causal mask. */
interface LayerContext {
  readonly g: GraphBuilder;
  readonly config: DecoderConfig;
  readonly layout: DecoderLayout;
  readonly bind: WeightBinding;
  /** int64[1] tensors holding the batch size and the sequence length. */
  readonly batch: string;
  readonly length: string;
  /** [T, 1, headDim] cos and sign-folded sin tables. */
  readonly cos: string;
  readonly sin: string;
  /** [groups*T, T] additive causal mask (0 or -inf). */
  readonly mask: string;
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

function createLayerContext(g: GraphBuilder, config: DecoderConfig, layout: DecoderLayout, bind: WeightBinding, shapeSource: string): LayerContext {
  const shape = g.op('Shape', [shapeSource]);
  const batch = g.op('Slice', [shape, g.ints([0]), g.ints([1])]);
  const length = g.op('Slice', [shape, g.ints([1]), g.ints([2])]);
  const half = config.headDim / 2;

  // Rotary tables: angle[t, i] = t * invFreq[i], duplicated to headDim; rotate_half's sign is folded into sin.
  const lengthScalar = g.op('Squeeze', [length, g.ints([0])]);
  const positions = g.op('Cast', [g.op('Range', [g.ints([0], []), lengthScalar, g.ints([1], [])])], { to: OnnxDataType.FLOAT });
  const angles = g.op('Mul', [
    g.op('Unsqueeze', [positions, g.ints([1])]),
    g.floats(rotaryInverseFrequencies(config), [1, half], 'inverse_frequencies'),
  ]);
  const doubled = g.op('Concat', [angles, angles], { axis: 1 });
  const signs = Float32Array.from({ length: config.headDim }, (_, i) => (i < half ? -1 : 1));
  const cos = g.op('Unsqueeze', [g.op('Cos', [doubled]), g.ints([1])]);
  const sin = g.op('Unsqueeze', [g.op('Mul', [g.op('Sin', [doubled]), g.floats(signs, [config.headDim], 'rotate_signs')]), g.ints([1])]);

  // Causal mask: -inf strictly above the diagonal, tiled over the query heads that share a KV head.
  const groups = config.numHeads / config.numKeyValueHeads;
  const square = g.op('ConstantOfShape', [g.op('Concat', [length, length], { axis: 0 })], {
    value: { name: 'value', dataType: OnnxDataType.FLOAT, dims: [1], data: Float32Array.of(-Infinity) },
  });
  const causal = g.op('Trilu', [square, g.ints([1], [])], { upper: 1 });
  const mask = groups === 1 ? causal : g.op('Tile', [causal, g.ints([groups, 1])]);
  return { g, config, layout, bind, batch, length, cos, sin, mask };
}

function addRmsNorm(c: LayerContext, x: string, weight: string): string {
  const { g } = c;
  const variance = g.op('ReduceMean', [g.op('Pow', [x, g.floats([2], [])])], { axes: [-1], keepdims: 1 });
  const denominator = g.op('Sqrt', [g.op('Add', [variance, g.floats([c.config.rmsNormEps], [])])]);
  return g.op('Mul', [g.op('Div', [x, denominator]), c.bind.tensor(weight)]);
}

function addLinear(c: LayerContext, x: string, weights: readonly string[], biases: readonly string[] | undefined): string {
  const inputs = [x, c.bind.rows(weights)];
  if (biases) inputs.push(c.bind.rows(biases));
  return c.g.op('Gemm', inputs, { transB: 1 });
}

function dynamicShape(c: LayerContext, parts: readonly (string | number)[]): string {
  // Consecutive constants are merged into one int64 initializer.
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
  return c.g.op('Concat', inputs, { axis: 0 });
}

export interface AttentionValues {
  /** [N, numHeads*headDim]: softmax(QK^T)V before o_proj. */
  readonly context: string;
  /** [N, hidden]: the attention block output (o_proj applied), before the residual add. */
  readonly attention: string;
}

/** input_layernorm -> q/k/v (+bias) -> rotary -> causal GQA softmax attention -> o_proj, on [N, hidden]. */
function addAttention(c: LayerContext, prefix: string, hidden: string): AttentionValues {
  const { g, config, layout } = c;
  const { numHeads: heads, numKeyValueHeads: kvHeads, headDim } = config;
  const groups = heads / kvHeads;
  const name = (t: LayerTensor) => `${prefix}${LAYER_TENSORS[t]}`;
  const normed = addRmsNorm(c, hidden, name('inputNorm'));
  const qkv = addLinear(c, normed, [name('q'), name('k'), name('v')], layout.qkvBias ? [name('qBias'), name('kBias'), name('vBias')] : undefined);
  const qkv4 = g.op('Reshape', [qkv, dynamicShape(c, [c.batch, c.length, heads + 2 * kvHeads, headDim])]);
  const axis2 = g.ints([2]);
  const qk = g.op('Slice', [qkv4, g.ints([0]), g.ints([heads + kvHeads]), axis2]);
  const v = g.op('Slice', [qkv4, g.ints([heads + kvHeads]), g.ints([heads + 2 * kvHeads]), axis2]);

  // Rotary on q and k together: x*cos + rotate_half(x)*sin with rotate_half(x) = [-x2, x1].
  const axis3 = g.ints([3]);
  const secondHalf = g.op('Slice', [qk, g.ints([headDim / 2]), g.ints([headDim]), axis3]);
  const firstHalf = g.op('Slice', [qk, g.ints([0]), g.ints([headDim / 2]), axis3]);
  const swapped = g.op('Concat', [secondHalf, firstHalf], { axis: 3 });
  const rotated = g.op('Add', [g.op('Mul', [qk, c.cos]), g.op('Mul', [swapped, c.sin])]);

  // q: [B, T, kv, groups, d] -> [B, kv, groups*T, d], so each KV head serves its query heads in one MatMul.
  const q = g.op('Mul', [g.op('Slice', [rotated, g.ints([0]), g.ints([heads]), axis2]), g.floats([1 / Math.sqrt(headDim)], [])]);
  const q5 = g.op('Reshape', [q, dynamicShape(c, [c.batch, c.length, kvHeads, groups, headDim])]);
  const qGrouped = g.op('Reshape', [g.op('Transpose', [q5], { perm: [0, 2, 3, 1, 4] }), dynamicShape(c, [c.batch, kvHeads, -1, headDim])]);
  const kTransposed = g.op('Transpose', [g.op('Slice', [rotated, g.ints([heads]), g.ints([heads + kvHeads]), axis2])], { perm: [0, 2, 3, 1] });
  const vHeads = g.op('Transpose', [v], { perm: [0, 2, 1, 3] });
  const scores = g.op('Add', [g.op('MatMul', [qGrouped, kTransposed]), c.mask]);
  const probabilities = g.op('Softmax', [scores], { axis: -1 });
  const context5 = g.op('Reshape', [g.op('MatMul', [probabilities, vHeads]), dynamicShape(c, [c.batch, kvHeads, groups, c.length, headDim])]);
  const context = g.op('Reshape', [g.op('Transpose', [context5], { perm: [0, 3, 1, 2, 4] }), g.ints([-1, heads * headDim])]);
  const attention = addLinear(c, context, [name('o')], layout.oBias ? [name('oBias')] : undefined);
  return { context, attention };
}

export interface MlpValues {
  /** [N, intermediate]: silu(gate) * up, the input of down_proj. */
  readonly activation: string;
  /** [N, hidden]: the MLP block output (down_proj applied), before the residual add. */
  readonly mlp: string;
}

/** post_attention_layernorm -> silu(gate) * up -> down_proj, on [N, hidden]. */
function addMlp(c: LayerContext, prefix: string, hidden: string): MlpValues {
  const { g, config, layout } = c;
  const name = (t: LayerTensor) => `${prefix}${LAYER_TENSORS[t]}`;
  const normed = addRmsNorm(c, hidden, name('postNorm'));
  const gateUp = addLinear(c, normed, [name('gate'), name('up')], layout.mlpBias ? [name('gateBias'), name('upBias')] : undefined);
  const [gate, up] = g.node('Split', [gateUp, g.ints([config.intermediateSize, config.intermediateSize])], { axis: 1 }, 2) as [string, string];
  const activation = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  const mlp = addLinear(c, activation, [name('down')], layout.mlpBias ? [name('downBias')] : undefined);
  return { activation, mlp };
}

export type WeightMode = 'initializers' | 'inputs';

export interface DecoderGraphOptions {
  /** Give the weights to embed them as initializers; leave out to make them graph inputs named as in the checkpoint. */
  readonly weights?: ReadonlyMap<string, Float32Array>;
  /** Output `logits` [B, T, vocab]. Default true. */
  readonly logits?: boolean;
  /** Input `targets` int64 [B, T] and output `token_nll` [B, T] = -log softmax(logits)[target]. Default false. */
  readonly tokenNll?: boolean;
  /** Output `hidden_<i>` [B, T, hidden], the input of layer i, for i = 0..numLayers (the last is the final norm's input). */
  readonly hiddenStates?: boolean;
}

/** The whole decoder: input `input_ids` int64 [batch, seq]. */
export function buildDecoderGraph(config: DecoderConfig, layout: DecoderLayout, options: DecoderGraphOptions = {}): GraphBuilder {
  const g = new GraphBuilder('layerquant-decoder');
  const shapes = expectedShapes(config, layout);
  const bind = options.weights ? initializerBinding(g, shapes, options.weights) : inputBinding(g, shapes);
  const ids = g.input('input_ids', OnnxDataType.INT64, ['batch', 'sequence']);
  const c = createLayerContext(g, config, layout, bind, ids);
  const h = config.hiddenSize;
  const embedding = bind.tensor(EMBED_TOKENS);
  let hidden = g.op('Reshape', [g.op('Gather', [embedding, ids], { axis: 0 }), g.ints([-1, h])]);
  const hidden3d = (x: string, output: string) => g.op('Reshape', [x, dynamicShape(c, [c.batch, c.length, h])], {}, output);
  for (let i = 0; i < config.numLayers; i++) {
    if (options.hiddenStates) {
      hidden3d(hidden, `hidden_${i}`);
      g.output(`hidden_${i}`, OnnxDataType.FLOAT, ['batch', 'sequence', h]);
    }
    const prefix = `model.layers.${i}.`;
    const { attention } = addAttention(c, prefix, hidden);
    const residual = g.op('Add', [hidden, attention]);
    const { mlp } = addMlp(c, prefix, residual);
    hidden = g.op('Add', [residual, mlp]);
  }
  if (options.hiddenStates) {
    hidden3d(hidden, `hidden_${config.numLayers}`);
    g.output(`hidden_${config.numLayers}`, OnnxDataType.FLOAT, ['batch', 'sequence', h]);
  }
  const normed = addRmsNorm(c, hidden, FINAL_NORM);
  const logits2d = addLinear(c, normed, [layout.tiedEmbeddings ? EMBED_TOKENS : LM_HEAD], undefined);
  if (options.logits ?? true) {
    g.op('Reshape', [logits2d, dynamicShape(c, [c.batch, c.length, config.vocabSize])], {}, 'logits');
    g.output('logits', OnnxDataType.FLOAT, ['batch', 'sequence', config.vocabSize]);
  }
  if (options.tokenNll) addTokenNll(c, logits2d);
  return g;
}

function addTokenNll(c: LayerContext, logits2d: string): void {
  const { g } = c;
  const targets = g.input('targets', OnnxDataType.INT64, ['batch', 'sequence']);
  const logProbabilities = g.op('LogSoftmax', [logits2d], { axis: -1 });
  const picked = g.op('GatherElements', [logProbabilities, g.op('Reshape', [targets, g.ints([-1, 1])])], { axis: 1 });
  g.op('Reshape', [g.op('Neg', [picked]), dynamicShape(c, [c.batch, c.length])], {}, 'token_nll');
  g.output('token_nll', OnnxDataType.FLOAT, ['batch', 'sequence']);
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

/**
 * One attention block of any layer: input `hidden` [B, T, hidden] and the layer's tensors as inputs
 * (layer-relative names); outputs `context` [B, T, heads*headDim], `attention` [B, T, hidden] (before
 * the residual add) and `residual` = hidden + attention.
 */
export function buildAttentionBlockGraph(config: DecoderConfig, layout: DecoderLayout): GraphBuilder {
  const g = new GraphBuilder('layerquant-attention-block');
  const bind = inputBinding(g, layerRelativeShapes(config, layout));
  const h = config.hiddenSize;
  const input = g.input('hidden', OnnxDataType.FLOAT, ['batch', 'sequence', h]);
  const c = createLayerContext(g, config, layout, bind, input);
  for (const t of blockInputNames(layout, 'attention')) bind.tensor(LAYER_TENSORS[t]);
  const hidden = g.op('Reshape', [input, g.ints([-1, h])]);
  const { context, attention } = addAttention(c, '', hidden);
  const residual = g.op('Add', [hidden, attention]);
  const q = config.numHeads * config.headDim;
  g.op('Reshape', [context, dynamicShape(c, [c.batch, c.length, q])], {}, 'context');
  g.op('Reshape', [attention, dynamicShape(c, [c.batch, c.length, h])], {}, 'attention');
  g.op('Reshape', [residual, dynamicShape(c, [c.batch, c.length, h])], {}, 'residual');
  g.output('context', OnnxDataType.FLOAT, ['batch', 'sequence', q]);
  g.output('attention', OnnxDataType.FLOAT, ['batch', 'sequence', h]);
  g.output('residual', OnnxDataType.FLOAT, ['batch', 'sequence', h]);
  return g;
}

/**
 * One MLP block of any layer: input `hidden` [B, T, hidden] (the attention residual); outputs
 * `activation` [B, T, intermediate], `mlp` [B, T, hidden] (before the residual add) and `output` = hidden + mlp.
 */
export function buildMlpBlockGraph(config: DecoderConfig, layout: DecoderLayout): GraphBuilder {
  const g = new GraphBuilder('layerquant-mlp-block');
  const bind = inputBinding(g, layerRelativeShapes(config, layout));
  const h = config.hiddenSize;
  const input = g.input('hidden', OnnxDataType.FLOAT, ['batch', 'sequence', h]);
  const shape = g.op('Shape', [input]);
  const batchAndLength = g.op('Slice', [shape, g.ints([0]), g.ints([2])]);
  const c = { g, config, layout, bind } as LayerContext;
  for (const t of blockInputNames(layout, 'mlp')) bind.tensor(LAYER_TENSORS[t]);
  const hidden = g.op('Reshape', [input, g.ints([-1, h])]);
  const { activation, mlp } = addMlp(c, '', hidden);
  const output = g.op('Add', [hidden, mlp]);
  const to3d = (x: string, width: number, name: string) => {
    g.op('Reshape', [x, g.op('Concat', [batchAndLength, g.ints([width])], { axis: 0 })], {}, name);
    g.output(name, OnnxDataType.FLOAT, ['batch', 'sequence', width]);
  };
  to3d(activation, config.intermediateSize, 'activation');
  to3d(mlp, h, 'mlp');
  to3d(output, h, 'output');
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

/** The final RMSNorm and lm_head on [B, T, hidden]: outputs `logits`, and `token_nll` given `targets`. */
export function buildHeadGraph(config: DecoderConfig, layout: DecoderLayout, tokenNll: boolean): GraphBuilder {
  const g = new GraphBuilder('layerquant-head');
  const shapes = expectedShapes({ ...config, numLayers: 0 }, layout);
  const bind = inputBinding(g, shapes);
  const h = config.hiddenSize;
  const input = g.input('hidden', OnnxDataType.FLOAT, ['batch', 'sequence', h]);
  const shape = g.op('Shape', [input]);
  const c = {
    g,
    config,
    layout,
    bind,
    batch: g.op('Slice', [shape, g.ints([0]), g.ints([1])]),
    length: g.op('Slice', [shape, g.ints([1]), g.ints([2])]),
  } as LayerContext;
  const normed = addRmsNorm(c, g.op('Reshape', [input, g.ints([-1, h])]), FINAL_NORM);
  const logits2d = addLinear(c, normed, [layout.tiedEmbeddings ? EMBED_TOKENS : LM_HEAD], undefined);
  g.op('Reshape', [logits2d, dynamicShape(c, [c.batch, c.length, config.vocabSize])], {}, 'logits');
  g.output('logits', OnnxDataType.FLOAT, ['batch', 'sequence', config.vocabSize]);
  if (tokenNll) addTokenNll(c, logits2d);
  return g;
}
