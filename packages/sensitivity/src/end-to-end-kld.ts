import {
  InvalidOptionError,
  LINEAR_MODULES,
  MemoryBudgetError,
  configName,
  matrixTensorName,
  type LinearModule,
  type QuantConfig,
  type Quantizer,
} from '@layerquant/core';
import { logSumExpRow } from '@layerquant/perplexity/browser';
import { hqqQuantizer, type KernelPool } from '@layerquant/quantizers';
import type { DecoderBlocks, HiddenStates } from '@layerquant/runtime';
import { embeddedBatches } from './activation-sensitivity.js';
import type { CalibrationBlocks } from './calibration.js';
import { dequantizedWith } from './pooled-quantize.js';

/**
 * The end-to-end effect of quantizing part of a model: the KL divergence of the model's next-token distribution
 * from the float model's, on calibration blocks, at the final logits. For one matrix at one config with everything
 * else at a reference allocation (float for the table the `kld` allocator starts from), only the layers from the
 * matrix's own block on are run: the reference hidden states at that block are computed once per layer and shared
 * by every matrix and config of the layer (exllamav3's measurement, and the seed paper's "post-quantization
 * integral" at the granularity of one matrix: the loss change itself, not a first-order estimate of it).
 */

/** One unit the measurement quantizes: a linear matrix. */
export interface KldUnit {
  /** `<layer>.<module>` (the allocation's matrix key). */
  readonly key: string;
  readonly tensor: string;
  readonly layer: number;
  readonly module: LinearModule;
  readonly params: number;
}

/** Unit key (`<layer>.<module>`) -> config of the units an allocation quantizes (absent or null: float). */
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
   * unit's own). A candidate equal to the unit's reference config is 0 without a run.
   */
  marginals(reference: UnitConfigs, candidates: (key: string) => readonly (QuantConfig | null)[], onProgress?: (done: number, total: number) => void): Promise<UnitDeltas>;
  /** Forward passes run so far (one per batch of blocks, whatever layer they start from), for cost reports. */
  readonly runs: number;
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

/** The linear matrices of a model, in layer then module order. */
export function kldUnits(model: Pick<DecoderBlocks, 'config' | 'shapes'>): KldUnit[] {
  const units: KldUnit[] = [];
  for (let layer = 0; layer < model.config.numLayers; layer++) {
    for (const module of LINEAR_MODULES) {
      const tensor = matrixTensorName(layer, module);
      const shape = model.shapes.get(tensor);
      if (!shape) throw new InvalidOptionError('model', `has no weight "${tensor}"`);
      units.push(Object.freeze({ key: `${layer}.${module}`, tensor, layer, module, params: shape.reduce((a, b) => a * b, 1) }));
    }
  }
  return units;
}

const isAttention = (module: LinearModule) => module.startsWith('self_attn.');
const sameConfig = (a: QuantConfig | null | undefined, b: QuantConfig | null | undefined) =>
  !a || !b ? !a && !b : configName(a) === configName(b) && a.axis === b.axis && a.roundZero === b.roundZero;
const candidateName = (c: QuantConfig | null) => (c ? configName(c) : 'float');

/**
 * A measurer over decoder blocks (in memory or streamed) and calibration blocks: the float model's distributions on
 * the calibration are computed once, at creation, and kept (blocks x (seqlen - 1) x vocab float64; refused above
 * `maxBaseBytes`). The quantized matrices of a reference allocation are kept dequantized while it is measured
 * around (one float32 copy of those matrices); the blocks' own weights are read as they are for any forward.
 */
export async function createKldMeasurer(model: DecoderBlocks, calibration: CalibrationBlocks | ArrayLike<number>, options: KldMeasurerOptions = {}): Promise<KldMeasurer> {
  const quantizer = options.quantizer ?? hqqQuantizer;
  const { hidden: embedded, blocks, seqlen, numLayers } = embeddedBatches(model, calibration, options);
  if (seqlen < 2) throw new InvalidOptionError('seqlen', `${seqlen} must be at least 2: a block needs a next token to score`);
  const vocab = model.config.vocabSize;
  const baseBytes = blocks * (seqlen - 1) * vocab * 8;
  const maxBaseBytes = options.maxBaseBytes ?? 2 * 2 ** 30;
  if (baseBytes > maxBaseBytes) {
    throw new MemoryBudgetError(`the float model's distributions on ${blocks} calibration blocks of ${seqlen} tokens (vocabulary ${vocab}, float64)`, baseBytes, maxBaseBytes, 'measure on fewer calibration blocks (--blocks) or shorter ones (--seqlen)');
  }
  const units = kldUnits(model);
  const tokens = blocks * (seqlen - 1);
  let runs = 0;

  /** Runs layers `from`..end (with the reference's overrides) on one batch from `states`, then the head. */
  const finish = async (from: number, states: HiddenStates, overridesOf: (layer: number) => Map<string, Float32Array> | undefined): Promise<Float32Array> => {
    let hidden = states;
    for (let layer = from; layer < numLayers; layer++) {
      hidden = { ...hidden, data: (await model.layer(layer, hidden, overridesOf(layer))).output };
    }
    runs++;
    return (await model.head(hidden)).logits;
  };

  // The float model's distribution at every scored position, batch by batch.
  const base: BaseRows = { probabilities: [], negativeEntropy: [] };
  for (const states of embedded) {
    const logits = await finish(0, states, () => undefined);
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

  const floatOf = async (unit: KldUnit) => ({ name: unit.tensor, dtype: 'F32' as const, shape: [...model.shapes.get(unit.tensor)!], data: await model.tensor(unit.tensor) });
  const dequantize = async (unit: KldUnit, config: QuantConfig) => dequantizedWith(quantizer, await floatOf(unit), config, options.pool);

  /** The reference's dequantized matrices by layer (the float ones are absent: the blocks read them). */
  const referenceOverrides = async (reference: UnitConfigs): Promise<Map<number, Map<string, Float32Array>>> => {
    const byLayer = new Map<number, Map<string, Float32Array>>();
    for (const unit of units) {
      const config = reference.get(unit.key);
      if (!config) continue;
      let layer = byLayer.get(unit.layer);
      if (!layer) byLayer.set(unit.layer, (layer = new Map()));
      layer.set(unit.tensor, await dequantize(unit, config));
    }
    for (const key of reference.keys()) {
      if (!units.some((u) => u.key === key)) throw new InvalidOptionError('allocation', `names "${key}", which is not a linear matrix of the model`);
    }
    return byLayer;
  };

  const lossOf = async (allocation: UnitConfigs): Promise<number> => {
    const overrides = await referenceOverrides(allocation);
    let sum = 0;
    for (const [i, states] of embedded.entries()) sum += kldOfLogits(i, await finish(0, states, (l) => overrides.get(l)), states);
    return sum / tokens;
  };

  const marginals = async (reference: UnitConfigs, candidates: (key: string) => readonly (QuantConfig | null)[], onProgress?: (done: number, total: number) => void): Promise<UnitDeltas> => {
    const overrides = await referenceOverrides(reference);
    const overridesOf = (layer: number) => overrides.get(layer);
    const configs = new Map<string, readonly (QuantConfig | null)[]>();
    const out = new Map<string, Float64Array>();
    let total = 0;
    for (const unit of units) {
      const list = candidates(unit.key);
      const names = list.map(candidateName);
      const duplicate = names.find((n, i) => names.indexOf(n) !== i);
      if (duplicate) throw new InvalidOptionError('configs', `lists ${duplicate} twice for ${unit.key}`);
      configs.set(unit.key, list);
      out.set(unit.key, new Float64Array(list.length));
      total += list.length;
    }
    // Sums of KLD over the calibration per (unit, config); the reference's own sum is subtracted at the end.
    const sums = new Map<string, Float64Array>();
    let hidden = embedded;
    let done = 0;
    for (let layer = 0; layer < numLayers; layer++) {
      const layerOverrides = overridesOf(layer) ?? new Map<string, Float32Array>();
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
        const list = configs.get(unit.key)!;
        const own = reference.get(unit.key);
        // The unit's configs quantized at once (in parallel on the pool's workers when there is one); float: its own weights.
        const dequantized = await Promise.all(list.map((config) => (sameConfig(own, config) ? undefined : config ? dequantize(unit, config) : floatOf(unit).then((w) => w.data))));
        const row = new Float64Array(list.length);
        for (const [c, weights] of dequantized.entries()) {
          if (weights) {
            const swapped = new Map(layerOverrides).set(unit.tensor, weights);
            for (const [i, states] of hidden.entries()) {
              // Attention units run this layer's attention and MLP; MLP units start from the reference's attention output.
              const start = isAttention(unit.module) ? { ...states, data: (await model.attention(layer, states, swapped)).residual } : residuals[i]!;
              const output = (await model.mlp(layer, start, swapped)).output;
              row[c]! += kldOfLogits(i, await finish(layer + 1, { ...states, data: output }, overridesOf), states);
            }
          }
          onProgress?.(++done, total);
        }
        sums.set(unit.key, row);
      }
      hidden = next;
    }
    // The reference's own KLD, from the hidden states the sweep carried through every layer.
    let referenceSum = 0;
    for (const [i, states] of hidden.entries()) {
      runs++;
      referenceSum += kldOfLogits(i, (await model.head(states)).logits, states);
    }
    for (const unit of units) {
      const own = reference.get(unit.key);
      const row = sums.get(unit.key)!;
      configs.get(unit.key)!.forEach((config, c) => {
        out.get(unit.key)![c] = sameConfig(own, config) ? 0 : (row[c]! - referenceSum) / tokens;
      });
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
  };
}
