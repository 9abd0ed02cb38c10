/** The seven linear modules of a Llama-family decoder layer that layerquant quantizes. */
export const LINEAR_MODULES = Object.freeze([
  'self_attn.q_proj',
  'self_attn.k_proj',
  'self_attn.v_proj',
  'self_attn.o_proj',
  'mlp.gate_proj',
  'mlp.up_proj',
  'mlp.down_proj',
] as const);
export type LinearModule = (typeof LINEAR_MODULES)[number];

export function isLinearModule(value: string): value is LinearModule {
  return (LINEAR_MODULES as readonly string[]).includes(value);
}

/**
 * The two matrices outside the decoder layers that an allocation may quantize too: the token embeddings and the
 * output matrix (lm_head). They are about a third of a small model's shipped bytes. A model with tied embeddings has
 * one `embed_tokens` unit that serves both.
 */
export const EMBEDDING_UNITS = Object.freeze(['embed_tokens', 'lm_head'] as const);
export type EmbeddingUnit = (typeof EMBEDDING_UNITS)[number];

/** What an allocation assigns a config to: a linear module of a layer, or an embedding unit. */
export type UnitModule = LinearModule | EmbeddingUnit;

export function isEmbeddingUnit(value: string): value is EmbeddingUnit {
  return (EMBEDDING_UNITS as readonly string[]).includes(value);
}

export function isUnitModule(value: string): value is UnitModule {
  return isLinearModule(value) || isEmbeddingUnit(value);
}

/** The layer number of units that belong to no decoder layer (embed_tokens, lm_head). */
export const NO_LAYER = -1;

/**
 * `"<layer>.<module>"`, e.g. `"3.self_attn.q_proj"`: the key of a matrix everywhere in layerquant; an embedding unit's
 * key is its name alone (`"embed_tokens"`, `"lm_head"`).
 */
export type MatrixKey = string;

export function matrixKey(layer: number, module: UnitModule): MatrixKey {
  return isEmbeddingUnit(module) ? module : `${layer}.${module}`;
}

export function parseMatrixKey(key: MatrixKey): { layer: number; module: UnitModule } | undefined {
  if (isEmbeddingUnit(key)) return { layer: NO_LAYER, module: key };
  const dot = key.indexOf('.');
  if (dot <= 0) return undefined;
  const layer = Number(key.slice(0, dot));
  const module = key.slice(dot + 1);
  if (!Number.isInteger(layer) || layer < 0 || !isLinearModule(module)) return undefined;
  return { layer, module };
}

/** Checkpoint tensor name of a matrix in the HF Llama layout (of an embedding unit: its own name; the layer is ignored). */
export function matrixTensorName(layer: number, module: UnitModule): string {
  return isEmbeddingUnit(module) ? EMBEDDING_UNIT_TENSORS[module] : `model.layers.${layer}.${module}.weight`;
}

/** Checkpoint tensor name of an embedding unit. */
export const EMBEDDING_UNIT_TENSORS: Readonly<Record<EmbeddingUnit, string>> = Object.freeze({
  embed_tokens: 'model.embed_tokens.weight',
  lm_head: 'lm_head.weight',
});

/** Inverse of unitTensorName: linear weights and the two embedding units; undefined for any other tensor. */
export function unitOfTensorName(name: string): { layer: number; module: UnitModule } | undefined {
  for (const unit of EMBEDDING_UNITS) if (EMBEDDING_UNIT_TENSORS[unit] === name) return { layer: NO_LAYER, module: unit };
  return matrixOfTensorName(name);
}

/** Inverse of matrixTensorName; undefined for tensors that are not quantizable linear weights. */
export function matrixOfTensorName(name: string): { layer: number; module: LinearModule } | undefined {
  const m = /^model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.weight$/.exec(name);
  if (!m) return undefined;
  return { layer: Number(m[1]), module: m[2] as LinearModule };
}

export interface RopeScaling {
  /** `llama3`, `linear`, `dynamic`, `yarn`, ... as the config names it. */
  readonly type: string;
  readonly factor: number;
  readonly lowFreqFactor?: number;
  readonly highFreqFactor?: number;
  readonly originalMaxPositionEmbeddings?: number;
}

/** One typed view of a Llama / Mistral / Qwen2 `config.json`. */
export interface DecoderConfig {
  /** `architectures[0]`, e.g. `LlamaForCausalLM`. */
  readonly architecture: string;
  /** `model_type`, e.g. `llama`, `mistral`, `qwen2`. */
  readonly modelType: string;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKeyValueHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  /** `rope_scaling` / `rope_parameters` beyond the default rotary embedding (e.g. Llama 3.1's `llama3`), or undefined. */
  readonly ropeScaling: RopeScaling | undefined;
  readonly maxPositionEmbeddings: number;
  readonly tieWordEmbeddings: boolean;
  /** q/k/v (and o for Llama's attention_bias) carry biases; Qwen2 always has q/k/v biases. */
  readonly attentionBias: boolean;
  readonly mlpBias: boolean;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  /**
   * Sliding-window attention (`sliding_window` where Mistral, `use_sliding_window` / `layer_types` where Qwen2 and newer
   * configs ask for it): each position attends to at most this many. The runtime attends to all positions, which is
   * the same math only for contexts up to this length (checkContextLength refuses longer ones). Undefined: full attention.
   */
  readonly slidingWindow?: number;
}

/** Rotary embeddings the runtime implements (`rope_scaling.rope_type`). The only list of them. */
export const SUPPORTED_ROPE_TYPES: readonly string[] = Object.freeze(['default', 'linear', 'llama3']);
