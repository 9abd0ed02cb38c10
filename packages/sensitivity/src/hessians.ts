import {
  InvalidOptionError,
  LINEAR_MODULES,
  isLinearModule,
  layerTensorName,
  matrixTensorName,
  type InputHessian,
  type LinearModule,
  type QuantizeContext,
} from '@layerquant/core';
import type { MatrixCalibration, ModelMatrix } from '@layerquant/quantizers';
import type { DecoderBlocks, HiddenStates } from '@layerquant/runtime';
import { embeddedBatches } from './activation-sensitivity.js';
import type { CalibrationBlocks } from './calibration.js';

/**
 * What each linear matrix of a layer reads: q, k, v the normed layer input (`attention`), o_proj the attention context
 * (`context`), gate and up the normed stream after attention (`mlp`), down_proj the MLP activation (`activation`).
 * Matrices that read the same input share one Hessian.
 */
export type LinearInput = 'attention' | 'context' | 'mlp' | 'activation';

export const LINEAR_INPUT: Readonly<Record<LinearModule, LinearInput>> = Object.freeze({
  'self_attn.q_proj': 'attention',
  'self_attn.k_proj': 'attention',
  'self_attn.v_proj': 'attention',
  'self_attn.o_proj': 'context',
  'mlp.gate_proj': 'mlp',
  'mlp.up_proj': 'mlp',
  'mlp.down_proj': 'activation',
});

/**
 * `H = 2 X^T X / N` summed batch by batch in float64, each batch's `X^T X` one Gemm on the runtime (`gram`: transA,
 * so the rows are never transposed in JavaScript). Holds one [columns, columns] sum.
 */
export class HessianAccumulator {
  readonly #sum: Float64Array;
  #samples = 0;

  constructor(readonly columns: number) {
    this.#sum = new Float64Array(columns * columns);
  }

  /** Adds the rows of `x` ([rows, columns] row-major). */
  async add(model: DecoderBlocks, x: Float32Array): Promise<void> {
    const n = this.columns;
    const rows = x.length / n;
    if (!Number.isInteger(rows)) throw new InvalidOptionError('inputs', `${x.length} values are not rows of ${n}`);
    const product = await model.gram(x, n);
    for (let i = 0; i < product.length; i++) this.#sum[i]! += product[i]!;
    this.#samples += rows;
  }

  get samples(): number {
    return this.#samples;
  }

  result(): InputHessian {
    if (this.#samples === 0) throw new InvalidOptionError('calibration', 'no calibration tokens reached this layer; give calibration text with at least one block');
    const data = new Float64Array(this.#sum.length);
    const scale = 2 / this.#samples;
    for (let i = 0; i < data.length; i++) data[i] = this.#sum[i]! * scale;
    return Object.freeze({ columns: this.columns, samples: this.#samples, data });
  }
}

/** RMSNorm of each row (`x / sqrt(mean(x^2) + eps) * weight`): the input q/k/v (and gate/up) read from the stream. */
export function rmsNormRows(x: Float32Array, weight: Float32Array, eps: number): Float32Array {
  const width = weight.length;
  const out = new Float32Array(x.length);
  for (let base = 0; base < x.length; base += width) {
    let squares = 0;
    for (let i = 0; i < width; i++) squares += x[base + i]! * x[base + i]!;
    const denominator = Math.fround(Math.sqrt(Math.fround(squares / width) + eps));
    for (let i = 0; i < width; i++) out[base + i] = Math.fround(x[base + i]! / denominator) * weight[i]!;
  }
  return out;
}

/** The four Hessians of one layer, filled batch by batch from the inputs its matrices read. */
export class LayerHessians {
  readonly #accumulators = new Map<LinearInput, HessianAccumulator>();
  readonly #results = new Map<LinearInput, InputHessian>();

  constructor(readonly model: DecoderBlocks, readonly layer: number) {}

  /** Adds a batch of `input` rows: the normed inputs are normed here from the raw stream (`attention`, `mlp`). */
  async add(input: LinearInput, x: Float32Array): Promise<void> {
    const { model, layer } = this;
    const rows = input === 'attention' || input === 'mlp' ? rmsNormRows(x, await model.tensor(layerTensorName(layer, input === 'attention' ? 'inputNorm' : 'postNorm')), model.config.rmsNormEps) : x;
    let accumulator = this.#accumulators.get(input);
    if (!accumulator) {
      const module = LINEAR_MODULES.find((m) => LINEAR_INPUT[m] === input)!;
      const shape = model.shapes.get(matrixTensorName(layer, module))!;
      accumulator = new HessianAccumulator(shape[1]!);
      this.#accumulators.set(input, accumulator);
    }
    await accumulator.add(model, rows);
  }

  /** One batch of all four inputs: the layer input, the attention context, the stream after attention, the MLP activation. */
  async addLayer(input: Float32Array, context: Float32Array, residual: Float32Array, activation: Float32Array): Promise<void> {
    await this.add('attention', input);
    await this.add('context', context);
    await this.add('mlp', residual);
    await this.add('activation', activation);
  }

  /** The Hessian of an input (the same object for every matrix reading it). */
  get(input: LinearInput): InputHessian {
    let result = this.#results.get(input);
    if (!result) {
      const accumulator = this.#accumulators.get(input);
      if (!accumulator) throw new InvalidOptionError('calibration', `layer ${this.layer}: no ${input} inputs were collected`);
      result = accumulator.result();
      this.#results.set(input, result);
      this.#accumulators.delete(input);
    }
    return result;
  }

  /** The context a matrix of this layer is quantized with. */
  contextFor(module: LinearModule): QuantizeContext {
    return { hessian: this.get(LINEAR_INPUT[module]) };
  }
}

/**
 * A layer's four Hessians from float inputs (the statistics passes' setting: the float outputs of layer i-1 feed layer
 * i): the float attention and MLP blocks run on every batch. `hidden` is the layer's input.
 */
export async function floatLayerHessians(model: DecoderBlocks, layer: number, hidden: readonly HiddenStates[]): Promise<LayerHessians> {
  return (await floatLayerPass(model, layer, hidden)).hessians;
}

/**
 * One float pass of a layer over `hidden`: its four Hessians, and its outputs (the next layer's input), from the same
 * attention and MLP runs. `weights` are the layer's tensors where the caller holds them (read from the model otherwise).
 */
export async function floatLayerPass(
  model: DecoderBlocks,
  layer: number,
  hidden: readonly HiddenStates[],
  weights?: ReadonlyMap<string, Float32Array>,
): Promise<{ readonly hessians: LayerHessians; readonly outputs: HiddenStates[] }> {
  const hessians = new LayerHessians(model, layer);
  const outputs: HiddenStates[] = [];
  for (const states of hidden) {
    const attention = await model.attention(layer, states, weights);
    const mlp = await model.mlp(layer, { data: attention.residual, batch: states.batch, length: states.length }, weights);
    await hessians.addLayer(states.data, attention.context, attention.residual, mlp.activation);
    outputs.push({ ...states, data: mlp.output });
  }
  return { hessians, outputs };
}

export interface SequentialCalibrationOptions {
  /** Use at most this many calibration blocks (default: all given). */
  readonly blocks?: number;
  /** Tokens per block when `calibration` is a flat id list (default 512). */
  readonly seqlen?: number;
  /** Blocks per runtime call (default 8): bounds memory, not the result. */
  readonly batchSize?: number;
  /** Called when the pass moves past a layer. */
  readonly onLayer?: (layer: number, layers: number) => void;
}

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * GPTQ's sequential layer pass, as a MatrixCalibration for quantizeModel: the calibration blocks run through the
 * decoder layer by layer (streamed weights, one layer at a time), and each matrix's Hessian is collected from the
 * inputs it sees with every matrix before it already quantized: the layers before, and within a layer q/k/v before
 * o_proj, the attention before gate/up, gate/up before down_proj (GPTQ's "true sequential" order). q/k/v share one
 * Hessian, gate/up another. Held: the hidden states of every block (and the stream after attention) and the current
 * layer's Hessians.
 */
export function createSequentialCalibration(
  model: DecoderBlocks,
  calibration: CalibrationBlocks | ArrayLike<number>,
  options: SequentialCalibrationOptions = {},
): MatrixCalibration & { readonly blocks: number; readonly seqlen: number } {
  const embedded = embeddedBatches(model, calibration, options);
  const { numLayers } = model.config;
  let hidden: HiddenStates[] = embedded.hidden;
  let current = 0;
  // Each matrix's weights as the quantized model holds them, by layer (a layer's may be reported before the pass reaches it).
  const weights = new Map<number, Map<LinearModule, Deferred<Float32Array | null>>>();
  let hessians = new Map<LinearInput, Promise<InputHessian>>();
  let residuals: Promise<HiddenStates[]> | undefined;
  let layerHessians = new LayerHessians(model, 0);
  // Runtime calls one after another, in the order they were asked for.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work);
    queue = run.catch(() => undefined);
    return run;
  };
  const weightOf = (module: LinearModule, layer = current) => {
    let ofLayer = weights.get(layer);
    if (!ofLayer) weights.set(layer, (ofLayer = new Map()));
    let entry = ofLayer.get(module);
    if (!entry) ofLayer.set(module, (entry = deferred()));
    return entry;
  };
  const overrides = async (modules: readonly LinearModule[]) => {
    const map = new Map<string, Float32Array>();
    for (const module of modules) {
      const w = await weightOf(module).promise;
      if (w) map.set(matrixTensorName(current, module), w);
    }
    return map;
  };
  const attentionModules: LinearModule[] = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'];
  const residualsOfLayer = () => {
    residuals ??= (async () => {
      const given = await overrides([...attentionModules, 'self_attn.o_proj']);
      return serial(async () => {
        const out: HiddenStates[] = [];
        for (const states of hidden) {
          const attention = await model.attention(current, states, given);
          out.push({ data: attention.residual, batch: states.batch, length: states.length });
        }
        return out;
      });
    })();
    return residuals;
  };
  const collect = (input: LinearInput): Promise<InputHessian> => {
    let hessian = hessians.get(input);
    if (hessian) return hessian;
    hessian = (async () => {
      if (input === 'attention') {
        await serial(async () => {
          for (const states of hidden) await layerHessians.add('attention', states.data);
        });
      } else if (input === 'context') {
        const given = await overrides(attentionModules);
        await serial(async () => {
          for (const states of hidden) await layerHessians.add('context', (await model.attention(current, states, given)).context);
        });
      } else if (input === 'mlp') {
        const stream = await residualsOfLayer();
        await serial(async () => {
          for (const states of stream) await layerHessians.add('mlp', states.data);
        });
      } else {
        const stream = await residualsOfLayer();
        const given = await overrides(['mlp.gate_proj', 'mlp.up_proj']);
        await serial(async () => {
          for (const states of stream) await layerHessians.add('activation', (await model.mlp(current, states, given)).activation);
        });
      }
      return layerHessians.get(input);
    })();
    hessians.set(input, hessian);
    return hessian;
  };
  // The next layer's inputs: this layer with every matrix as the quantized model holds it.
  const advance = async () => {
    const stream = await residualsOfLayer();
    const given = await overrides(['mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']);
    await Promise.all(LINEAR_MODULES.map((m) => weightOf(m).promise));
    hidden = await serial(async () => {
      const next: HiddenStates[] = [];
      for (const states of stream) next.push({ data: (await model.mlp(current, states, given)).output, batch: states.batch, length: states.length });
      return next;
    });
    options.onLayer?.(current, numLayers);
    weights.delete(current);
    current++;
    hessians = new Map();
    residuals = undefined;
    layerHessians = new LayerHessians(model, current);
  };
  let moving: Promise<void> = Promise.resolve();
  let asked = 0;
  const reach = (layer: number): Promise<void> => {
    // A layer below one already asked for could only be served after that one, which waits for this layer's matrices:
    // refused at once, never a pass that waits forever.
    if (layer < asked) {
      return Promise.reject(new InvalidOptionError('calibration', `layer ${layer} was asked for after layer ${asked}: calibrated matrices must be quantized in layer order (ask for each matrix's context in that order)`));
    }
    asked = layer;
    moving = moving.then(async () => {
      while (current < layer) await advance();
    });
    return moving;
  };
  return {
    blocks: embedded.blocks,
    seqlen: embedded.seqlen,
    async context(matrix: ModelMatrix): Promise<QuantizeContext> {
      // The embedding units are outside the layer pass: no input statistics (a calibrated quantizer says what it needs).
      if (!isLinearModule(matrix.module)) return {};
      await reach(matrix.layer);
      return { hessian: await collect(LINEAR_INPUT[matrix.module]) };
    },
    done(matrix: ModelMatrix, dequantized: Float32Array | null): void {
      if (isLinearModule(matrix.module) && matrix.layer >= current) weightOf(matrix.module, matrix.layer).resolve(dequantized);
    },
  };
}
