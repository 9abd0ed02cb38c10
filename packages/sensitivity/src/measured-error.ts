import {
  InvalidOptionError,
  LINEAR_MODULES,
  PAPER_CONFIGS,
  META_BITS,
  META_GROUP,
  bitsPerWeight,
  configName,
  matrixTensorName,
  memoryMB,
  zeroKind,
  EMBEDDING_UNITS,
  EMBED_TOKENS,
  FINAL_NORM,
  LM_HEAD,
  NO_LAYER,
  type EmbeddingUnit,
  type LinearModule,
  type QuantConfig,
  type Quantizer,
  moduleLadder,
  type ModuleLadders,
} from '@layerquant/core';
import type { MeasuredRow, MeasuredTable } from '@layerquant/stats';
import { hqqQuantizer, squaredError, type KernelPool } from '@layerquant/quantizers';
import type { DecoderBlocks, HiddenStates } from '@layerquant/runtime';
import { calibrationOf, embeddedBatches, subtract, sumOfSquares } from './activation-sensitivity.js';
import type { CalibrationBlocks } from './calibration.js';
import { dequantizedWith, type QuantizationErrors } from './pooled-quantize.js';
import { LayerHessians } from './hessians.js';

export interface MeasuredErrorOptions {
  /** The config ladder to measure (default: the paper's 12). */
  readonly configs?: readonly QuantConfig[];
  readonly quantizer?: Quantizer;
  /** Use at most this many calibration blocks (default: all given). */
  readonly blocks?: number;
  /** Tokens per block when `calibration` is a flat id list (default 512). */
  readonly seqlen?: number;
  /** Blocks per runtime call (default 8): bounds memory, not the result. */
  readonly batchSize?: number;
  /** Worker threads running the quantizer's kernel: a layer's seven matrices are quantized in parallel (bit-identical). */
  readonly pool?: KernelPool;
  /** Records each matrix's squared dequantization error at each config, for the fnorm table of the same run to reuse. */
  readonly errors?: QuantizationErrors;
  /** Called after each layer. */
  readonly onLayer?: (layer: number, layers: number) => void;
  /**
   * The embedding units to measure too, each at its own ladder (a format's: the embedding lookup takes integer or no
   * zeros): rows with layer NO_LAYER. Absent: the linear matrices only.
   */
  readonly embeddingConfigs?: Partial<Readonly<Record<EmbeddingUnit, readonly QuantConfig[]>>>;
  /** Linear modules whose matrices take fewer configs than the ladder (a format's: core's moduleLadder); others get every config. */
  readonly moduleConfigs?: ModuleLadders;
  /** Positions of the final stream the lm_head error is measured on, evenly spaced (default 4096). */
  readonly headPositions?: number;
}

const ATTENTION_INPUTS: readonly LinearModule[] = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'];
const MLP_INPUTS: readonly LinearModule[] = ['mlp.gate_proj', 'mlp.up_proj'];

/**
 * layerquant's `measured` statistic: for every matrix and every config of the ladder, the mean squared error of
 * the matrix's block output when that matrix alone is quantized with that config (every other weight float),
 * with the float outputs of layer i-1 as the inputs of layer i (SPEC section 2's activation sensitivity, one
 * matrix at a time instead of one module group, for every config instead of b4g64):
 * - q, k, v: the attention block output (input_layernorm -> attention -> o_proj, before the residual);
 * - o_proj: the same output, = context x (W - Wq)^T on the float attention context;
 * - gate, up: the MLP block output (post_attention_layernorm -> MLP -> down_proj);
 * - down_proj: the same output, = activation x (W - Wq)^T on the float MLP activation.
 * The MSE is the mean over every element of the [blocks, seqlen, hidden] output, divided by the mean square of the
 * residual stream the block output is added to (the layer's input for q/k/v/o, the stream after attention for
 * gate/up/down), over the same elements: every later layer reads the stream through an RMSNorm, so what an error
 * does downstream depends on its size relative to the stream, not on its absolute size. Without it the summed
 * errors are not comparable across layers (measured on the shipped model: layer 0 reads the embeddings, mean
 * square 0.001, the later layers a stream of 1.6-3), and the knapsack starved the first layer and q/k. Cost: per layer and config,
 * 3 attention + 2 MLP block calls and 2 matmuls per batch of blocks, i.e. linear in layers x configs x blocks.
 */
export async function measuredErrors(
  model: DecoderBlocks,
  calibration: CalibrationBlocks | ArrayLike<number>,
  options: MeasuredErrorOptions = {},
): Promise<MeasuredTable> {
  const configs = options.configs ?? PAPER_CONFIGS;
  if (configs.length === 0) throw new InvalidOptionError('configs', 'names no config; give at least one, e.g. b4g64');
  const names = configs.map(configName);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate) throw new InvalidOptionError('configs', `lists ${duplicate} twice`);
  const quantizer = options.quantizer ?? hqqQuantizer;
  const { blocks, hiddenSize, numLayers, elements, hidden: embedded } = embeddedBatches(model, calibration, options);
  let hidden = embedded;
  // Streamed blocks read a layer's weights when one of its tensors is first asked for (one layer at a time).
  const weightOf = async (name: string): Promise<{ data: Float32Array; shape: readonly number[] }> => {
    const shape = model.shapes.get(name);
    if (!shape) throw new InvalidOptionError('model', `has no weight "${name}"`);
    return { data: await model.tensor(name), shape };
  };
  // A calibrated quantizer (GPTQ) gets each matrix's Hessian from the layer's float inputs, collected in the float pass.
  let hessians: LayerHessians | undefined;
  // `module`: a linear matrix's, whose input Hessian a calibrated quantizer reads; an embedding unit has none.
  const dequantized = async (name: string, config: QuantConfig, module?: LinearModule): Promise<Float32Array> => {
    const { data, shape } = await weightOf(name);
    const dq = await dequantizedWith(quantizer, { name, dtype: 'F32', shape: [...shape], data }, config, options.pool, module ? hessians?.contextFor(module) : undefined);
    options.errors?.record(quantizer, name, config, squaredError(data, dq));
    return dq;
  };

  const takes = (module: LinearModule, config: QuantConfig) => moduleLadder(configs, module, options.moduleConfigs).includes(config);
  const rows: MeasuredRow[] = [];
  for (let layer = 0; layer < numLayers; layer++) {
    // Float block outputs of this layer, batch by batch (kept while the configs are measured).
    const floats: { states: HiddenStates; attention: Float32Array; context: Float32Array; residual: HiddenStates; mlp: Float32Array; activation: Float32Array }[] = [];
    const next: HiddenStates[] = [];
    // Mean squares of the residual streams the attention and MLP outputs are added to (the errors' scale).
    let attentionStream = 0;
    let mlpStream = 0;
    hessians = quantizer.calibration ? new LayerHessians(model, layer) : undefined;
    for (const states of hidden) {
      const attention = await model.attention(layer, states);
      const residual: HiddenStates = { data: attention.residual, batch: states.batch, length: states.length };
      const mlp = await model.mlp(layer, residual);
      floats.push({ states, attention: attention.attention, context: attention.context, residual, mlp: mlp.mlp, activation: mlp.activation });
      next.push({ data: mlp.output, batch: states.batch, length: states.length });
      attentionStream += sumOfSquares(states.data);
      mlpStream += sumOfSquares(residual.data);
      await hessians?.addLayer(states.data, attention.context, attention.residual, mlp.activation);
    }
    attentionStream /= elements;
    mlpStream /= elements;
    if (!(attentionStream > 0) || !(mlpStream > 0)) {
      throw new InvalidOptionError('model', `layer ${layer}: the residual stream is ${attentionStream > 0 ? 'zero after attention' : 'zero at its input'} on the calibration blocks, so no relative error can be measured; check the checkpoint's embeddings and norms`);
    }
    const sums = new Map<LinearModule, Float64Array>(LINEAR_MODULES.map((m) => [m, new Float64Array(configs.length)]));
    // One config at a time: only the 7 quantized matrices of one layer and config are held.
    for (let c = 0; c < configs.length; c++) {
      const config = configs[c]!;
      // The layer's matrices that take this config (all seven but where a format's module ladder is shorter), at once
      // (in parallel on the pool's workers when there is one).
      const modules = LINEAR_MODULES.filter((module) => takes(module, config));
      const layerDequantized = await Promise.all(modules.map((module) => dequantized(matrixTensorName(layer, module), config, module)));
      const quantized = new Map<LinearModule, Float32Array>();
      for (const [m, module] of modules.entries()) {
        const dq = layerDequantized[m]!;
        quantized.set(module, module === 'self_attn.o_proj' || module === 'mlp.down_proj' ? subtract((await weightOf(matrixTensorName(layer, module))).data, dq) : dq);
      }
      const oProj = quantized.get('self_attn.o_proj');
      const downProj = quantized.get('mlp.down_proj');
      for (const f of floats) {
        for (const module of ATTENTION_INPUTS.filter((m) => quantized.has(m))) {
          const out = await model.attention(layer, f.states, new Map([[matrixTensorName(layer, module), quantized.get(module)!]]));
          sums.get(module)![c]! += squaredError(f.attention, out.attention);
        }
        if (oProj) sums.get('self_attn.o_proj')![c]! += sumOfSquares(await model.linear(f.context, oProj, hiddenSize));
        for (const module of MLP_INPUTS.filter((m) => quantized.has(m))) {
          const out = await model.mlp(layer, f.residual, new Map([[matrixTensorName(layer, module), quantized.get(module)!]]));
          sums.get(module)![c]! += squaredError(f.mlp, out.mlp);
        }
        if (downProj) sums.get('mlp.down_proj')![c]! += sumOfSquares(await model.linear(f.activation, downProj, hiddenSize));
      }
    }
    hidden = next;
    for (const module of LINEAR_MODULES) {
      const shape = model.shapes.get(matrixTensorName(layer, module))!;
      const params = shape.reduce((a, b) => a * b, 1);
      for (let c = 0; c < configs.length; c++) {
        const config = configs[c]!;
        if (!takes(module, config)) continue;
        rows.push(
          Object.freeze({
            layer,
            module,
            bits: config.bits,
            groupSize: config.groupSize,
            zero: zeroKind(config),
            metaBits: META_BITS,
            metaGroupSize: META_GROUP,
            error: sums.get(module)![c]! / elements / (module.startsWith('self_attn') ? attentionStream : mlpStream),
            memoryMB: memoryMB(bitsPerWeight(config), params),
            params,
            blocks,
          }),
        );
      }
    }
    options.onLayer?.(layer, numLayers);
  }
  if (options.embeddingConfigs) {
    const ids = calibrationOf(calibration, options).ids;
    rows.push(...(await embeddingUnitErrors(model, ids, hidden, blocks, options.embeddingConfigs, dequantized, options.headPositions ?? 4096)));
  }
  return Object.freeze({ rows: Object.freeze(rows) });
}

/**
 * The embedding units' rows of the measured table, on the same footing as a block output's error (an error added to
 * the residual stream, relative to that stream's mean square):
 * - embed_tokens: the lookup's error on the calibration tokens relative to the embeddings themselves (the stream at
 *   layer 0's input), sum over tokens of |E'[t] - E[t]|^2 / sum of |E[t]|^2;
 * - lm_head: the logits' error relative to the float logits on the final stream (positions evenly spaced),
 *   |N (W - W')^T|^2 / |N W^T|^2 with N the final-normed states;
 * - a tied embed_tokens is both, so its error is their sum.
 */
async function embeddingUnitErrors(
  model: DecoderBlocks,
  ids: ArrayLike<number>,
  finalStates: readonly HiddenStates[],
  blocks: number,
  ladders: Partial<Readonly<Record<EmbeddingUnit, readonly QuantConfig[]>>>,
  dequantized: (name: string, config: QuantConfig) => Promise<Float32Array>,
  headPositions: number,
): Promise<MeasuredRow[]> {
  const { hiddenSize: h, vocabSize: vocab, rmsNormEps } = model.config;
  const tied = model.layout.tiedEmbeddings;
  const headName = tied ? EMBED_TOKENS : LM_HEAD;
  // Final-normed states of evenly spaced positions: the rows the output projection reads.
  const total = finalStates.reduce((sum, s) => sum + s.batch * s.length, 0);
  const step = Math.max(1, Math.ceil(total / headPositions));
  const picked: number[] = [];
  for (let p = 0; p < total; p += step) picked.push(p);
  const norm = await model.tensor(FINAL_NORM);
  const normed = new Float32Array(picked.length * h);
  {
    let position = 0;
    let next = 0;
    for (const states of finalStates) {
      const count = states.batch * states.length;
      while (next < picked.length && picked[next]! < position + count) {
        const row = states.data.subarray((picked[next]! - position) * h, (picked[next]! - position + 1) * h);
        let meanSquare = 0;
        for (let j = 0; j < h; j++) meanSquare += row[j]! * row[j]!;
        const inverse = 1 / Math.sqrt(meanSquare / h + rmsNormEps);
        for (let j = 0; j < h; j++) normed[next * h + j] = row[j]! * inverse * norm[j]!;
        next++;
      }
      position += count;
    }
  }
  // Sum of squares of N M^T, in chunks of rows (the logits of a large vocabulary are never held whole).
  const projectedSquares = async (matrix: Float32Array): Promise<number> => {
    let sum = 0;
    const chunk = Math.max(1, Math.floor(2 ** 24 / vocab));
    for (let r = 0; r < picked.length; r += chunk) {
      const rows = Math.min(chunk, picked.length - r);
      sum += sumOfSquares(await model.linear(normed.subarray(r * h, (r + rows) * h), matrix, vocab));
    }
    return sum;
  };
  const headWeight = await model.tensor(headName);
  const headReference = await projectedSquares(headWeight);
  const headError = async (dq: Float32Array) => (await projectedSquares(subtract(headWeight, dq))) / headReference;

  const counts = new Float64Array(vocab);
  for (let i = 0; i < ids.length; i++) counts[ids[i]!]! += 1;
  const embeddings = await model.tensor(EMBED_TOKENS);
  const weightedSquares = (table: Float32Array, minus?: Float32Array) => {
    let sum = 0;
    for (let v = 0; v < vocab; v++) {
      if (counts[v] === 0) continue;
      let row = 0;
      for (let j = 0; j < h; j++) {
        const d = table[v * h + j]! - (minus ? minus[v * h + j]! : 0);
        row += d * d;
      }
      sum += counts[v]! * row;
    }
    return sum;
  };
  const embedReference = weightedSquares(embeddings);
  if (!(embedReference > 0) || !(headReference > 0)) {
    throw new InvalidOptionError('model', `the ${embedReference > 0 ? 'logits are' : 'embeddings of the calibration tokens are'} zero, so no relative error of the embedding units can be measured; check the checkpoint`);
  }

  const rows: MeasuredRow[] = [];
  for (const unit of EMBEDDING_UNITS) {
    const configs = ladders[unit];
    if (!configs || configs.length === 0) continue;
    if (unit === 'lm_head' && tied) throw new InvalidOptionError('embeddingConfigs', 'the model ties lm_head to embed_tokens: measure embed_tokens, which serves both');
    const name = unit === 'embed_tokens' ? EMBED_TOKENS : LM_HEAD;
    const params = vocab * h;
    for (const config of configs) {
      const dq = await dequantized(name, config);
      const error = unit === 'lm_head' ? await headError(dq) : weightedSquares(embeddings, dq) / embedReference + (tied ? await headError(dq) : 0);
      rows.push(Object.freeze({
        layer: NO_LAYER, module: unit, bits: config.bits, groupSize: config.groupSize, zero: zeroKind(config),
        metaBits: META_BITS, metaGroupSize: META_GROUP, error, memoryMB: memoryMB(bitsPerWeight(config), params), params, blocks,
      }));
    }
  }
  return rows;
}
