import {
  EMBED_TOKENS,
  InvalidOptionError,
  LINEAR_MODULES,
  LM_HEAD,
  META_BITS,
  META_GROUP,
  MemoryBudgetError,
  NO_LAYER,
  bitsPerWeight,
  configName,
  matrixTensorName,
  memoryMB,
  zeroKind,
  type QuantConfig,
  type Quantizer,
  type UnitModule,
  type LinearModule,
  moduleLadder,
  type ModuleLadders,
} from '@layerquant/core';
import { logSumExpRow } from '@layerquant/perplexity/browser';
import { hqqQuantizer, type KernelPool } from '@layerquant/quantizers';
import type { KldRow, KldTable } from '@layerquant/stats';
import type { DecoderBlocks, HiddenStates } from '@layerquant/runtime';
import { calibrationOf } from './activation-sensitivity.js';
import type { CalibrationBlocks } from './calibration.js';
import { LINEAR_INPUT, floatLayerPass, type LayerHessians } from './hessians.js';
import { dequantizedWith } from './pooled-quantize.js';

/**
 * The end-to-end effect of quantizing part of a model: the KL divergence of the model's next-token distribution
 * from the float model's, on calibration blocks, at the final logits. For one matrix at one config with everything
 * else at a reference allocation (float for the table the `kld` allocator starts from), only the layers from the
 * matrix's own block on are run: the reference hidden states at that block are computed once per layer and shared
 * by every matrix and config of the layer (exllamav3's measurement, and the seed paper's "post-quantization
 * integral" at the granularity of one matrix: the loss change itself, not a first-order estimate of it).
 */

/** One unit the measurement quantizes: a linear matrix, or an embedding unit (`embed_tokens`, `lm_head`). */
export interface KldUnit {
  /** The allocation's key: `<layer>.<module>`, `embed_tokens` or `lm_head`. */
  readonly key: string;
  readonly tensor: string;
  /** NO_LAYER (-1) for the embedding units. */
  readonly layer: number;
  readonly module: UnitModule;
  readonly params: number;
}

/** Unit key -> config of the units an allocation quantizes (absent or null: float). */
export type UnitConfigs = ReadonlyMap<string, QuantConfig | null>;

/** ΔKLD of every unit at every candidate config (null: float): `deltas.get(unit.key)[i]` for `configs.get(unit.key)[i]`. */
export interface UnitDeltas {
  readonly configs: ReadonlyMap<string, readonly (QuantConfig | null)[]>;
  readonly deltas: ReadonlyMap<string, Float64Array>;
  /** Mean KLD of the reference itself (0 for the float model). */
  readonly referenceLoss: number;
}

export interface KldMeasurerOptions {
  readonly quantizer?: Quantizer;
  /** Use at most this many calibration blocks (default: all given). */
  readonly blocks?: number;
  /** Tokens per block when `calibration` is a flat id list (default 512). */
  readonly seqlen?: number;
  /** Blocks per runtime call (default 8): bounds memory, not the result. */
  readonly batchSize?: number;
  /** Worker threads for the quantizations (bit-identical to the calling thread). */
  readonly pool?: KernelPool;
  /** Bytes the float model's distributions on the calibration may take in memory (float64; default 2 GiB). */
  readonly maxBaseBytes?: number;
  /**
   * Bytes the decoder layers' float32 weights may take when held in memory (default: 80% of `availableMemoryBytes`).
   * Every measurement runs the layers after its unit: streamed blocks would read them from the checkpoint again each
   * time, so the measurer reads every layer once and holds it, and refuses a model above this.
   */
  readonly maxWeightBytes?: number;
  /**
   * The free memory of the machine (Node: os.freemem(), what measureMetrics and the pipeline pass). One of the two is
   * required: the measurer never holds a model's weights without a limit.
   */
  readonly availableMemoryBytes?: number;
  /**
   * Held-out blocks (same block length, other tokens): the float model's distributions there are computed too, and
   * `heldOutLossOf` measures an allocation on them, so a correction fitted on the calibration can be checked on text it
   * did not see.
   */
  readonly heldOut?: CalibrationBlocks;
}

export interface KldMeasurer {
  readonly units: readonly KldUnit[];
  readonly blocks: number;
  readonly seqlen: number;
  /** Positions scored per measurement (blocks x (seqlen - 1)). */
  readonly tokens: number;
  /** Mean KLD (nats per token) from the float model of the model with `allocation` applied. */
  lossOf(allocation: UnitConfigs): Promise<number>;
  /**
   * For every unit and each of its candidate configs, the mean KLD of `reference` with that unit alone at that
   * config, less the mean KLD of `reference`: the marginal ΔKLD around `reference` (around the float model: each
   * unit's own). A candidate equal to the unit's reference config is 0 without a run. `onProgress` counts layer runs
   * (KLD_PROGRESS_UNIT), of all the measurements together, from (0, total) before the first.
   */
  marginals(reference: UnitConfigs, candidates: (key: string) => readonly (QuantConfig | null)[], onProgress?: (done: number, total: number) => void): Promise<UnitDeltas>;
  /** Forward passes run so far (one per batch of blocks, whatever layer they start from), for cost reports. */
  readonly runs: number;
  /** The held-out blocks given at creation (`heldOut`): how many, and the positions each measurement scores there. */
  readonly heldOut: { readonly blocks: number; readonly tokens: number } | null;
  /** Mean KLD of the model with `allocation` applied on the held-out blocks (present exactly when they were given). */
  heldOutLossOf?(allocation: UnitConfigs): Promise<number>;
}

/** The float model's next-token distributions at the calibration's scored positions. */
interface BaseRows {
  /** Per batch: probabilities [batch, seqlen - 1, vocab], float64. */
  readonly probabilities: Float64Array[];
  /** Per batch: sum_i p(i) log p(i) of each row (minus the entropy). */
  readonly negativeEntropy: Float64Array[];
}

/** A base row's probabilities (into `out` at `at`) and its sum p log p, from float32 logits, float64. */
function baseRow(logits: Float32Array, row: number, vocab: number, out: Float64Array, at: number): number {
  const { lse } = logSumExpRow(logits, row, vocab);
  let negativeEntropy = 0;
  for (let j = 0; j < vocab; j++) {
    const logP = logits[row + j]! - lse;
    const p = Math.exp(logP);
    out[at + j] = p;
    negativeEntropy += p * logP;
  }
  return negativeEntropy;
}

/**
 * Sum over the scored rows of KL(base || model) from the model's logits [batch, seqlen, vocab] (positions
 * 0..seqlen-2 scored) and the base's probabilities [batch, seqlen - 1, vocab] with their sums p log p:
 * sum_i p_b(i) log p_b(i) - sum_i p_b(i) z(i) + lse(z), float64 (the value `comparePosition` of
 * @layerquant/perplexity gives each position, with one exponential per vocabulary entry instead of three).
 */
export function kldSumOfBatch(logits: Float32Array, baseProbabilities: Float64Array, baseNegativeEntropy: Float64Array, batch: number, seqlen: number, vocab: number): number {
  let total = 0;
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < seqlen - 1; t++) {
      const row = (b * seqlen + t) * vocab;
      const baseRow = (b * (seqlen - 1) + t) * vocab;
      let cross = 0;
      for (let j = 0; j < vocab; j++) cross += baseProbabilities[baseRow + j]! * logits[row + j]!;
      total += baseNegativeEntropy[b * (seqlen - 1) + t]! - cross + logSumExpRow(logits, row, vocab).lse;
    }
  }
  return total;
}

/**
 * The units of a model, in the allocation's order: the linear matrices (layer, then module), then `embed_tokens` and,
 * when the output matrix is not tied to it, `lm_head`.
 */
export function kldUnits(model: Pick<DecoderBlocks, 'config' | 'shapes' | 'layout'>): KldUnit[] {
  const units: KldUnit[] = [];
  const add = (layer: number, module: UnitModule, key: string) => {
    const tensor = matrixTensorName(layer, module);
    const shape = model.shapes.get(tensor);
    if (!shape) throw new InvalidOptionError('model', `has no weight "${tensor}"`);
    units.push(Object.freeze({ key, tensor, layer, module, params: shape.reduce((a, b) => a * b, 1) }));
  };
  for (let layer = 0; layer < model.config.numLayers; layer++) for (const module of LINEAR_MODULES) add(layer, module, `${layer}.${module}`);
  add(NO_LAYER, 'embed_tokens', 'embed_tokens');
  if (!model.layout.tiedEmbeddings) add(NO_LAYER, 'lm_head', 'lm_head');
  return units;
}

const isAttention = (module: UnitModule) => module.startsWith('self_attn.');
const LAYER_OF = /^model\.layers\.(\d+)\./;
const sameConfig = (a: QuantConfig | null | undefined, b: QuantConfig | null | undefined) =>
  !a || !b ? !a && !b : configName(a) === configName(b) && a.axis === b.axis && a.roundZero === b.roundZero && a.symmetric === b.symmetric;
const candidateName = (c: QuantConfig | null) => (c ? configName(c) : 'float');

/** What a reference allocation changes in a forward: the dequantized matrices of each layer, the embedding table, the head. */
interface ReferenceWeights {
  /** Every tensor of every layer: float, or dequantized where the reference quantizes it. */
  readonly layers: Map<number, Map<string, Float32Array>>;
  /** The dequantized embedding table when the reference quantizes embed_tokens. */
  readonly embedTable?: Float32Array;
  /** The head's replaced output matrix (lm_head, or the tied embedding table). */
  readonly head: Map<string, Float32Array>;
}

/**
 * A measurer over decoder blocks (in memory or streamed) and calibration blocks: the float model's distributions on
 * the calibration are computed once, at creation, and kept (blocks x (seqlen - 1) x vocab float64; refused above
 * `maxBaseBytes`). Every decoder layer's float32 weights are read once and held (refused above `maxWeightBytes`);
 * the quantized units of a reference allocation are held dequantized while it is measured around (a float32 copy
 * of those units besides the float ones). A calibrated quantizer (GPTQ, BAQ) quantizes each linear matrix with the
 * Hessian of its float inputs on the calibration blocks, collected at creation in one float pass and held with the
 * weights (what measured's table does; the embedding units take the identity).
 */
export async function createKldMeasurer(model: DecoderBlocks, calibration: CalibrationBlocks | ArrayLike<number>, options: KldMeasurerOptions = {}): Promise<KldMeasurer> {
  const quantizer = options.quantizer ?? hqqQuantizer;
  const batchSize = options.batchSize ?? 8;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new InvalidOptionError('batchSize', `${batchSize} must be a positive integer`);
  const { ids, blocks, seqlen } = calibrationOf(calibration, options);
  if (seqlen < 2) throw new InvalidOptionError('seqlen', `${seqlen} must be at least 2: a block needs a next token to score`);
  const heldOut = options.heldOut;
  if (heldOut && (heldOut.seqlen !== seqlen || heldOut.blocks < 1 || heldOut.ids.length !== heldOut.blocks * seqlen)) {
    throw new InvalidOptionError('heldOut', `must be whole blocks of the calibration's length (${seqlen} tokens), at least one`);
  }
  const { numLayers, vocabSize: vocab, hiddenSize: h } = model.config;
  const allBlocks = blocks + (heldOut?.blocks ?? 0);
  const baseBytes = allBlocks * (seqlen - 1) * vocab * 8;
  const maxBaseBytes = options.maxBaseBytes ?? 2 * 2 ** 30;
  if (baseBytes > maxBaseBytes) {
    throw new MemoryBudgetError(`the float model's distributions on ${blocks} calibration blocks${heldOut ? ` and ${heldOut.blocks} held-out ones` : ''} of ${seqlen} tokens (vocabulary ${vocab}, float64)`, baseBytes, maxBaseBytes, 'measure on fewer calibration blocks (--blocks) or shorter ones (--seqlen)');
  }
  const units = kldUnits(model);
  const byKey = new Map(units.map((u) => [u.key, u]));
  // Every layer's float weights, read once (a streamed store reads a layer each time one of its blocks runs).
  let layerBytes = 0;
  for (const [name, shape] of model.shapes) if (LAYER_OF.test(name)) layerBytes += 4 * shape.reduce((a, b) => a * b, 1);
  const maxWeightBytes = options.maxWeightBytes ?? (options.availableMemoryBytes === undefined ? undefined : 0.8 * options.availableMemoryBytes);
  if (maxWeightBytes === undefined) {
    throw new InvalidOptionError('maxWeightBytes', 'the end-to-end KL-divergence measurement holds every decoder layer\'s float32 weights: give maxWeightBytes, or availableMemoryBytes (the free memory; Node: os.freemem())');
  }
  // A calibrated quantizer (GPTQ, BAQ) quantizes each matrix with the Hessian of its float inputs on the calibration
  // blocks, the setting of every statistics pass (measured's and sensitivity's tables): every layer's Hessians are
  // held too (float64), since an allocation asks for the weights of any layer in any order.
  const hessianBytes = quantizer.calibration ? numLayers * hessianBytesPerLayer(model) : 0;
  if (layerBytes + hessianBytes > maxWeightBytes) {
    const what = hessianBytes > 0 ? `every decoder layer's float32 weights and, for the calibrated quantizer "${quantizer.id}", their inputs' float64 Hessians, read once and held` : "every decoder layer's float32 weights, read once and held";
    throw new MemoryBudgetError(`the end-to-end KL-divergence measurement (${what})`, layerBytes + hessianBytes, maxWeightBytes, 'measure a model whose float32 weights fit in memory, or use the block-level statistics (measured, fnorm) for this one');
  }
  const floatLayers = new Map<number, Map<string, Float32Array>>();
  for (const name of model.shapes.keys()) {
    const layer = LAYER_OF.exec(name);
    if (!layer) continue;
    const index = Number(layer[1]);
    if (!floatLayers.has(index)) floatLayers.set(index, new Map());
    floatLayers.get(index)!.set(name, await model.tensor(name));
  }
  const headTensor = model.layout.tiedEmbeddings ? EMBED_TOKENS : LM_HEAD;
  let runs = 0;
  const floatTable = await model.tensor(EMBED_TOKENS);

  /** Runs layers `from`..end on one batch (each layer with its weights: float, some replaced), then the head. */
  const finish = async (from: number, states: HiddenStates, layers: Map<number, Map<string, Float32Array>>, head: Map<string, Float32Array>): Promise<Float32Array> => {
    let hidden = states;
    for (let layer = from; layer < numLayers; layer++) hidden = { ...hidden, data: (await model.layer(layer, hidden, layers.get(layer))).output };
    runs++;
    return (await model.head(hidden, undefined, head)).logits;
  };

  /**
   * One set of blocks (the calibration, or the held-out ones): its token ids batch by batch, their float embedding, and
   * the float model's distribution at every scored position, batch by batch.
   */
  const blockSet = async (setIds: Int32Array, setBlocks: number) => {
    const batchIds: Int32Array[] = [];
    for (let start = 0; start < setBlocks; start += batchSize) batchIds.push(setIds.subarray(start * seqlen, (start + Math.min(batchSize, setBlocks - start)) * seqlen));
    const embedWith = (table: Float32Array): HiddenStates[] =>
      batchIds.map((batch) => {
        const data = new Float32Array(batch.length * h);
        for (let i = 0; i < batch.length; i++) data.set(table.subarray(batch[i]! * h, (batch[i]! + 1) * h), i * h);
        return { data, batch: batch.length / seqlen, length: seqlen };
      });
    const floatEmbedded = embedWith(floatTable);
    const base: BaseRows = { probabilities: [], negativeEntropy: [] };
    for (const states of floatEmbedded) {
      const logits = await finish(0, states, floatLayers, new Map());
      runs--;
      const probabilities = new Float64Array(states.batch * (seqlen - 1) * vocab);
      const negativeEntropy = new Float64Array(states.batch * (seqlen - 1));
      for (let b = 0; b < states.batch; b++) {
        for (let t = 0; t < seqlen - 1; t++) {
          const r = b * (seqlen - 1) + t;
          negativeEntropy[r] = baseRow(logits, (b * seqlen + t) * vocab, vocab, probabilities, r * vocab);
        }
      }
      base.probabilities.push(probabilities);
      base.negativeEntropy.push(negativeEntropy);
    }
    const kldOfLogits = (batch: number, logits: Float32Array, states: HiddenStates) =>
      kldSumOfBatch(logits, base.probabilities[batch]!, base.negativeEntropy[batch]!, states.batch, seqlen, vocab);
    return { embedWith, floatEmbedded, kldOfLogits, tokens: setBlocks * (seqlen - 1) };
  };
  type BlockSet = Awaited<ReturnType<typeof blockSet>>;
  const calibrationSet = await blockSet(ids, blocks);
  const heldOutSet = heldOut ? await blockSet(heldOut.ids, heldOut.blocks) : undefined;
  const { embedWith, floatEmbedded, kldOfLogits, tokens } = calibrationSet;

  /** Every layer's Hessians from one float pass over the calibration blocks (the held-out ones never feed them). */
  const floatHessians = async (): Promise<Map<number, LayerHessians>> => {
    const all = new Map<number, LayerHessians>();
    let hidden = floatEmbedded;
    for (let layer = 0; layer < numLayers; layer++) {
      const { hessians, outputs } = await floatLayerPass(model, layer, hidden, floatLayers.get(layer));
      // Resolved now, so the accumulators' sums are freed and only the Hessians stay.
      for (const module of LINEAR_MODULES) hessians.contextFor(module);
      all.set(layer, hessians);
      hidden = outputs;
    }
    return all;
  };
  const hessians = quantizer.calibration ? await floatHessians() : undefined;

  const floatOf = async (unit: KldUnit) => ({ name: unit.tensor, dtype: 'F32' as const, shape: [...model.shapes.get(unit.tensor)!], data: await model.tensor(unit.tensor) });
  // The embedding units have no layer input: a calibrated quantizer takes the identity for them (round-to-nearest on its grid).
  const contextOf = (unit: KldUnit) => (hessians && unit.layer !== NO_LAYER ? hessians.get(unit.layer)!.contextFor(unit.module as LinearModule) : undefined);
  const weightsAt = async (unit: KldUnit, config: QuantConfig | null) =>
    config ? dequantizedWith(quantizer, await floatOf(unit), config, options.pool, contextOf(unit)) : (await floatOf(unit)).data;

  /** The weights of a reference allocation: every layer's (float, its quantized matrices dequantized), embeddings, head. */
  const referenceWeights = async (reference: UnitConfigs): Promise<ReferenceWeights> => {
    for (const key of reference.keys()) {
      if (!byKey.has(key)) throw new InvalidOptionError('allocation', `names "${key}", which is not a unit of the model (${units.length} units: its linear matrices, embed_tokens${model.layout.tiedEmbeddings ? '' : ', lm_head'})`);
    }
    const layers = new Map([...floatLayers].map(([index, tensors]) => [index, new Map(tensors)]));
    const head = new Map<string, Float32Array>();
    let embedTable: Float32Array | undefined;
    for (const unit of units) {
      const config = reference.get(unit.key);
      if (!config) continue;
      const weights = await weightsAt(unit, config);
      if (unit.module === 'embed_tokens') {
        embedTable = weights;
        if (model.layout.tiedEmbeddings) head.set(EMBED_TOKENS, weights);
      } else if (unit.module === 'lm_head') head.set(LM_HEAD, weights);
      else layers.get(unit.layer)!.set(unit.tensor, weights);
    }
    return { layers, head, ...(embedTable ? { embedTable } : {}) };
  };

  /** The layers one measurement of `unit` runs, the head counted as one. */
  const layerRunsOf = (unit: KldUnit) => (unit.module === 'embed_tokens' ? numLayers + 1 : unit.module === 'lm_head' ? 1 : numLayers - unit.layer + 1);

  const lossOn = async (set: BlockSet, allocation: UnitConfigs): Promise<number> => {
    const reference = await referenceWeights(allocation);
    const embedded = reference.embedTable ? set.embedWith(reference.embedTable) : set.floatEmbedded;
    let sum = 0;
    for (const [i, states] of embedded.entries()) sum += set.kldOfLogits(i, await finish(0, states, reference.layers, reference.head), states);
    return sum / set.tokens;
  };
  const lossOf = (allocation: UnitConfigs) => lossOn(calibrationSet, allocation);

  const marginals = async (reference: UnitConfigs, candidates: (key: string) => readonly (QuantConfig | null)[], onProgress?: (done: number, total: number) => void): Promise<UnitDeltas> => {
    const weights = await referenceWeights(reference);
    const configs = new Map<string, readonly (QuantConfig | null)[]>();
    let total = 0;
    for (const unit of units) {
      const list = candidates(unit.key);
      const names = list.map(candidateName);
      const duplicate = names.find((n, i) => names.indexOf(n) !== i);
      if (duplicate) throw new InvalidOptionError('configs', `lists ${duplicate} twice for ${unit.key}`);
      configs.set(unit.key, list);
      // Progress in layer runs: a measurement runs its unit's layer and every one after it, then the head
      // (embed_tokens all of them, lm_head the head alone). Counted by measurements, an estimate from the first
      // (embed_tokens, the costliest) would put the whole table at about twice its time.
      total += list.length * layerRunsOf(unit);
    }
    // Zero done: the setup (weights read, the float model's distribution) is over and the measurements start.
    onProgress?.(0, total);
    // Sums of KLD over the calibration per (unit, config); the reference's own sum is subtracted at the end.
    const sums = new Map<string, Float64Array>();
    let done = 0;
    /** Every candidate of a unit that differs from the reference: its weights (quantized at once, in parallel on the pool), then `measure`. */
    const measureUnit = async (unit: KldUnit, measure: (weights: Float32Array) => Promise<number>) => {
      const list = configs.get(unit.key)!;
      const own = reference.get(unit.key);
      const replaced = await Promise.all(list.map((config) => (sameConfig(own, config) ? undefined : weightsAt(unit, config))));
      const row = new Float64Array(list.length);
      for (const [c, w] of replaced.entries()) {
        if (w) row[c] = await measure(w);
        done += layerRunsOf(unit);
        onProgress?.(done, total);
      }
      sums.set(unit.key, row);
    };
    const embedUnit = byKey.get('embed_tokens')!;
    const referenceEmbedded = weights.embedTable ? embedWith(weights.embedTable) : floatEmbedded;
    // The embedding table: its candidates change layer 0's input (and the head's matrix when tied).
    await measureUnit(embedUnit, async (table) => {
      const head = model.layout.tiedEmbeddings ? new Map(weights.head).set(EMBED_TOKENS, table) : weights.head;
      let sum = 0;
      for (const [i, states] of embedWith(table).entries()) sum += kldOfLogits(i, await finish(0, states, weights.layers, head), states);
      return sum;
    });
    let hidden = referenceEmbedded;
    for (let layer = 0; layer < numLayers; layer++) {
      const layerOverrides = weights.layers.get(layer)!;
      // The reference's attention output of this layer (the MLP units' input), per batch, and the next layer's input.
      const residuals: HiddenStates[] = [];
      const next: HiddenStates[] = [];
      for (const states of hidden) {
        const attention = await model.attention(layer, states, layerOverrides);
        const residual = { data: attention.residual, batch: states.batch, length: states.length };
        residuals.push(residual);
        next.push({ ...states, data: (await model.mlp(layer, residual, layerOverrides)).output });
      }
      for (const unit of units.filter((u) => u.layer === layer)) {
        await measureUnit(unit, async (replaced) => {
          const swapped = new Map(layerOverrides).set(unit.tensor, replaced);
          let sum = 0;
          for (const [i, states] of hidden.entries()) {
            // Attention units run this layer's attention and MLP; MLP units start from the reference's attention output.
            const start = isAttention(unit.module) ? { ...states, data: (await model.attention(layer, states, swapped)).residual } : residuals[i]!;
            const output = (await model.mlp(layer, start, swapped)).output;
            sum += kldOfLogits(i, await finish(layer + 1, { ...states, data: output }, weights.layers, weights.head), states);
          }
          return sum;
        });
      }
      hidden = next;
    }
    // The reference's own KLD, from the hidden states the sweep carried through every layer; then lm_head's candidates.
    let referenceSum = 0;
    for (const [i, states] of hidden.entries()) {
      runs++;
      referenceSum += kldOfLogits(i, (await model.head(states, undefined, weights.head)).logits, states);
    }
    const lmHead = byKey.get('lm_head');
    if (lmHead) {
      await measureUnit(lmHead, async (matrix) => {
        let sum = 0;
        for (const [i, states] of hidden.entries()) {
          runs++;
          sum += kldOfLogits(i, (await model.head(states, undefined, new Map(weights.head).set(LM_HEAD, matrix))).logits, states);
        }
        return sum;
      });
    }
    const out = new Map<string, Float64Array>();
    for (const unit of units) {
      const own = reference.get(unit.key);
      const row = sums.get(unit.key)!;
      out.set(unit.key, Float64Array.from(configs.get(unit.key)!, (config, c) => (sameConfig(own, config) ? 0 : (row[c]! - referenceSum) / tokens)));
    }
    return Object.freeze({ configs, deltas: out, referenceLoss: referenceSum / tokens });
  };

  return {
    units,
    blocks,
    seqlen,
    tokens,
    lossOf,
    marginals,
    get runs() {
      return runs;
    },
    heldOut: heldOutSet ? { blocks: heldOut!.blocks, tokens: heldOutSet.tokens } : null,
    ...(heldOutSet ? { heldOutLossOf: (allocation: UnitConfigs) => lossOn(heldOutSet, allocation) } : {}),
  };
}

/** The bytes of one layer's input Hessians (float64): one per input its matrices read (q/k/v share one, gate/up one). */
function hessianBytesPerLayer(model: Pick<DecoderBlocks, 'shapes'>): number {
  const columns = new Map<string, number>();
  for (const module of LINEAR_MODULES) {
    const shape = model.shapes.get(matrixTensorName(0, module));
    if (shape) columns.set(LINEAR_INPUT[module], shape[1]!);
  }
  let bytes = 0;
  for (const n of columns.values()) bytes += 8 * n * n;
  return bytes;
}

/** What the kld statistic's progress counts: the layers its measurements run (the head counted as one). */
export const KLD_PROGRESS_UNIT = 'layer runs';

export interface KldTableOptions {
  /** Called after each measured (unit, config), in layer runs (KLD_PROGRESS_UNIT). */
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * The ladders of the embedding units (an allocation for a shipped format: each at the configs its file can store,
   * e.g. integer zeros for ONNX's GatherBlockQuantized); an embedding unit without one is measured at `configs`.
   */
  readonly embeddingConfigs?: Partial<Readonly<Record<string, readonly QuantConfig[]>>>;
  /** Linear modules whose matrices take fewer configs than the ladder (a format's: core's moduleLadder). */
  readonly moduleConfigs?: ModuleLadders;
}

/**
 * The `kld` statistic: every unit of the model at every config of the ladder, alone (the rest float), its ΔKLD from
 * the float model at the final logits, as table rows (memmb in the paper's accounting; sizes for a knapsack come
 * from its size budget, never from the table).
 */
export async function endToEndKldTable(measurer: KldMeasurer, configs: readonly QuantConfig[], options: KldTableOptions = {}): Promise<KldTable> {
  if (configs.length === 0) throw new InvalidOptionError('configs', 'names no config; give at least one, e.g. b4g64');
  const ladderOf = (unit: KldUnit): readonly QuantConfig[] => (unit.layer === NO_LAYER ? (options.embeddingConfigs?.[unit.module] ?? configs) : moduleLadder(configs, unit.module as LinearModule, options.moduleConfigs));
  const byKey = new Map(measurer.units.map((u) => [u.key, u]));
  const measured = await measurer.marginals(new Map(), (key) => ladderOf(byKey.get(key)!), options.onProgress);
  const rows: KldRow[] = [];
  for (const unit of measurer.units) {
    const deltas = measured.deltas.get(unit.key)!;
    ladderOf(unit).forEach((config, c) => {
      rows.push(
        Object.freeze({
          layer: unit.layer,
          module: unit.module,
          bits: config.bits,
          groupSize: config.groupSize,
          zero: zeroKind(config),
          metaBits: META_BITS,
          metaGroupSize: META_GROUP,
          deltaKld: deltas[c]!,
          memoryMB: memoryMB(bitsPerWeight(config), unit.params),
          params: unit.params,
          blocks: measurer.blocks,
          seqlen: measurer.seqlen,
        }),
      );
    });
  }
  return Object.freeze({ rows: Object.freeze(rows) });
}
