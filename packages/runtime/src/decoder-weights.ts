import {
  InvalidOptionError,
  MissingTensorError,
  ShapeMismatchError,
  UnsupportedArchitectureError,
  elementCount,
  type DecoderConfig,
  type WeightTensor,
} from '@layerquant/core';

/**
 * Anything that yields float32 tensors by name: a tensor-io checkpoint, a quantized checkpoint whose
 * `read` dequantizes, or an in-memory map (`tensorSourceFromMap`). A subset of tensor-io's WeightSource.
 */
export interface TensorSource {
  has(name: string): boolean;
  read(name: string): Promise<WeightTensor>;
  /** Where the weights come from, for error messages (a directory, "memory"). */
  readonly dir?: string;
}

/** In-memory weights that replace tensors of a source, e.g. one layer's dequantized q/k/v. */
export type WeightOverrides = ReadonlyMap<string, Float32Array>;

/** The per-layer tensor names relative to `model.layers.<i>.`. */
export const LAYER_TENSORS = Object.freeze({
  inputNorm: 'input_layernorm.weight',
  q: 'self_attn.q_proj.weight',
  k: 'self_attn.k_proj.weight',
  v: 'self_attn.v_proj.weight',
  o: 'self_attn.o_proj.weight',
  qBias: 'self_attn.q_proj.bias',
  kBias: 'self_attn.k_proj.bias',
  vBias: 'self_attn.v_proj.bias',
  oBias: 'self_attn.o_proj.bias',
  postNorm: 'post_attention_layernorm.weight',
  gate: 'mlp.gate_proj.weight',
  up: 'mlp.up_proj.weight',
  down: 'mlp.down_proj.weight',
  gateBias: 'mlp.gate_proj.bias',
  upBias: 'mlp.up_proj.bias',
  downBias: 'mlp.down_proj.bias',
} as const);
export type LayerTensor = keyof typeof LAYER_TENSORS;

export const EMBED_TOKENS = 'model.embed_tokens.weight';
export const FINAL_NORM = 'model.norm.weight';
export const LM_HEAD = 'lm_head.weight';

export function layerTensorName(layer: number, tensor: LayerTensor): string {
  return `model.layers.${layer}.${LAYER_TENSORS[tensor]}`;
}

/** Which optional biases a model carries (decided once from config + checkpoint). */
export interface DecoderLayout {
  readonly qkvBias: boolean;
  readonly oBias: boolean;
  readonly mlpBias: boolean;
  /** lm_head shares the embedding matrix. */
  readonly tiedEmbeddings: boolean;
}

const SUPPORTED_MODEL_TYPES = Object.freeze(['llama', 'mistral', 'qwen2']);

export function checkSupportedConfig(config: DecoderConfig, where = 'config.json'): void {
  if (!SUPPORTED_MODEL_TYPES.includes(config.modelType)) {
    throw new UnsupportedArchitectureError(where, config.modelType, SUPPORTED_MODEL_TYPES);
  }
  if (config.numHeads % config.numKeyValueHeads !== 0) {
    throw new InvalidOptionError('num_key_value_heads', `${config.numKeyValueHeads} does not divide num_attention_heads ${config.numHeads}`);
  }
  if (config.ropeScaling && !['linear', 'llama3'].includes(config.ropeScaling.type)) {
    throw new InvalidOptionError('rope_scaling', `rope type "${config.ropeScaling.type}" in ${where} is not supported; supported are default, linear and llama3`);
  }
  if (config.headDim % 2 !== 0) throw new InvalidOptionError('head_dim', `${config.headDim} must be even for rotary embeddings`);
}

/** Expected shape of every tensor the forward pass reads, by full name. */
export function expectedShapes(config: DecoderConfig, layout: DecoderLayout): Map<string, readonly number[]> {
  const { hiddenSize: h, intermediateSize: f, numHeads, numKeyValueHeads, headDim, vocabSize } = config;
  const q = numHeads * headDim;
  const kv = numKeyValueHeads * headDim;
  const shapes = new Map<string, readonly number[]>();
  shapes.set(EMBED_TOKENS, [vocabSize, h]);
  for (let i = 0; i < config.numLayers; i++) {
    const set = (t: LayerTensor, shape: readonly number[]) => shapes.set(layerTensorName(i, t), shape);
    set('inputNorm', [h]);
    set('q', [q, h]);
    set('k', [kv, h]);
    set('v', [kv, h]);
    set('o', [h, q]);
    if (layout.qkvBias) {
      set('qBias', [q]);
      set('kBias', [kv]);
      set('vBias', [kv]);
    }
    if (layout.oBias) set('oBias', [h]);
    set('postNorm', [h]);
    set('gate', [f, h]);
    set('up', [f, h]);
    set('down', [h, f]);
    if (layout.mlpBias) {
      set('gateBias', [f]);
      set('upBias', [f]);
      set('downBias', [h]);
    }
  }
  shapes.set(FINAL_NORM, [h]);
  if (!layout.tiedEmbeddings) shapes.set(LM_HEAD, [vocabSize, h]);
  return shapes;
}

/** Decides the layout: biases are used where the config asks for them or the checkpoint has them. */
export function decoderLayout(config: DecoderConfig, source: Pick<TensorSource, 'has'>): DecoderLayout {
  const has = (t: LayerTensor) => source.has(layerTensorName(0, t));
  return Object.freeze({
    qkvBias: config.attentionBias || config.modelType === 'qwen2' || has('qBias'),
    oBias: has('oBias') || (config.attentionBias && config.modelType !== 'qwen2'),
    mlpBias: config.mlpBias || has('gateBias'),
    tiedEmbeddings: config.tieWordEmbeddings || !source.has(LM_HEAD),
  });
}

/** All weights of a decoder in float32, validated against the config. */
export interface DecoderWeights {
  readonly config: DecoderConfig;
  readonly layout: DecoderLayout;
  /** Full tensor name -> data (row-major, HF layout: linear weights are [out, in]). */
  readonly tensors: ReadonlyMap<string, Float32Array>;
  readonly shapes: ReadonlyMap<string, readonly number[]>;
}

export function checkShape(name: string, shape: readonly number[], expected: readonly number[], length = elementCount(shape)): void {
  const same = shape.length === expected.length && shape.every((d, i) => d === expected[i]);
  if (!same || length !== elementCount(expected)) {
    throw new ShapeMismatchError(
      name,
      `has shape [${shape.join(', ')}] (${length} values) but the model config needs [${expected.join(', ')}]; check config.json against the checkpoint`,
    );
  }
}

/**
 * Reads every tensor the forward pass needs from `source` (once), replacing those named in `overrides`.
 * Overrides are checked against the expected shapes too.
 */
export async function loadDecoderWeights(
  source: TensorSource,
  config: DecoderConfig,
  overrides: WeightOverrides = new Map(),
): Promise<DecoderWeights> {
  checkSupportedConfig(config);
  const layout = decoderLayout(config, source);
  const shapes = expectedShapes(config, layout);
  const tensors = new Map<string, Float32Array>();
  for (const [name, expected] of shapes) {
    const override = overrides.get(name);
    if (override) {
      checkShape(name, expected, expected, override.length);
      tensors.set(name, override);
      continue;
    }
    if (!source.has(name)) {
      throw new MissingTensorError(name, source.dir ?? 'the weight source', 'the checkpoint does not match its config.json');
    }
    const tensor = await source.read(name);
    checkShape(name, tensor.shape, expected, tensor.data.length);
    tensors.set(name, tensor.data);
  }
  for (const name of overrides.keys()) {
    if (!shapes.has(name)) throw new MissingTensorError(name, 'the model', 'an override names a tensor the forward pass does not use');
  }
  return Object.freeze({ config, layout, tensors, shapes });
}

/** A new DecoderWeights with some tensors replaced (no copy of the others). */
export function withOverrides(weights: DecoderWeights, overrides: WeightOverrides): DecoderWeights {
  const tensors = new Map(weights.tensors);
  for (const [name, data] of overrides) {
    const expected = weights.shapes.get(name);
    if (!expected) throw new MissingTensorError(name, 'the model', 'an override names a tensor the forward pass does not use');
    checkShape(name, expected, expected, data.length);
    tensors.set(name, data);
  }
  return Object.freeze({ ...weights, tensors });
}

/** A WeightSource over tensors held in memory (tests, browsers, generated models). */
export function tensorSourceFromMap(tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>, dir = 'memory'): TensorSource {
  return {
    dir,
    has: (name) => tensors.has(name),
    read: async (name) => {
      const t = tensors.get(name);
      if (!t) throw new MissingTensorError(name, dir);
      return { name, dtype: 'F32', shape: t.shape, data: t.data };
    },
  };
}
