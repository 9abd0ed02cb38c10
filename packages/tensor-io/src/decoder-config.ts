// config.json parsing without file access (browser-safe).
import {
  ARCHITECTURE_MODEL_TYPES,
  InvalidDataError,
  SUPPORTED_ARCHITECTURES,
  SUPPORTED_ROPE_TYPES,
  UnsupportedArchitectureError,
  type DecoderConfig,
  type RopeScaling,
} from '@layerquant/core';

export { SUPPORTED_ARCHITECTURES };
const MODEL_TYPES: Readonly<Record<string, string>> = Object.freeze(Object.fromEntries(Object.entries(ARCHITECTURE_MODEL_TYPES).map(([a, t]) => [t, a])));

/**
 * The fields of config.json the decoder reads, each checked for type and range, and the fields that change the math
 * of a model in ways layerquant does not run (an activation other than SiLU, soft-capped logits, partial rotary
 * embeddings, weights quantized by another tool): a config that lies must fail naming its field, never fall back to a
 * default or evaluate to a different number.
 */
class ConfigFields {
  constructor(readonly json: Record<string, unknown>, readonly file: string) {}

  fail(key: string, message: string): never {
    throw new InvalidDataError(this.file, `field "${key}" ${message}`);
  }

  describe(value: unknown): string {
    return typeof value === 'string' ? `"${value.length > 40 ? `${value.slice(0, 40)}...` : value}" (a string)` : JSON.stringify(value) ?? String(value);
  }

  /** A number in range; `undefined` when absent or null and not `required`. `in` reads a nested object (named `label`). */
  number(key: string, options: { required?: boolean; integer?: boolean; min?: number; exclusiveMin?: number; max?: number; in?: { object: Record<string, unknown>; label: string } } = {}): number | undefined {
    const value = (options.in?.object ?? this.json)[key];
    const name = options.in ? `${options.in.label}.${key}` : key;
    if (value === undefined || value === null) {
      if (options.required) this.fail(name, 'is missing; the config.json is incomplete, use the model\'s own config.json');
      return undefined;
    }
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(name, `is ${this.describe(value)}, not a finite number; fix config.json`);
    if (options.integer && !Number.isInteger(value)) this.fail(name, `is ${value}, not an integer; fix config.json`);
    if (options.min !== undefined && value < options.min) this.fail(name, `is ${value}; it must be at least ${options.min}`);
    if (options.exclusiveMin !== undefined && value <= options.exclusiveMin) this.fail(name, `is ${value}; it must be greater than ${options.exclusiveMin}`);
    if (options.max !== undefined && value > options.max) this.fail(name, `is ${value}; it must be at most ${options.max}`);
    return value;
  }

  positiveInteger(key: string, required = false): number | undefined {
    return this.number(key, { required, integer: true, min: 1 });
  }

  boolean(key: string): boolean | undefined {
    const value = this.json[key];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'boolean') this.fail(key, `is ${this.describe(value)}, not true or false; fix config.json`);
    return value;
  }

  /** A token id (or a list of them, the first used): integers >= 0, or absent / null. */
  tokenId(key: string): number | undefined {
    const value = this.json[key];
    if (value === undefined || value === null) return undefined;
    const ids = Array.isArray(value) ? value : [value];
    for (const id of ids) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) this.fail(key, `is ${this.describe(value)}; a token id is an integer >= 0 (or a list of them)`);
    }
    return ids[0] as number | undefined;
  }
}

/** Activations the decoder runs (`swish` is Hugging Face's other name for SiLU). */
const ACTIVATIONS = Object.freeze(['silu', 'swish']);
/** Attention kinds of `layer_types` (transformers >= 4.53). */
const LAYER_TYPES = Object.freeze(['full_attention', 'sliding_attention']);

function ropeScalingOf(fields: ConfigFields): RopeScaling | undefined {
  const key = fields.json.rope_scaling !== undefined && fields.json.rope_scaling !== null ? 'rope_scaling' : 'rope_parameters';
  const raw = fields.json[key];
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw)) fields.fail(key, `is ${fields.describe(raw)}, not an object; fix config.json`);
  const r = raw as Record<string, unknown>;
  const typeValue = r.rope_type ?? r.type ?? 'default';
  if (typeof typeValue !== 'string') fields.fail(`${key}.rope_type`, `is ${fields.describe(typeValue)}, not a string`);
  const type = typeValue;
  if (!SUPPORTED_ROPE_TYPES.includes(type)) {
    fields.fail(`${key}.rope_type`, `is "${type}", a rotary embedding layerquant does not run; supported are ${SUPPORTED_ROPE_TYPES.join(', ')}`);
  }
  const sub = (name: string, options: Parameters<ConfigFields['number']>[1]) => fields.number(name, { ...options, in: { object: r, label: key } });
  if (type === 'default') return undefined;
  const factor = sub('factor', { required: true, exclusiveMin: 0 })!;
  const low = sub('low_freq_factor', { required: type === 'llama3', exclusiveMin: 0 });
  const high = sub('high_freq_factor', { required: type === 'llama3', exclusiveMin: 0 });
  const original = sub('original_max_position_embeddings', { required: type === 'llama3', integer: true, min: 1 });
  // llama3 divides by (high - low): equal factors would make every mid-band frequency NaN.
  if (low !== undefined && high !== undefined && !(high > low)) fields.fail(`${key}.high_freq_factor`, `is ${high}; it must be greater than low_freq_factor ${low}`);
  const scaling: RopeScaling = {
    type,
    factor,
    ...(low !== undefined ? { lowFreqFactor: low } : {}),
    ...(high !== undefined ? { highFreqFactor: high } : {}),
    ...(original !== undefined ? { originalMaxPositionEmbeddings: original } : {}),
  };
  return Object.freeze(scaling);
}

/** The window a sliding-window attention would restrict to, or undefined where every layer attends to all positions. */
function slidingWindowOf(fields: ConfigFields, architecture: string): number | undefined {
  const window = fields.number('sliding_window', { integer: true, min: 1 });
  const layerTypes = fields.json.layer_types;
  let sliding = false;
  if (layerTypes !== undefined && layerTypes !== null) {
    if (!Array.isArray(layerTypes)) fields.fail('layer_types', `is ${fields.describe(layerTypes)}, not a list of attention kinds`);
    for (const kind of layerTypes) {
      if (typeof kind !== 'string' || !LAYER_TYPES.includes(kind)) fields.fail('layer_types', `holds ${fields.describe(kind)}; layerquant runs ${LAYER_TYPES.join(' and ')} layers only`);
      if (kind === 'sliding_attention') sliding = true;
    }
  } else if (architecture === 'Qwen2ForCausalLM') {
    // Qwen2 slides only where use_sliding_window is set (its configs carry a sliding_window either way).
    sliding = fields.boolean('use_sliding_window') === true;
  } else {
    sliding = window !== undefined;
  }
  if (!sliding) return undefined;
  if (window === undefined) fields.fail('sliding_window', 'is missing, but layer_types / use_sliding_window ask for sliding-window attention');
  return window;
}

/** Fields that change the decoder's math in ways layerquant does not run: refused by name, never ignored. */
function refuseUnsupported(fields: ConfigFields): void {
  for (const key of ['hidden_act', 'hidden_activation']) {
    const act = fields.json[key];
    if (act === undefined || act === null) continue;
    if (typeof act !== 'string' || !ACTIVATIONS.includes(act)) {
      fields.fail(key, `is ${fields.describe(act)}; layerquant runs the SiLU (silu) MLP of Llama-family models only, so this model would be evaluated with the wrong activation`);
    }
  }
  if (fields.json.quantization_config !== undefined && fields.json.quantization_config !== null) {
    fields.fail('quantization_config', 'is present: the checkpoint was quantized by another tool (its weights are not float); quantize the original float checkpoint instead');
  }
  for (const key of ['attn_logit_softcapping', 'final_logit_softcapping']) {
    if (fields.json[key] !== undefined && fields.json[key] !== null) fields.fail(key, `is ${fields.describe(fields.json[key])}; soft-capped logits are not part of the decoder layerquant runs`);
  }
  const partial = fields.number('partial_rotary_factor', { exclusiveMin: 0, max: 1 });
  if (partial !== undefined && partial !== 1) fields.fail('partial_rotary_factor', `is ${partial}; layerquant applies rotary embeddings to the whole head (factor 1) only`);
}

/**
 * Reads a Llama / Mistral / Qwen2 `config.json` into one DecoderConfig. Both `rope_theta` and
 * `rope_parameters.rope_theta` are understood; HF defaults fill missing optional fields; every field that is present
 * is checked (type and range), and a field that changes the math beyond what the runtime implements is refused,
 * naming it (InvalidDataError naming the file and the field).
 */
export function parseDecoderConfig(json: unknown, file = 'config.json'): DecoderConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new InvalidDataError(file, 'is not a JSON object');
  const c = json as Record<string, unknown>;
  const fields = new ConfigFields(c, file);
  if (c.model_type !== undefined && c.model_type !== null && typeof c.model_type !== 'string') fields.fail('model_type', `is ${fields.describe(c.model_type)}, not a string`);
  if (c.architectures !== undefined && c.architectures !== null && !Array.isArray(c.architectures)) fields.fail('architectures', `is ${fields.describe(c.architectures)}, not a list`);
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
  refuseUnsupported(fields);
  const hiddenSize = fields.positiveInteger('hidden_size', true)!;
  const numHeads = fields.positiveInteger('num_attention_heads', true)!;
  const ropeParameters = c.rope_parameters;
  const nestedTheta = ropeParameters && typeof ropeParameters === 'object' && !Array.isArray(ropeParameters) && 'rope_theta' in ropeParameters
    ? fields.number('rope_theta', { in: { object: ropeParameters as Record<string, unknown>, label: 'rope_parameters' }, exclusiveMin: 0 })
    : undefined;
  const ropeTheta = fields.number('rope_theta', { exclusiveMin: 0 }) ?? nestedTheta ?? 10000;
  const isQwen2 = architecture === 'Qwen2ForCausalLM';
  const slidingWindow = slidingWindowOf(fields, architecture);
  const headDim = fields.positiveInteger('head_dim') ?? hiddenSize / numHeads;
  const numKeyValueHeads = fields.positiveInteger('num_key_value_heads') ?? numHeads;
  const vocabSize = fields.positiveInteger('vocab_size', true)!;
  const config: DecoderConfig = {
    architecture,
    modelType: modelType || Object.keys(MODEL_TYPES).find((k) => MODEL_TYPES[k] === architecture)!,
    hiddenSize,
    intermediateSize: fields.positiveInteger('intermediate_size', true)!,
    numLayers: fields.positiveInteger('num_hidden_layers', true)!,
    numHeads,
    numKeyValueHeads,
    headDim,
    vocabSize,
    // An epsilon of 0 divides by zero on an all-zero row; a negative one takes the root of a negative number.
    rmsNormEps: fields.number('rms_norm_eps', { exclusiveMin: 0, max: 1 }) ?? 1e-6,
    ropeTheta,
    ropeScaling: ropeScalingOf(fields),
    maxPositionEmbeddings: fields.positiveInteger('max_position_embeddings') ?? 2048,
    tieWordEmbeddings: fields.boolean('tie_word_embeddings') === true,
    attentionBias: isQwen2 || fields.boolean('attention_bias') === true,
    mlpBias: fields.boolean('mlp_bias') === true,
    bosTokenId: fields.tokenId('bos_token_id'),
    eosTokenId: fields.tokenId('eos_token_id'),
    ...(slidingWindow !== undefined ? { slidingWindow } : {}),
  };
  if (!Number.isInteger(config.headDim) || config.numHeads % config.numKeyValueHeads !== 0) {
    throw new InvalidDataError(file, `head layout is inconsistent: ${config.numHeads} heads, ${config.numKeyValueHeads} key/value heads, head_dim ${config.headDim}`);
  }
  if (config.headDim % 2 !== 0) fields.fail('head_dim', `is ${config.headDim}; rotary embeddings need an even head dimension`);
  return Object.freeze(config);
}
