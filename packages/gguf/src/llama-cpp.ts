import { InvalidOptionError, MissingDependencyError, MissingFileError } from '@layerquant/core';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

// A GGUF file evaluated by llama.cpp itself, through node-llama-cpp (an optional peer dependency, pinned at 3.21.1,
// CPU only, prebuilt binaries only): log-probabilities from llama.cpp's own logits, so perplexity (and KLD) of the
// file a user ships are llama.cpp's, and greedy generation.

export const NODE_LLAMA_CPP_VERSION = '3.21.1';

/** The slice of node-llama-cpp this module uses (typed here so that the package does not need it to build). */
interface LlamaModule {
  getLlama(options: { gpu: false; build: 'never'; logLevel?: string; progressLogs?: boolean }): Promise<{
    loadModel(options: { modelPath: string; gpuLayers?: number }): Promise<LlamaModelHandle>;
  }>;
}
interface LlamaModelHandle {
  readonly tokens: { readonly bos: number | null; readonly eos: number | null };
  tokenize(text: string, specialTokens?: boolean): number[];
  detokenize(tokens: readonly number[], specialTokens?: boolean): string;
  createContext(options: { contextSize: number; batchSize: number; threads: number; sequences: number }): Promise<LlamaContextHandle>;
  dispose(): Promise<void>;
}
interface LlamaContextHandle {
  getSequence(): LlamaSequenceHandle;
  dispose(): Promise<void>;
}
type ControlledItem = number | [number, { generateNext?: { probabilities?: boolean; token?: boolean } }];
interface LlamaSequenceHandle {
  clearHistory(): Promise<void>;
  controlledEvaluate(input: ControlledItem[]): Promise<Array<undefined | { next: { token?: number | null; probabilities?: Map<number, number> } }>>;
}

/** node-llama-cpp, loaded on first use; a MissingDependencyError saying how to install it where it is not. */
export async function loadNodeLlamaCpp(): Promise<LlamaModule> {
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD ??= 'true';
  try {
    return (await import('node-llama-cpp')) as unknown as LlamaModule;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new MissingDependencyError(
        'node-llama-cpp',
        `is not installed, and layerquant evaluates .gguf files through it (llama.cpp's own computation); install it beside layerquant with \`npm install node-llama-cpp@${NODE_LLAMA_CPP_VERSION}\` (set NODE_LLAMA_CPP_SKIP_DOWNLOAD=true to use its prebuilt CPU binaries)`,
        { cause: error },
      );
    }
    throw error;
  }
}

type LlamaBackend = Awaited<ReturnType<LlamaModule['getLlama']>>;
let backend: Promise<LlamaBackend> | undefined;

/** llama.cpp's CPU backend, loaded once per process: getLlama takes about a second, and every model shares it. */
function llamaBackend(): Promise<LlamaBackend> {
  if (!backend) {
    backend = loadNodeLlamaCpp().then(({ getLlama }) => getLlama({ gpu: false, build: 'never', logLevel: 'error', progressLogs: false }));
    backend.catch(() => (backend = undefined)); // a failed load (e.g. not installed) is tried again next time
  }
  return backend;
}

export interface LlamaCppOptions {
  /** Tokens per evaluation window (llama.cpp's context and batch size). Default 512. */
  readonly contextSize?: number;
  /** CPU threads (default 1: on a shared machine llama.cpp's spin barrier makes more threads slower). */
  readonly threads?: number;
}

export interface LlamaCppModel {
  readonly path: string;
  readonly contextSize: number;
  /**
   * Log-probabilities [ids.length, vocab] of the next token after each position, from llama.cpp's logits (its
   * softmax in float32): one window evaluated from an empty cache, no BOS added.
   */
  logProbabilities(ids: ArrayLike<number>): Promise<{ readonly vocab: number; readonly values: Float32Array }>;
  /** -log p(targets[t] | ids[0..t]) per position: perplexity's NllModel. */
  tokenNll(input: { readonly ids: ArrayLike<number> }, targets: ArrayLike<number>): Promise<Float32Array>;
  /** Log-probabilities as logits [ids.length, vocab] and the NLL of the same run: a KL divergence's LogitsModel. */
  logitsAndNll(input: { readonly ids: ArrayLike<number> }, targets: ArrayLike<number>): Promise<{ readonly logits: Float32Array; readonly nll: Float32Array }>;
  /** Greedy continuation of `prompt` (llama.cpp's argmax, with its KV cache), `maxNewTokens` tokens, never stopping early. */
  greedy(prompt: readonly number[], maxNewTokens: number): Promise<number[]>;
  /** llama.cpp's tokenization of `text`, without BOS or special tokens. */
  tokenize(text: string): number[];
  /** The text of token ids, as llama.cpp detokenizes them (special tokens written out). */
  detokenize(ids: readonly number[]): string;
  dispose(): Promise<void>;
}

/** float32's least positive (subnormal) value. */
const FLOAT32_LEAST_POSITIVE = 1.401298464324817e-45;

/** -log p(targets[t]) per position from log-probabilities [positions, vocab]. */
function nllOf(scores: { readonly vocab: number; readonly values: Float32Array }, targets: ArrayLike<number>): Float32Array {
  const out = new Float32Array(targets.length);
  for (let t = 0; t < targets.length; t++) out[t] = -scores.values[t * scores.vocab + targets[t]!]!;
  return out;
}

/** Loads a GGUF file in llama.cpp (node-llama-cpp, CPU) for evaluation. */
export async function openLlamaCppModel(path: string, options: LlamaCppOptions = {}): Promise<LlamaCppModel> {
  const file = resolve(path);
  if (!existsSync(file)) throw new MissingFileError(file, 'does not exist; pass a .gguf file');
  const contextSize = options.contextSize ?? 512;
  const threads = options.threads ?? 1;
  if (!Number.isInteger(contextSize) || contextSize < 2) throw new InvalidOptionError('contextSize', `${contextSize} must be an integer >= 2`);
  const llama = await llamaBackend();
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const context = await model.createContext({ contextSize, batchSize: contextSize, threads, sequences: 1 });
  const sequence = context.getSequence();
  const check = (ids: ArrayLike<number>) => {
    if (ids.length === 0 || ids.length > contextSize) throw new InvalidOptionError('ids', `${ids.length} tokens do not fit llama.cpp's context of ${contextSize}; evaluate windows of at most ${contextSize}`);
  };
  const logProbabilities = async (ids: ArrayLike<number>) => {
    check(ids);
    await sequence.clearHistory();
    const results = await sequence.controlledEvaluate(Array.from(ids, (id) => [id, { generateNext: { probabilities: true } }] as ControlledItem));
    let vocab = 0;
    for (const r of results) vocab = Math.max(vocab, r?.next.probabilities?.size ?? 0);
    const values = new Float32Array(ids.length * vocab).fill(-Infinity);
    for (const [t, r] of results.entries()) {
      const probabilities = r?.next.probabilities;
      if (!probabilities || probabilities.size !== vocab) throw new Error(`node-llama-cpp returned ${probabilities?.size ?? 0} probabilities at position ${t}, expected the whole vocabulary of ${vocab}`);
      // A probability that underflowed float32's softmax to 0 is given float32's least positive one (e^-103.3): a
      // finite log-probability, so a KL divergence stays finite where the other distribution gives the token weight.
      for (const [token, p] of probabilities) values[t * vocab + token] = Math.log(p > 0 ? p : FLOAT32_LEAST_POSITIVE);
    }
    return { vocab, values };
  };
  return {
    path: file,
    contextSize,
    logProbabilities,
    async tokenNll(input, targets) {
      return nllOf(await logProbabilities(input.ids), targets);
    },
    // KL divergence (eval --kld-base, experiment --kld): llama.cpp's log-probabilities serve as the logits (their
    // softmax is the same distribution), with the NLL of the same run.
    async logitsAndNll(input, targets) {
      const scores = await logProbabilities(input.ids);
      return { logits: scores.values, nll: nllOf(scores, targets) };
    },
    async greedy(prompt, maxNewTokens) {
      check(prompt);
      if (prompt.length + maxNewTokens > contextSize) throw new InvalidOptionError('maxNewTokens', `${prompt.length} prompt tokens and ${maxNewTokens} new ones exceed llama.cpp's context of ${contextSize}`);
      await sequence.clearHistory();
      const generated: number[] = [];
      let input: ControlledItem[] = prompt.map((id, i) => (i === prompt.length - 1 ? [id, { generateNext: { token: true } }] : id));
      while (generated.length < maxNewTokens) {
        const results = await sequence.controlledEvaluate(input);
        const next = results[input.length - 1]?.next.token;
        if (next === undefined || next === null) throw new Error('llama.cpp generated no token');
        generated.push(next);
        input = [[next, { generateNext: { token: true } }]];
      }
      return generated;
    },
    tokenize: (text) => model.tokenize(text, false),
    detokenize: (ids) => model.detokenize(ids, true),
    async dispose() {
      await context.dispose();
      await model.dispose();
    },
  };
}
