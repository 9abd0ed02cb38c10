import {
  InvalidOptionError,
  MissingTensorError,
  SUPPORTED_ARCHITECTURES,
  SUPPORTED_MODEL_TYPES,
  SUPPORTED_ROPE_TYPES,
  UnsupportedArchitectureError,
  checkShape,
  decoderLayout,
  expectedShapes,
  validateCheckpoint,
  type DecoderConfig,
  type DecoderLayout,
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
  /** Names and shapes of all stored tensors, where known (a checkpoint): the config is then validated against them. */
  readonly tensors?: readonly { readonly name: string; readonly shape: readonly number[] }[];
}

/** In-memory weights that replace tensors of a source, e.g. one layer's dequantized q/k/v. */
export type WeightOverrides = ReadonlyMap<string, Float32Array>;

// The decoder's tensor names, layout and expected shapes live in core (one definition for every package).
export {
  EMBED_TOKENS,
  FINAL_NORM,
  LAYER_TENSORS,
  LM_HEAD,
  checkShape,
  decoderLayout,
  expectedShapes,
  layerTensorName,
  type DecoderLayout,
  type LayerTensor,
} from '@layerquant/core';

export function checkSupportedConfig(config: DecoderConfig, where = 'config.json'): void {
  if (!SUPPORTED_MODEL_TYPES.includes(config.modelType)) {
    throw new UnsupportedArchitectureError(where, config.modelType, SUPPORTED_ARCHITECTURES);
  }
  if (config.numHeads % config.numKeyValueHeads !== 0) {
    throw new InvalidOptionError('num_key_value_heads', `${config.numKeyValueHeads} does not divide num_attention_heads ${config.numHeads}`);
  }
  if (config.ropeScaling && !SUPPORTED_ROPE_TYPES.includes(config.ropeScaling.type)) {
    throw new InvalidOptionError('rope_scaling', `rope type "${config.ropeScaling.type}" in ${where} is not supported; supported are ${SUPPORTED_ROPE_TYPES.join(', ')}`);
  }
  if (config.headDim % 2 !== 0) throw new InvalidOptionError('head_dim', `${config.headDim} must be even for rotary embeddings`);
}

/** All weights of a decoder in float32, validated against the config. */
export interface DecoderWeights {
  readonly config: DecoderConfig;
  readonly layout: DecoderLayout;
  /** Full tensor name -> data (row-major, HF layout: linear weights are [out, in]). */
  readonly tensors: ReadonlyMap<string, Float32Array>;
  readonly shapes: ReadonlyMap<string, readonly number[]>;
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
  if (source.tensors) validateCheckpoint(config, { tensors: source.tensors, ...(source.dir ? { dir: source.dir } : {}) });
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
