/// <reference lib="webworker" />
import type { FnormTable, KurtosisTable, SensitivityTable } from '@layerquant/allocators';
import { LayerquantError, matrixOfTensorName, type DecoderConfig, type Quantizer } from '@layerquant/core';
import { perplexity } from '@layerquant/perplexity/browser';
import { toMatMulNBits } from '@layerquant/export/browser';
import { createGptqQuantizer, createHqqQuantizer, planUnits, quantizeUnits, type MatrixCalibration } from '@layerquant/quantizers';
import {
  buildDecoderGraph,
  createDecoderModel,
  createKvDecoder,
  decoderLayout,
  expectedShapes,
  greedyDecode,
  loadDecoderBlocks,
  loadDecoderWeights,
  withOverrides,
  type DecoderModel,
  type DecoderWeights,
  type GraphWeight,
  type KvDecoder,
} from '@layerquant/runtime';
import { SENSITIVITY_METRICS, calibrationBlocks, createSequentialCalibration, measureMetricsOn, metricForTable } from '@layerquant/sensitivity/browser';
import { findShards, openModelFiles, readTokenizer, summarizeModel, type Checkpoint, type ModelSummary, type Tokenizer } from '@layerquant/tensor-io/browser';
import { modelFilesOf } from './model-files.js';
import { memoryFit } from './memory-fit.js';
import { PageKldBase } from './kld.js';
import { CALIBRATION_NAME, PAGE_CALIBRATION_BLOCKS, PAGE_CALIBRATION_SEQLEN, type GenerateDevice, type OpenResult, type Progress, type QuantizeResult, type StatisticsAnswer, type WorkerMessage, type WorkerRequest } from './protocol.js';

// The model worker: it holds one model (weights, the float and the quantized onnxruntime-web sessions, the
// tokenizer) and does everything heavy, so the page stays responsive. One worker per model source.

declare const self: DedicatedWorkerGlobalScope;

/** HQQ (upstream settings) on the WebAssembly SIMD kernel (it throws where WebAssembly SIMD is missing), as the CLI runs it. */
const KERNEL = 'wasm';
const quantizer = createHqqQuantizer({ kernel: KERNEL });
/** GPTQ (its defaults: 1% dampening, no act-order), its column loop on the same WebAssembly SIMD kernel as the CLI's. */
const gptq = createGptqQuantizer({ kernel: KERNEL });

/** The model the worker holds: tensor-io's checkpoint, read through the page's files, with its config and facts. */
interface PageModel extends Checkpoint {
  readonly name: string;
  readonly config: DecoderConfig;
  readonly summary: ModelSummary;
}

interface State {
  checkpoint: PageModel;
  textUrl: string;
  /** The calibration text activation sensitivity runs on (brown-calib, as `layerquant sensitivity` defaults to). */
  calibrationUrl: string;
  tokenizer?: Tokenizer;
  ids?: Promise<number[]>;
  floatWeights?: DecoderWeights;
  quantizedWeights?: DecoderWeights;
  /** The quantized matrices as MatMulNBits weights: what the export ships, and what generation runs. */
  packedWeights?: ReadonlyMap<string, GraphWeight>;
  sessions: SessionCache;
  fits: boolean;
  /** The float model's logits of the live windows, computed once for the KL divergence of every quantization. */
  kldBase: PageKldBase;
}
let state: State | undefined;

type Which = 'float' | 'quantized';
// The runtime package's models, on its onnxruntime-web backend (the page's `#ort-backend`, vite.config.ts).
type NllDecoder = DecoderModel;
type KvSession = KvDecoder;

/**
 * At most two onnxruntime-web sessions live at a time (each holds every weight in float32): the perplexity graph
 * (per-token NLL) and the KV-cache graph of the float and the quantized model are built when asked, and the least
 * recently used one is released first.
 */
class SessionCache {
  private readonly live = new Map<string, Promise<NllDecoder | KvSession>>();
  private static readonly CAPACITY = 2;
  async get<T extends NllDecoder | KvSession>(key: string, build: () => Promise<T>): Promise<T> {
    const found = this.live.get(key);
    if (found) {
      this.live.delete(key);
      this.live.set(key, found);
      return found as Promise<T>;
    }
    while (this.live.size >= SessionCache.CAPACITY) {
      const [oldest, session] = this.live.entries().next().value as [string, Promise<NllDecoder | KvSession>];
      this.live.delete(oldest);
      await (await session).dispose();
    }
    const created = build();
    this.live.set(key, created);
    created.catch(() => this.live.delete(key));
    return created;
  }
  async drop(prefix: string): Promise<void> {
    for (const [key, session] of [...this.live]) {
      if (!key.startsWith(prefix)) continue;
      this.live.delete(key);
      await (await session).dispose();
    }
  }
}

class WorkerStateError extends LayerquantError {
  constructor(message: string) {
    super('NOTEBOOK_STATE', message);
  }
}

function opened(): State {
  if (!state) throw new WorkerStateError('no model is open; open one first');
  return state;
}

function tokenizerOf(s: State): Tokenizer {
  if (!s.tokenizer) throw new WorkerStateError(`${s.checkpoint.name} has no tokenizer.json; the page needs it to tokenize text`);
  return s.tokenizer;
}

async function textIds(s: State): Promise<number[]> {
  if (!s.ids) {
    s.ids = (async () => {
      const response = await fetch(s.textUrl);
      if (!response.ok) throw new WorkerStateError(`${s.textUrl} could not be loaded (HTTP ${response.status})`);
      // The whole text once, as the CLI does: cutting it first could change the tokens at the cut.
      return tokenizerOf(s).encode(await response.text());
    })();
    // A failed load is tried again next time.
    s.ids.catch(() => (s.ids = undefined));
  }
  return s.ids;
}

function requireFit(s: State): void {
  if (!s.fits) throw new WorkerStateError(memoryFit(s.checkpoint.config, s.checkpoint.summary).message);
}

async function floatWeights(s: State, progress: (p: Progress) => void): Promise<DecoderWeights> {
  requireFit(s);
  if (!s.floatWeights) {
    progress({ done: 0, total: 1, label: 'reading weights' });
    s.floatWeights = await loadDecoderWeights(s.checkpoint, s.checkpoint.config);
  }
  return s.floatWeights;
}

function weightsOf(s: State, which: Which, progress: (p: Progress) => void): Promise<DecoderWeights> {
  if (which === 'float') return floatWeights(s, progress);
  if (!s.quantizedWeights) throw new WorkerStateError('nothing is quantized yet; quantize the model first');
  return Promise.resolve(s.quantizedWeights);
}

async function nllModel(s: State, which: Which, progress: (p: Progress) => void): Promise<NllDecoder> {
  const weights = await weightsOf(s, which, progress);
  return s.sessions.get(`${which}/nll`, () => {
    progress({ done: 0, total: 1, label: `building the ${which} perplexity session (onnxruntime-web)` });
    // Weights as initializers, per-token NLL in the graph: what `loadDecoderModel` runs in Node.
    return createDecoderModel(weights, { weightMode: 'initializers' });
  });
}

async function kvModel(s: State, which: Which, device: GenerateDevice, progress: (p: Progress) => void): Promise<KvSession> {
  const weights = await weightsOf(s, which, progress);
  return s.sessions.get(`${which}/kv/${device}`, () => {
    progress({ done: 0, total: 1, label: `building the ${which} KV-cache session (onnxruntime-web, ${device})` });
    // The graph `layerquant export` writes and `layerquant generate` runs (fused operators, shared KV cache): the
    // quantized model over its packed MatMulNBits weights, at accuracy level 0 as `layerquant generate` runs a
    // quantized checkpoint (float activations: the dequantized model's tokens), the float one over float32 weights.
    const graphWeights = which === 'quantized' && s.packedWeights ? new Map<string, GraphWeight>([...weights.tensors, ...s.packedWeights]) : weights.tensors;
    const graph = buildDecoderGraph(weights.config, weights.layout, { weights: graphWeights, kvCache: true, operators: 'fused', accuracyLevel: 0 });
    return createKvDecoder(graph.encode(), weights.config, { device });
  });
}

const handlers = {
  async open(request: Extract<WorkerRequest, { kind: 'open' }>): Promise<OpenResult> {
    const files = await modelFilesOf(request.files);
    const shards = await findShards(files);
    // config.json checked against the tensors, as every CLI command does, before anything is read.
    const opened = await openModelFiles(files, shards);
    const checkpoint: PageModel = { ...opened.checkpoint, name: files.name, config: opened.config, summary: summarizeModel(files.name, opened.config, opened.checkpoint.tensors, shards.shards.length) };
    const tokenizer = files.has('tokenizer.json') ? await readTokenizer(files) : undefined;
    const fit = memoryFit(checkpoint.config, checkpoint.summary);
    await state?.sessions.drop('');
    state = { checkpoint, textUrl: request.textUrl, calibrationUrl: request.calibrationUrl, ...(tokenizer ? { tokenizer } : {}), fits: fit.ok, sessions: new SessionCache(), kldBase: new PageKldBase() };
    const layout = decoderLayout(checkpoint.config, checkpoint);
    let float32Bytes = 0;
    for (const shape of expectedShapes(checkpoint.config, layout).values()) float32Bytes += 4 * shape.reduce((a, b) => a * b, 1);
    return {
      summary: checkpoint.summary,
      tensors: checkpoint.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.byteLength })),
      files: shards.shards,
      float32Bytes,
      fits: fit,
      hasTokenizer: tokenizer !== undefined,
    };
  },

  async 'load-float'(_request: unknown, progress: (p: Progress) => void) {
    const started = performance.now();
    await nllModel(opened(), 'float', progress);
    return { seconds: (performance.now() - started) / 1000 };
  },

  async quantize(request: Extract<WorkerRequest, { kind: 'quantize' }>, progress: (p: Progress) => void): Promise<QuantizeResult> {
    const s = opened();
    const started = performance.now();
    const base = await floatWeights(s, progress);
    const configs = new Map(request.matrices.map((m) => [m.name, m.config]));
    // The units and their configs as quantizeModel plans them (a matrix the request leaves out stays float), quantized
    // by the same loop (@layerquant/quantizers' quantizeUnits; calibrated in layer order), on the weights held here.
    const plans = planUnits([...base.shapes].map(([name, shape]) => ({ name, dtype: 'F32' as const, shape })), (_key, matrix) => configs.get(matrix.name) ?? null);
    for (const name of configs.keys()) {
      if (!plans.has(name)) throw new WorkerStateError(`the allocation names ${name}, ${base.tensors.has(name) ? 'which is not a linear matrix of the model (the page quantizes those only)' : 'which the model does not have'}`);
    }
    const read = async (name: string) => ({ name, dtype: 'F32' as const, shape: base.shapes.get(name)!, data: base.tensors.get(name)! });
    const overrides = new Map<string, Float32Array>();
    const packed = new Map<string, GraphWeight>();
    let error = 0;
    let done = 0;
    const run = async (chosen: Quantizer, calibration?: MatrixCalibration) => {
      for await (const unit of quantizeUnits({ plans, read, quantizer: chosen, ...(calibration ? { calibration } : {}) })) {
        if (!unit.quantized) continue;
        const name = unit.plan.matrix.name;
        error += unit.sqErr;
        overrides.set(name, unit.dequantized);
        packed.set(name, toMatMulNBits(unit.quantized).weight);
        progress({ done: ++done, total: request.matrices.length, label: `quantized ${name}` });
      }
    };
    let calibrated: { blocks: number; seqlen: number } | undefined;
    if (request.quantizer?.id === 'gptq') {
      // As `quantize --quantizer gptq`: each matrix's Hessian collected with the ones before it quantized.
      calibrated = await withSequentialCalibration(s, request.quantizer.blocks ?? PAGE_CALIBRATION_BLOCKS, progress, (calibration) => run(gptq, calibration));
    } else {
      await run(quantizer);
    }
    await s.sessions.drop('quantized/');
    s.quantizedWeights = withOverrides(base, overrides);
    s.packedWeights = packed;
    return { seconds: (performance.now() - started) / 1000, matrices: request.matrices.length, squaredError: error, kernel: KERNEL, quantizer: calibrated ? 'gptq' : 'hqq', ...(calibrated ?? {}) };
  },

  async perplexity(request: Extract<WorkerRequest, { kind: 'perplexity' }>, progress: (p: Progress) => void) {
    const s = opened();
    const decoder = await nllModel(s, request.model, progress);
    const ids = await textIds(s);
    const result = await perplexity(decoder, ids, {
      seqlen: request.seqlen,
      maxTokens: request.windows * request.seqlen,
      onProgress: (done, total) => progress({ done, total, label: `window ${done} of ${total}` }),
    });
    return { ppl: result.ppl, nll: result.nll, windows: result.windows, tokens: result.tokens, seconds: result.seconds };
  },

  async kld(request: Extract<WorkerRequest, { kind: 'kld' }>, progress: (p: Progress) => void) {
    const s = opened();
    if (!s.quantizedWeights) throw new WorkerStateError('nothing is quantized yet; quantize the model first');
    const ids = await textIds(s);
    return s.kldBase.kld(request, ids, s.checkpoint.config.vocabSize, { float: () => nllModel(s, 'float', progress), quantized: () => nllModel(s, 'quantized', progress) }, progress);
  },

  async generate(request: Extract<WorkerRequest, { kind: 'generate' }>, progress: (p: Progress) => void) {
    const s = opened();
    const tokenizer = tokenizerOf(s);
    const promptIds = tokenizer.encode(request.prompt);
    if (promptIds.length === 0) throw new WorkerStateError('the prompt has no tokens; type some text');
    const decoder = await kvModel(s, request.model, request.device, progress);
    const started = performance.now();
    let firstToken = started;
    // As `layerquant generate`: greedy with the KV cache, stopping at the end-of-sequence token.
    const eos = s.checkpoint.config.eosTokenId;
    let done = 0;
    const ids = await greedyDecode(decoder, promptIds, {
      maxNewTokens: request.tokens,
      ...(eos === undefined ? {} : { eosTokenIds: [eos] }),
      onToken: (_id, index) => {
        if (index === 0) firstToken = performance.now();
        progress({ done: ++done, total: request.tokens, label: `token ${done} of ${request.tokens}` });
      },
    });
    const finished = performance.now();
    return {
      promptIds,
      ids,
      text: tokenizer.decode(ids),
      seconds: (finished - started) / 1000,
      prefillSeconds: (firstToken - started) / 1000,
      decodeTokensPerSecond: ids.length > 1 ? ((ids.length - 1) * 1000) / (finished - firstToken) : null,
      device: request.device,
      weights: request.model === 'quantized' && s.packedWeights ? 'packed' : 'float32',
    };
  },

  async 'quantize-matrix'(request: Extract<WorkerRequest, { kind: 'quantize-matrix' }>) {
    const s = opened();
    const weight = await s.checkpoint.read(request.name);
    const q = request.hessian ? gptq.quantize(weight, request.config, { hessian: request.hessian }) : quantizer.quantize(weight, request.config);
    return { packed: q.packed, scale: q.scale, zero: q.zero, kernel: KERNEL };
  },

  async statistics(request: Extract<WorkerRequest, { kind: 'statistics' }>, progress: (p: Progress) => void): Promise<StatisticsAnswer> {
    const s = opened();
    const started = performance.now();
    const source = s.checkpoint;
    // The tables through their metric plug-ins and the one measurement `layerquant sensitivity` runs
    // (@layerquant/sensitivity's measureMetricsOn): fnorm with kurtosis read off its column, activation sensitivity
    // (HQQ b4g64) on the first blocks of brown-calib through the model's decoder blocks in onnxruntime-web, one layer's
    // weights at a time, or kurtosis alone. HQQ on the WebAssembly kernel, as the CLI's default.
    const tables = request.table === 'fnorm' ? ['fnorm', 'kurtosis'] : [request.table];
    const metrics = tables.map((table) => {
      const metric = metricForTable(SENSITIVITY_METRICS, table);
      if (!metric) throw new WorkerStateError(`no metric fills the table "${table}"`);
      return metric;
    });
    const activations = metrics.some((m) => m.input === 'activations');
    if (activations) requireFit(s);
    const linear = source.tensors.filter((t) => matrixOfTensorName(t.name)).length;
    // kurtosis alone reads each linear matrix once: the reads are its progress (a 7B model takes minutes)
    let read = 0;
    const counted = {
      tensors: source.tensors,
      has: (name: string) => source.has(name),
      read: async (name: string) => {
        if (request.table === 'kurtosis') progress({ done: read, total: linear, label: `kurtosis of ${name}` });
        const tensor = await source.read(name);
        read++;
        return tensor;
      },
    };
    const blocks = request.blocks ?? PAGE_CALIBRATION_BLOCKS;
    const result = await measureMetricsOn(
      { name: s.checkpoint.name, config: s.checkpoint.config, checkpoint: counted, tokenizer: async () => tokenizerOf(s), loadBlocks: () => loadDecoderBlocks(source, s.checkpoint.config) },
      metrics,
      {
        quantizer,
        calibrationName: CALIBRATION_NAME,
        ...(activations ? { calibrationText: await calibrationText(s), blocks, seqlen: pageSeqlen(s) } : {}),
        onPlan: (plan) => {
          if (plan.metric.input === 'activations') progress({ done: 0, total: plan.layers, label: `activation sensitivity: ${plan.blocks} blocks of ${plan.seqlen} tokens` });
        },
        onProgress: (metric, done, total) => {
          if (metric.table === 'fnorm') progress({ done, total, label: `fnorm of matrix ${done} of ${total} (12 configs)` });
          else if (metric.table === 'sensitivity') progress({ done, total, label: `activation sensitivity of layer ${done - 1}` });
        },
      },
    );
    const seconds = (performance.now() - started) / 1000;
    const answer = result.tables as { kurtosis?: KurtosisTable; fnorm?: FnormTable; sensitivity?: SensitivityTable };
    return { ...answer, ...(activations && result.blocks !== null && result.seqlen !== null ? { blocks: result.blocks, seqlen: result.seqlen } : {}), seconds };
  },

  async 'tokenize-text'(request: Extract<WorkerRequest, { kind: 'tokenize-text' }>) {
    return (await textIds(opened())).slice(0, request.maxTokens);
  },
} satisfies Record<WorkerRequest['kind'], (request: never, progress: (p: Progress) => void) => Promise<unknown>>;

/** brown-calib's text, as the CLI's statistics read it. */
async function calibrationText(s: State): Promise<string> {
  const response = await fetch(s.calibrationUrl);
  if (!response.ok) throw new WorkerStateError(`${s.calibrationUrl} could not be loaded (HTTP ${response.status})`);
  return response.text();
}

/** Tokens per calibration block: 512, or the model's context where that is shorter. */
function pageSeqlen(s: State): number {
  return Math.min(PAGE_CALIBRATION_SEQLEN, s.checkpoint.config.maxPositionEmbeddings);
}

/** The first `blocks` blocks of brown-calib under the model's tokenizer, pageSeqlen tokens each. */
async function pageCalibration(s: State, blocks: number) {
  return calibrationBlocks(await calibrationText(s), tokenizerOf(s), { blocks, seqlen: pageSeqlen(s), source: CALIBRATION_NAME });
}

/**
 * GPTQ's layer pass in the page, by the CLI's code (`createSequentialCalibration` of @layerquant/sensitivity, what
 * `quantize --quantizer gptq` runs through openSequentialCalibration): the calibration blocks through the model's
 * decoder blocks in onnxruntime-web, one layer's weights at a time.
 */
async function withSequentialCalibration(
  s: State,
  blocks: number,
  progress: (p: Progress) => void,
  quantize: (calibration: MatrixCalibration) => Promise<void>,
): Promise<{ blocks: number; seqlen: number }> {
  requireFit(s);
  const calibration = await pageCalibration(s, blocks);
  const { numLayers } = s.checkpoint.config;
  const model = await loadDecoderBlocks(s.checkpoint, s.checkpoint.config);
  try {
    progress({ done: 0, total: numLayers, label: `GPTQ calibration: ${calibration.blocks} blocks of ${calibration.seqlen} tokens` });
    const pass = createSequentialCalibration(model, calibration, { onLayer: (layer, layers) => progress({ done: layer + 1, total: layers, label: `GPTQ: Hessians of layer ${layer} collected, its matrices quantized` }) });
    await quantize(pass);
    return { blocks: pass.blocks, seqlen: pass.seqlen };
  } finally {
    await model.dispose();
  }
}

function transferables(value: unknown): Transferable[] {
  if (value && typeof value === 'object' && 'packed' in value) {
    const q = value as { packed: Uint32Array; scale: Float32Array; zero: Float32Array };
    return [q.packed.buffer, q.scale.buffer, q.zero.buffer] as Transferable[];
  }
  return [];
}

// Requests run one at a time, in order: a model's sessions are not shared between two runs.
let queue: Promise<void> = Promise.resolve();
self.onmessage = (event: MessageEvent<{ id: number; request: WorkerRequest }>) => {
  const { id, request } = event.data;
  const post = (message: WorkerMessage, transfer: Transferable[] = []) => self.postMessage(message, transfer);
  queue = queue.then(async () => {
    try {
      const handler = handlers[request.kind] as (request: WorkerRequest, progress: (p: Progress) => void) => Promise<unknown>;
      const result = await handler(request, (progress) => post({ id, progress }));
      post({ id, result }, transferables(result));
    } catch (error) {
      // A LayerquantError is a message for the reader (a missing file, a bad option); anything else is a bug.
      if (!(error instanceof LayerquantError)) console.error(error);
      post({ id, error: { name: error instanceof Error ? error.name : 'Error', message: error instanceof Error ? error.message : String(error) } });
    }
  });
};
