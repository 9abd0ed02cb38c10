import { InvalidDataError, InvalidOptionError, MissingTensorError, ShapeMismatchError, UnsupportedArchitectureError, UnsupportedDTypeError } from './errors.js';
import { EMBEDDING_UNIT_TENSORS, LINEAR_MODULES, matrixKey, type DecoderConfig, type MatrixKey } from './model.js';
import { WEIGHT_DTYPES, elementCount, isWeightDType } from './tensor.js';

/**
 * The tensors a Llama-family decoder has, derived from its config, and the one check that a checkpoint holds
 * exactly them: every command (inspect, sensitivity, allocate, quantize, eval, experiment) and the runtime validate
 * a model through `validateCheckpoint`. Pure functions on plain data, so browsers use them too.
 */

/** Architectures whose decoder layers layerquant runs, with their `model_type`. The only list of them. */
export const ARCHITECTURE_MODEL_TYPES: Readonly<Record<string, string>> = Object.freeze({
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
});
export const SUPPORTED_ARCHITECTURES: readonly string[] = Object.freeze(Object.keys(ARCHITECTURE_MODEL_TYPES));
export const SUPPORTED_MODEL_TYPES: readonly string[] = Object.freeze(Object.values(ARCHITECTURE_MODEL_TYPES));

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

export const EMBED_TOKENS = EMBEDDING_UNIT_TENSORS.embed_tokens;
export const FINAL_NORM = 'model.norm.weight';
export const LM_HEAD = EMBEDDING_UNIT_TENSORS.lm_head;

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

/** Decides the layout: biases are used where the config asks for them or the checkpoint has them. */
export function decoderLayout(config: DecoderConfig, source: { has(name: string): boolean }): DecoderLayout {
  const has = (t: LayerTensor) => source.has(layerTensorName(0, t));
  return Object.freeze({
    qkvBias: config.attentionBias || config.modelType === 'qwen2' || has('qBias'),
    oBias: has('oBias') || (config.attentionBias && config.modelType !== 'qwen2'),
    mlpBias: config.mlpBias || has('gateBias'),
    tiedEmbeddings: config.tieWordEmbeddings || !source.has(LM_HEAD),
  });
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

/**
 * The linear matrices a model of this config has and their parameter counts, layers ascending, modules in
 * LINEAR_MODULES order: the list statistics tables and allocations are checked against.
 */
export function modelMatrixParams(config: DecoderConfig): Map<MatrixKey, number> {
  const shapes = expectedShapes(config, { qkvBias: false, oBias: false, mlpBias: false, tiedEmbeddings: true });
  const params = new Map<MatrixKey, number>();
  for (let layer = 0; layer < config.numLayers; layer++) {
    for (const module of LINEAR_MODULES) params.set(matrixKey(layer, module), elementCount(shapes.get(`model.layers.${layer}.${module}.weight`)!));
  }
  return params;
}

/**
 * Refuses a context longer than the model was trained for (`max_position_embeddings`): rotary positions beyond it
 * give a worse, silently different perplexity. `allow` (the CLI's --allow-long-context) lets it run anyway. A context
 * longer than a sliding attention window is refused always: the runtime attends to every position, which is another
 * model's math beyond the window.
 */
export function checkContextLength(seqlen: number, config: Pick<DecoderConfig, 'maxPositionEmbeddings' | 'slidingWindow'>, option = '--seqlen', allow = false): void {
  if (config.slidingWindow !== undefined && seqlen > config.slidingWindow) {
    throw new InvalidOptionError(
      option,
      `${seqlen} tokens is more than the model's sliding_window ${config.slidingWindow} (config.json): layerquant attends to every position, which differs from the model's sliding-window attention beyond ${config.slidingWindow} tokens; use at most ${config.slidingWindow}`,
    );
  }
  if (!allow && seqlen > config.maxPositionEmbeddings) {
    throw new InvalidOptionError(
      option,
      `${seqlen} tokens is more than the model's max_position_embeddings ${config.maxPositionEmbeddings} (config.json); use at most ${config.maxPositionEmbeddings}, or pass --allow-long-context to run beyond it anyway`,
    );
  }
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

/** What validateCheckpoint needs to know of a checkpoint: its tensors' names and shapes (no data). */
export interface CheckpointTensors {
  /** `dtype` where known (a checkpoint): every tensor the decoder reads must be a float (WEIGHT_DTYPES). */
  readonly tensors: readonly { readonly name: string; readonly shape: readonly number[]; readonly dtype?: string; readonly file?: string }[];
  /** Where the weights are, for messages. */
  readonly dir?: string;
}

const LAYER_INDEX = /^model\.layers\.(\d+)\./;

function configSummary(config: DecoderConfig): string {
  return `hidden_size ${config.hiddenSize}, intermediate_size ${config.intermediateSize}, num_attention_heads ${config.numHeads}, num_key_value_heads ${config.numKeyValueHeads}, head_dim ${config.headDim}, vocab_size ${config.vocabSize}`;
}

/**
 * Checks a config against the tensors of a checkpoint before anything is computed from them: the architecture is
 * one layerquant runs; the checkpoint has exactly `num_hidden_layers` layers; every tensor the decoder reads
 * exists with the shape hidden size, head counts, head dim, intermediate and vocab size give, and in a float dtype
 * (where the checkpoint says). Returns the layout.
 * Throws UnsupportedArchitectureError, InvalidDataError (layer count), MissingTensorError, ShapeMismatchError or
 * UnsupportedDTypeError,
 * each naming config.json, the tensor and the field that disagrees. `configFile` names config.json in messages.
 */
export function validateCheckpoint(config: DecoderConfig, checkpoint: CheckpointTensors, configFile = 'config.json'): DecoderLayout {
  const modelType = ARCHITECTURE_MODEL_TYPES[config.architecture];
  if (!modelType || !SUPPORTED_MODEL_TYPES.includes(config.modelType)) {
    throw new UnsupportedArchitectureError(configFile, modelType ? config.modelType : config.architecture, SUPPORTED_ARCHITECTURES);
  }
  const where = checkpoint.dir ?? 'the checkpoint';
  const byName = new Map(checkpoint.tensors.map((t) => [t.name, t]));
  let layers = 0;
  let lastLayerTensor = '';
  for (const t of checkpoint.tensors) {
    const m = LAYER_INDEX.exec(t.name);
    if (m && Number(m[1]) + 1 > layers) {
      layers = Number(m[1]) + 1;
      lastLayerTensor = t.name;
    }
  }
  if (layers > config.numLayers) {
    throw new InvalidDataError(
      configFile,
      `num_hidden_layers is ${config.numLayers} but ${where} has ${layers} layers (tensor "${lastLayerTensor}"); config.json does not describe these weights, use the model's own config.json`,
    );
  }
  const layout = decoderLayout(config, { has: (name) => byName.has(name) });
  for (const [name, expected] of expectedShapes(config, layout)) {
    const tensor = byName.get(name);
    if (!tensor) {
      const layer = LAYER_INDEX.exec(name);
      const hint = layer && Number(layer[1]) >= layers
        ? `config.json (${configFile}) says num_hidden_layers ${config.numLayers} but the checkpoint has ${layers} layers`
        : `config.json (${configFile}) describes it; the checkpoint is incomplete, download every file of the model again`;
      throw new MissingTensorError(name, where, hint);
    }
    const same = tensor.shape.length === expected.length && tensor.shape.every((d, i) => d === expected[i]);
    if (!same) {
      throw new ShapeMismatchError(
        name,
        `has shape [${tensor.shape.join(', ')}] in ${where} but ${configFile} (${configSummary(config)}) needs [${expected.join(', ')}]; config.json does not describe these weights, use the model's own config.json`,
      );
    }
    if (tensor.dtype !== undefined && !isWeightDType(tensor.dtype)) {
      throw new UnsupportedDTypeError(tensor.file ?? where, name, tensor.dtype, WEIGHT_DTYPES, 'a weight is a float; integer tensors are codes, ids or masks, and read as numbers they would give a different model');
    }
  }
  return layout;
}
