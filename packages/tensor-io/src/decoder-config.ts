// config.json parsing without file access (browser-safe).
import {
  ARCHITECTURE_MODEL_TYPES,
  InvalidDataError,
  SUPPORTED_ARCHITECTURES,
  UnsupportedArchitectureError,
  type DecoderConfig,
  type RopeScaling,
} from '@layerquant/core';

export { SUPPORTED_ARCHITECTURES };
const MODEL_TYPES: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(ARCHITECTURE_MODEL_TYPES).map(([a, t]) => [t, a]));

function field(json: Record<string, unknown>, key: string, file: string): number {
  const value = json[key];
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new InvalidDataError(file, `field "${key}" is missing or not a number; the config.json is incomplete`);
  }
  return value;
}

function optionalNumber(json: Record<string, unknown>, key: string): number | undefined {
  const value = json[key];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function firstId(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (Array.isArray(value) && typeof value[0] === 'number') return value[0];
  return undefined;
}

function ropeScalingOf(json: Record<string, unknown>): RopeScaling | undefined {
  const raw = (json.rope_scaling ?? json.rope_parameters) as Record<string, unknown> | null | undefined;
  if (!raw || typeof raw !== 'object') return undefined;
  const type = String(raw.rope_type ?? raw.type ?? 'default');
  if (type === 'default') return undefined;
  const scaling: RopeScaling = {
    type,
    factor: typeof raw.factor === 'number' ? raw.factor : 1,
    ...(typeof raw.low_freq_factor === 'number' ? { lowFreqFactor: raw.low_freq_factor } : {}),
    ...(typeof raw.high_freq_factor === 'number' ? { highFreqFactor: raw.high_freq_factor } : {}),
    ...(typeof raw.original_max_position_embeddings === 'number' ? { originalMaxPositionEmbeddings: raw.original_max_position_embeddings } : {}),
  };
  return Object.freeze(scaling);
}

/**
 * Reads a Llama / Mistral / Qwen2 `config.json` into one DecoderConfig. Both `rope_theta` and
 * `rope_parameters.rope_theta` are understood; HF defaults fill missing optional fields.
 */
export function parseDecoderConfig(json: unknown, file = 'config.json'): DecoderConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new InvalidDataError(file, 'is not a JSON object');
  const c = json as Record<string, unknown>;
  const modelType = typeof c.model_type === 'string' ? c.model_type : '';
  const architectures = Array.isArray(c.architectures) ? (c.architectures as unknown[]).filter((a): a is string => typeof a === 'string') : [];
  // An architectures list names the model class; only without one does model_type decide.
  const architecture = architectures.length > 0 ? architectures.find((a) => SUPPORTED_ARCHITECTURES.includes(a)) : MODEL_TYPES[modelType];
  if (!architecture) {
    throw new UnsupportedArchitectureError(file, architectures[0] ?? (modelType || '(none given)'), SUPPORTED_ARCHITECTURES);
  }
  if (modelType && ARCHITECTURE_MODEL_TYPES[architecture] !== modelType) {
    throw new UnsupportedArchitectureError(file, `${architecture} with model_type "${modelType}"`, SUPPORTED_ARCHITECTURES);
  }
  const hiddenSize = field(c, 'hidden_size', file);
  const numHeads = field(c, 'num_attention_heads', file);
  const ropeParameters = c.rope_parameters as Record<string, unknown> | undefined;
  const ropeTheta = optionalNumber(c, 'rope_theta') ?? (ropeParameters && typeof ropeParameters.rope_theta === 'number' ? ropeParameters.rope_theta : 10000);
  const isQwen2 = architecture === 'Qwen2ForCausalLM';
  const config: DecoderConfig = {
    architecture,
    modelType: modelType || Object.keys(MODEL_TYPES).find((k) => MODEL_TYPES[k] === architecture)!,
    hiddenSize,
    intermediateSize: field(c, 'intermediate_size', file),
    numLayers: field(c, 'num_hidden_layers', file),
    numHeads,
    numKeyValueHeads: optionalNumber(c, 'num_key_value_heads') ?? numHeads,
    headDim: optionalNumber(c, 'head_dim') ?? hiddenSize / numHeads,
    vocabSize: field(c, 'vocab_size', file),
    rmsNormEps: optionalNumber(c, 'rms_norm_eps') ?? 1e-6,
    ropeTheta,
    ropeScaling: ropeScalingOf(c),
    maxPositionEmbeddings: optionalNumber(c, 'max_position_embeddings') ?? 2048,
    tieWordEmbeddings: c.tie_word_embeddings === true,
    attentionBias: isQwen2 || c.attention_bias === true,
    mlpBias: c.mlp_bias === true,
    bosTokenId: firstId(c.bos_token_id),
    eosTokenId: firstId(c.eos_token_id),
  };
  if (!Number.isInteger(config.headDim) || config.numHeads % config.numKeyValueHeads !== 0) {
    throw new InvalidDataError(file, `head layout is inconsistent: ${config.numHeads} heads, ${config.numKeyValueHeads} key/value heads, head_dim ${config.headDim}`);
  }
  return Object.freeze(config);
}
