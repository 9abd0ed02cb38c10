import { InvalidOptionError, NonFiniteResultError } from '@layerquant/core';
import type { DecoderModel, LayerStreamedModel } from '@layerquant/runtime';
import { nonOverlappingWindows, slidingWindows, type WindowPlan } from './protocols.js';

export type PerplexityProtocol = 'windows' | 'sliding';
export const PERPLEXITY_PROTOCOLS: readonly PerplexityProtocol[] = Object.freeze(['windows', 'sliding']);

export interface PerplexityOptions {
  /** `windows` (default): non-overlapping windows of `seqlen`; `sliding`: the HF sliding window. */
  readonly protocol?: PerplexityProtocol;
  /** Window length of the `windows` protocol. Default 512. */
  readonly seqlen?: number;
  /** Sliding window: max_length (default 1024) and stride (default 512). */
  readonly maxLength?: number;
  readonly stride?: number;
  /** Use only the first maxTokens tokens of the text. */
  readonly maxTokens?: number;
  /** Called after each window (`unit` 'windows'), or after each layer of a layer-streamed model ('layers'). */
  readonly onProgress?: (done: number, total: number, unit: 'windows' | 'layers') => void;
}

export interface PerplexityResult {
  readonly ppl: number;
  /** Mean negative log-likelihood (natural log) under the protocol's weighting. */
  readonly nll: number;
  /** Tokens fed through the model (sum of window lengths). */
  readonly tokens: number;
  /** Positions whose NLL was scored. */
  readonly scoredTokens: number;
  readonly windows: number;
  /**
   * Per window, its weighted NLL (mean NLL of its scored positions times the protocol's weight) and that weight
   * (windows: the scored count): ppl = exp(sum(windowNll) / divisor). For paired statistics over windows.
   */
  readonly windowNll: readonly number[];
  readonly windowWeights: readonly number[];
  readonly seconds: number;
  readonly protocol: PerplexityProtocol;
  /** windows: seqlen; sliding: max_length. */
  readonly seqlen: number;
  readonly stride: number;
}

/**
 * What perplexity needs of a model: per-position NLL of given targets, one window at a time (DecoderModel, the
 * packed-weight model), or of all windows at once, layer by layer (runtime's LayerStreamedModel).
 */
export type NllModel = Pick<DecoderModel, 'tokenNll'> | Pick<LayerStreamedModel, 'windowsNll'>;

export function windowPlan(tokenCount: number, options: PerplexityOptions = {}): WindowPlan {
  const protocol = options.protocol ?? 'windows';
  if (protocol === 'windows') return nonOverlappingWindows(tokenCount, options.seqlen ?? 512);
  if (protocol === 'sliding') {
    const maxLength = options.maxLength ?? 1024;
    return slidingWindows(tokenCount, maxLength, options.stride ?? Math.min(512, maxLength));
  }
  throw new InvalidOptionError('protocol', `"${String(protocol)}" is not a protocol; use ${PERPLEXITY_PROTOCOLS.join(' or ')}`);
}

/** The windows of a run over token ids: the plan and, per window, its ids and next-token targets. */
export interface WindowInputs {
  readonly plan: WindowPlan;
  readonly inputs: readonly { readonly ids: number[]; readonly targets: number[] }[];
}

/** Cuts token ids into the protocol's windows (after `maxTokens`), each with the target of every position. */
export function windowInputs(ids: readonly number[], options: PerplexityOptions = {}): WindowInputs {
  if (options.maxTokens !== undefined && (!Number.isInteger(options.maxTokens) || options.maxTokens < 2)) {
    throw new InvalidOptionError('maxTokens', `${options.maxTokens} must be an integer >= 2`);
  }
  const used = options.maxTokens !== undefined ? ids.slice(0, options.maxTokens) : ids;
  const plan = windowPlan(used.length, options);
  const inputs = plan.windows.map((window) => {
    const ids = used.slice(window.begin, window.end);
    // targets[t] is the token after position t; the last position has none (0, never read).
    const targets = new Array<number>(ids.length).fill(0);
    for (let t = 0; t + 1 < ids.length; t++) targets[t] = ids[t + 1]!;
    return { ids, targets };
  });
  return { plan, inputs };
}

/** Sums the per-window NLLs of a plan into a PerplexityResult (windows added in plan order). */
export class PerplexitySums {
  private weighted = 0;
  private tokens = 0;
  private scoredTokens = 0;
  private readonly windowNll: number[] = [];
  private readonly windowWeights: number[] = [];
  private readonly started = performance.now();

  constructor(
    private readonly plan: WindowPlan,
    private readonly options: PerplexityOptions,
  ) {}

  /** Adds window `index`'s per-position NLL ([T], position t predicting token t + 1 of the window). */
  add(index: number, nll: ArrayLike<number>): void {
    const window = this.plan.windows[index]!;
    let sum = 0;
    for (let p = window.scoreFrom; p < window.end; p++) sum += nll[p - 1 - window.begin]!;
    const scored = window.end - window.scoreFrom;
    // A NaN or infinite loss means the model gave no number: never averaged into a perplexity that looks like one.
    if (!Number.isFinite(sum)) {
      throw new NonFiniteResultError(
        `the loss of window ${index + 1} (tokens ${window.begin}-${window.end})`,
        sum,
        'the model produced non-finite logits; check its weights and config.json (a quantizer plug-in or a damaged checkpoint can cause this)',
      );
    }
    this.weighted += (sum / scored) * window.weight;
    this.windowNll.push((sum / scored) * window.weight);
    this.windowWeights.push(window.weight);
    this.tokens += window.end - window.begin;
    this.scoredTokens += scored;
  }

  result(): PerplexityResult {
    const nll = this.weighted / this.plan.divisor;
    const protocol = this.options.protocol ?? 'windows';
    const seqlen = protocol === 'windows' ? (this.options.seqlen ?? 512) : (this.options.maxLength ?? 1024);
    return Object.freeze({
      ppl: Math.exp(nll),
      nll,
      tokens: this.tokens,
      scoredTokens: this.scoredTokens,
      windows: this.plan.windows.length,
      windowNll: Object.freeze([...this.windowNll]),
      windowWeights: Object.freeze([...this.windowWeights]),
      seconds: (performance.now() - this.started) / 1000,
      protocol,
      seqlen,
      stride: protocol === 'windows' ? seqlen : (this.options.stride ?? Math.min(512, seqlen)),
    });
  }
}

/** Perplexity of a model over token ids; the model runs once per window, the sums are float64. */
export async function perplexity(model: NllModel, ids: readonly number[], options: PerplexityOptions = {}): Promise<PerplexityResult> {
  const { plan, inputs } = windowInputs(ids, options);
  const sums = new PerplexitySums(plan, options);
  const nllOfWindow: (index: number) => Promise<Float32Array> = (() => {
    if ('windowsNll' in model) {
      const all = model.windowsNll(inputs, (done, total) => options.onProgress?.(done, total, 'layers'));
      return async (index) => (await all)[index]!;
    }
    return async (index) => {
      const nll = await model.tokenNll({ ids: inputs[index]!.ids }, inputs[index]!.targets);
      options.onProgress?.(index + 1, plan.windows.length, 'windows');
      return nll;
    };
  })();
  for (let index = 0; index < plan.windows.length; index++) sums.add(index, await nllOfWindow(index));
  return sums.result();
}

/**
 * Where the text comes from: a file, or a dataset name looked up in `datasets` (name -> path), which the
 * application supplies (the CLI passes the fixtures' brown-test and brown-calib).
 */
export function resolveTextPath(source: { text?: string; dataset?: string }, datasets: Readonly<Record<string, string>>): string {
  if (source.text && source.dataset) throw new InvalidOptionError('--text', 'give either --text or --dataset, not both');
  if (source.text) return source.text;
  if (source.dataset) {
    const path = datasets[source.dataset];
    if (!path) throw new InvalidOptionError('--dataset', `"${source.dataset}" is not a built-in dataset; available: ${Object.keys(datasets).join(', ')}`);
    return path;
  }
  throw new InvalidOptionError('--text', `is required: pass a text file, or --dataset with one of ${Object.keys(datasets).join(', ')}`);
}

/** Tokenizes a text (no special tokens, as the reference numbers were computed) and computes its perplexity. */
export async function perplexityOfText(
  model: NllModel,
  tokenizer: { encode(text: string): number[] },
  text: string,
  options: PerplexityOptions = {},
): Promise<PerplexityResult> {
  const ids = tokenizer.encode(text);
  return perplexity(model, ids, options);
}
