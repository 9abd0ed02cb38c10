import { InvalidOptionError, MissingTensorError, type DecoderConfig } from '@layerquant/core';
import {
  blockInputNames,
  buildAttentionBlockGraph,
  buildHeadGraph,
  buildGramGraph,
  buildLinearGraph,
  buildMlpBlockGraph,
} from './decoder-graph.js';
import type { TokenBatch } from './decoder-model.js';
import {
  EMBED_TOKENS,
  FINAL_NORM,
  LAYER_TENSORS,
  LM_HEAD,
  checkShape,
  checkSupportedConfig,
  decoderLayout,
  expectedShapes,
  layerTensorName,
  type DecoderLayout,
  type DecoderWeights,
  type TensorSource,
  type WeightOverrides,
} from './decoder-weights.js';
import { createSession, floatTensor, int64Tensor, tensorData, type OrtSession, type OrtTensor, type RuntimeOptions } from './session.js';

/** Hidden states of `batch` sequences of `length` tokens: data is [batch, length, width] row-major. */
export interface HiddenStates {
  readonly data: Float32Array;
  readonly batch: number;
  readonly length: number;
}

export interface AttentionBlockOutput {
  /** [B, T, heads*headDim]: the input of o_proj. */
  readonly context: Float32Array;
  /** [B, T, hidden]: input_layernorm -> attention -> o_proj, before the residual add. */
  readonly attention: Float32Array;
  /** [B, T, hidden]: hidden + attention, the input of the MLP block. */
  readonly residual: Float32Array;
}

export interface MlpBlockOutput {
  /** [B, T, intermediate]: silu(gate) * up, the input of down_proj. */
  readonly activation: Float32Array;
  /** [B, T, hidden]: post_attention_layernorm -> MLP -> down_proj, before the residual add. */
  readonly mlp: Float32Array;
  /** [B, T, hidden]: residual + mlp, the layer output. */
  readonly output: Float32Array;
}

/**
 * Block-level entry points for sensitivity metrics: one attention or MLP block of any layer, from given
 * hidden states, with optional replacement weights for that call. Three small sessions serve every layer
 * (weights are graph inputs), so nothing is rebuilt per call.
 */
export interface DecoderBlocks {
  readonly config: DecoderConfig;
  readonly layout: DecoderLayout;
  /** Shape of every tensor the forward pass reads, by full name. */
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  /**
   * A tensor of the model in float32. Streamed blocks (`loadDecoderBlocks`) read a layer's tensors from the
   * source when a tensor of that layer is first asked for and keep only that layer; embeddings, final norm and
   * lm_head are kept once read.
   */
  tensor(name: string): Promise<Float32Array>;
  /** Token embeddings [B, T, hidden]: the input of layer 0. */
  embed(input: TokenBatch): HiddenStates;
  /** Overrides are keyed by full tensor name (`model.layers.3.self_attn.q_proj.weight`); others come from the model. */
  attention(layer: number, hidden: HiddenStates, overrides?: WeightOverrides): Promise<AttentionBlockOutput>;
  mlp(layer: number, hidden: HiddenStates, overrides?: WeightOverrides): Promise<MlpBlockOutput>;
  /** One decoder layer: attention block, then MLP block on its residual. */
  layer(layer: number, hidden: HiddenStates, overrides?: WeightOverrides): Promise<AttentionBlockOutput & MlpBlockOutput>;
  /** `x W^T (+ b)` for x [rows, in] and W [out, in]: re-applies o_proj or down_proj to a saved context/activation. */
  linear(x: Float32Array, weight: Float32Array, outFeatures: number, bias?: Float32Array): Promise<Float32Array>;
  /** `x^T x` [columns, columns] for x [rows, columns] row-major (a Hessian's X^T X), in float32 on the runtime. */
  gram(x: Float32Array, columns: number): Promise<Float32Array>;
  /**
   * Final norm and lm_head: logits [B, T, vocab], and per-token NLL when targets are given. `overrides` may replace
   * the final norm and the output matrix (`lm_head.weight`, or `model.embed_tokens.weight` when tied).
   */
  head(hidden: HiddenStates, targets?: ArrayLike<number>, overrides?: WeightOverrides): Promise<{ logits: Float32Array; tokenNll?: Float32Array }>;
  /** Inputs of layers 0..numLayers-1 plus the last layer's output (numLayers + 1 entries), full precision. */
  hiddenStates(input: TokenBatch): Promise<HiddenStates[]>;
  dispose(): Promise<void>;
}

/** Where block weights come from: all in memory, or read layer by layer. */
interface BlockWeightStore {
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  tensor(name: string): Promise<Float32Array>;
}

const LAYER_OF = /^model\.layers\.(\d+)\./;

/**
 * A store that reads from `source` one decoder layer at a time: asking for a tensor of layer i reads every tensor
 * of layer i (and forgets the previous layer's), so the weights in memory are one layer's plus the embeddings.
 */
function streamingStore(source: TensorSource, shapes: ReadonlyMap<string, readonly number[]>, overrides: WeightOverrides): BlockWeightStore {
  const kept = new Map<string, Float32Array>();
  let layer: { index: number; tensors: Promise<Map<string, Float32Array>> } | undefined;
  const readChecked = async (name: string): Promise<Float32Array> => {
    const expected = shapes.get(name)!;
    const override = overrides.get(name);
    if (override) {
      checkShape(name, expected, expected, override.length);
      return override;
    }
    if (!source.has(name)) throw new MissingTensorError(name, source.dir ?? 'the weight source', 'the checkpoint does not match its config.json');
    const tensor = await source.read(name);
    checkShape(name, tensor.shape, expected, tensor.data.length);
    return tensor.data;
  };
  const readLayer = async (index: number) => {
    const tensors = new Map<string, Float32Array>();
    const prefix = `model.layers.${index}.`;
    for (const name of shapes.keys()) if (name.startsWith(prefix)) tensors.set(name, await readChecked(name));
    return tensors;
  };
  for (const name of overrides.keys()) {
    if (!shapes.has(name)) throw new MissingTensorError(name, 'the model', 'an override names a tensor the forward pass does not use');
  }
  return {
    shapes,
    async tensor(name) {
      if (!shapes.has(name)) throw new MissingTensorError(name, 'the model', 'the forward pass does not use this tensor');
      const match = LAYER_OF.exec(name);
      if (!match) {
        let data = kept.get(name);
        if (!data) {
          data = await readChecked(name);
          kept.set(name, data);
        }
        return data;
      }
      const index = Number(match[1]);
      if (layer?.index !== index) layer = { index, tensors: readLayer(index) };
      return (await layer.tensors).get(name)!;
    },
  };
}

/**
 * Block-level entry points over a tensor source, streamed: a layer's weights are read when one of its blocks first
 * runs and dropped when another layer's block runs, so running layers in order holds one layer's weights at a time.
 */
export async function loadDecoderBlocks(source: TensorSource, config: DecoderConfig, options: RuntimeOptions & { overrides?: WeightOverrides } = {}): Promise<DecoderBlocks> {
  checkSupportedConfig(config);
  const layout = decoderLayout(config, source);
  return blocksOverStore(config, layout, streamingStore(source, expectedShapes(config, layout), options.overrides ?? new Map()), options);
}

/** Block-level entry points over weights already in memory. */
export async function createDecoderBlocks(weights: DecoderWeights, options: RuntimeOptions = {}): Promise<DecoderBlocks> {
  const store: BlockWeightStore = {
    shapes: weights.shapes,
    async tensor(name) {
      const data = weights.tensors.get(name);
      if (!data) throw new MissingTensorError(name, 'the model', 'the forward pass does not use this tensor');
      return data;
    },
  };
  return blocksOverStore(weights.config, weights.layout, store, options);
}

async function blocksOverStore(config: DecoderConfig, layout: DecoderLayout, weights: BlockWeightStore, options: RuntimeOptions): Promise<DecoderBlocks> {
  const { hiddenSize: h, numLayers } = config;
  const attentionSession = await createSession(buildAttentionBlockGraph(config, layout).encode(), options);
  const mlpSession = await createSession(buildMlpBlockGraph(config, layout).encode(), options);
  const lazy = new Map<string, Promise<OrtSession>>();
  const session = (key: string, build: () => Uint8Array) => {
    let s = lazy.get(key);
    if (!s) {
      s = createSession(build(), options);
      lazy.set(key, s);
    }
    return s;
  };

  const tensorFor = async (name: string, overrides: WeightOverrides | undefined): Promise<Float32Array> => {
    const expected = weights.shapes.get(name);
    if (!expected) throw new MissingTensorError(name, 'the model', 'an override names a tensor the forward pass does not use');
    const override = overrides?.get(name);
    if (override) {
      checkShape(name, expected, expected, override.length);
      return override;
    }
    return weights.tensor(name);
  };

  const checkLayer = (layer: number) => {
    if (!Number.isInteger(layer) || layer < 0 || layer >= numLayers) {
      throw new InvalidOptionError('layer', `${layer} is not a layer index in [0, ${numLayers})`);
    }
  };
  const checkHidden = (hidden: HiddenStates) => {
    if (hidden.batch < 1 || hidden.length < 1 || hidden.data.length !== hidden.batch * hidden.length * h) {
      throw new InvalidOptionError('hidden', `${hidden.data.length} values are not [${hidden.batch}, ${hidden.length}, ${h}]`);
    }
  };
  const checkOverrides = (layer: number, overrides: WeightOverrides | undefined) => {
    for (const name of overrides?.keys() ?? []) {
      if (!name.startsWith(`model.layers.${layer}.`)) {
        throw new InvalidOptionError('overrides', `tensor "${name}" is not in layer ${layer}; block overrides must belong to the block's layer`);
      }
    }
  };

  const runBlock = async (sessionToRun: OrtSession, block: 'attention' | 'mlp', layer: number, hidden: HiddenStates, overrides: WeightOverrides | undefined) => {
    checkLayer(layer);
    checkHidden(hidden);
    checkOverrides(layer, overrides);
    const feeds: Record<string, OrtTensor> = { hidden: floatTensor(hidden.data, [hidden.batch, hidden.length, h]) };
    for (const t of blockInputNames(layout, block)) {
      const name = layerTensorName(layer, t);
      feeds[LAYER_TENSORS[t]] = floatTensor(await tensorFor(name, overrides), weights.shapes.get(name)!);
    }
    return sessionToRun.run(feeds);
  };

  // embed() is synchronous: the table is read before the first call.
  const embedTable = await weights.tensor(EMBED_TOKENS);
  const blocks: DecoderBlocks = {
    config,
    layout,
    shapes: weights.shapes,
    tensor: (name) => weights.tensor(name),
    embed(input) {
      const batch = input.batch ?? 1;
      const length = input.ids.length / batch;
      if (!Number.isInteger(length) || length < 1) throw new InvalidOptionError('batch', `${input.ids.length} ids do not split into ${batch} sequences`);
      const table = embedTable;
      const data = new Float32Array(input.ids.length * h);
      for (let i = 0; i < input.ids.length; i++) {
        const id = input.ids[i]!;
        if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) {
          throw new InvalidOptionError('ids', `token id ${id} at position ${i} is outside the vocabulary [0, ${config.vocabSize})`);
        }
        data.set(table.subarray(id * h, (id + 1) * h), i * h);
      }
      return { data, batch, length };
    },
    async attention(layer, hidden, overrides) {
      const r = await runBlock(attentionSession, 'attention', layer, hidden, overrides);
      return { context: tensorData(r.context, 'context'), attention: tensorData(r.attention, 'attention'), residual: tensorData(r.residual, 'residual') };
    },
    async mlp(layer, hidden, overrides) {
      const r = await runBlock(mlpSession, 'mlp', layer, hidden, overrides);
      return { activation: tensorData(r.activation, 'activation'), mlp: tensorData(r.mlp, 'mlp'), output: tensorData(r.output, 'output') };
    },
    async layer(layer, hidden, overrides) {
      const attention = await blocks.attention(layer, hidden, overrides);
      const mlp = await blocks.mlp(layer, { data: attention.residual, batch: hidden.batch, length: hidden.length }, overrides);
      return { ...attention, ...mlp };
    },
    async linear(x, weight, outFeatures, bias) {
      const inFeatures = weight.length / outFeatures;
      if (!Number.isInteger(inFeatures) || x.length % inFeatures !== 0) {
        throw new InvalidOptionError('weight', `a [${outFeatures}, ${inFeatures}] weight does not apply to ${x.length} input values`);
      }
      if (bias && bias.length !== outFeatures) throw new InvalidOptionError('bias', `${bias.length} values, expected ${outFeatures}`);
      const s = await session(bias ? 'linear+bias' : 'linear', () => buildLinearGraph(Boolean(bias)).encode());
      const feeds: Record<string, OrtTensor> = {
        x: floatTensor(x, [x.length / inFeatures, inFeatures]),
        weight: floatTensor(weight, [outFeatures, inFeatures]),
      };
      if (bias) feeds.bias = floatTensor(bias, [outFeatures]);
      return tensorData((await s.run(feeds)).y, 'y');
    },
    async gram(x, columns) {
      if (!Number.isInteger(columns) || columns < 1 || x.length % columns !== 0) throw new InvalidOptionError('x', `${x.length} values are not rows of ${columns}`);
      const s = await session('gram', () => buildGramGraph().encode());
      return tensorData((await s.run({ x: floatTensor(x, [x.length / columns, columns]) })).y, 'y');
    },
    async head(hidden, targets, overrides) {
      checkHidden(hidden);
      const headName = layout.tiedEmbeddings ? EMBED_TOKENS : LM_HEAD;
      for (const name of overrides?.keys() ?? []) {
        if (name !== FINAL_NORM && name !== headName) throw new InvalidOptionError('overrides', `tensor "${name}" is not read by the head; it reads ${FINAL_NORM} and ${headName}`);
      }
      const withTargets = targets !== undefined;
      const s = await session(withTargets ? 'head+nll' : 'head', () => buildHeadGraph(config, layout, withTargets).encode());
      const dims = [hidden.batch, hidden.length];
      const feeds: Record<string, OrtTensor> = { hidden: floatTensor(hidden.data, [...dims, h]), [FINAL_NORM]: floatTensor(await tensorFor(FINAL_NORM, overrides), [h]) };
      feeds[headName] = floatTensor(await tensorFor(headName, overrides), [config.vocabSize, h]);
      if (targets) {
        if (targets.length !== hidden.batch * hidden.length) throw new InvalidOptionError('targets', `${targets.length} targets for ${hidden.batch * hidden.length} positions`);
        feeds.targets = int64Tensor(targets, dims);
      }
      const r = await s.run(feeds);
      return { logits: tensorData(r.logits, 'logits'), ...(withTargets ? { tokenNll: tensorData(r.token_nll, 'token_nll') } : {}) };
    },
    async hiddenStates(input) {
      let hidden = blocks.embed(input);
      const states = [hidden];
      for (let i = 0; i < numLayers; i++) {
        hidden = { data: (await blocks.layer(i, hidden)).output, batch: hidden.batch, length: hidden.length };
        states.push(hidden);
      }
      return states;
    },
    async dispose() {
      await attentionSession.release();
      await mlpSession.release();
      for (const s of lazy.values()) await (await s).release();
    },
  };
  return blocks;
}
