import { InvalidDataError, InvalidOptionError } from '@layerquant/core';
import { KldAccumulator, type KldStatistics, type WindowKld } from './kl-divergence.js';
import { PerplexitySums, windowInputs, type PerplexityOptions, type PerplexityResult, type WindowInputs } from './perplexity.js';
import type { Window } from './protocols.js';

/** Logits [T, vocab] of one window and the per-position NLL the model's perplexity uses (from the same run). */
export interface ScoredLogits {
  readonly logits: Float32Array;
  readonly nll: Float32Array;
}

/**
 * What a KL divergence needs of a model: logits and NLL one window at a time (the runtime's DecoderModel, export's
 * packed-weight and ONNX models), or of all windows, handed over one at a time (the runtime's layer-streamed model).
 */
export type LogitsModel =
  | { logitsAndNll(input: { readonly ids: ArrayLike<number> }, targets: ArrayLike<number>): Promise<ScoredLogits> }
  | {
      windowsLogits(
        windows: readonly { readonly ids: ArrayLike<number>; readonly targets: ArrayLike<number> }[],
        consume: (index: number, scores: ScoredLogits) => void | Promise<void>,
        onLayer?: (done: number, total: number) => void,
      ): Promise<void>;
    };

/** Whether a model can give its logits (every model layerquant evaluates can; a plug-in's NllModel may not). */
export function hasLogits(model: object): model is LogitsModel {
  return 'logitsAndNll' in model || 'windowsLogits' in model;
}

/** The positions of a window whose next token is scored: rows [first, first + count) of its logits. */
export function scoredRows(window: Window): { first: number; count: number } {
  return { first: window.scoreFrom - 1 - window.begin, count: window.end - window.scoreFrom };
}

/**
 * Runs a model over the windows of token ids and hands each window's logits and NLL to `consume` in window order,
 * one window at a time (what a base file is written from, and what a KL divergence compares).
 */
export async function forEachWindowLogits(
  model: LogitsModel,
  windows: WindowInputs,
  options: Pick<PerplexityOptions, 'onProgress'>,
  consume: (index: number, window: Window, scores: ScoredLogits, targets: readonly number[]) => void | Promise<void>,
): Promise<void> {
  const { plan, inputs } = windows;
  if ('windowsLogits' in model) {
    let next = 0;
    await model.windowsLogits(
      inputs,
      async (index, scores) => {
        if (index !== next) throw new InvalidDataError('model', `handed window ${index} where window ${next} was due; windows must come in order`);
        next++;
        await consume(index, plan.windows[index]!, scores, inputs[index]!.targets);
      },
      (done, total) => options.onProgress?.(done, total, 'layers'),
    );
    if (next !== plan.windows.length) throw new InvalidDataError('model', `handed ${next} of ${plan.windows.length} windows`);
  } else {
    for (const [index, input] of inputs.entries()) {
      await consume(index, plan.windows[index]!, await model.logitsAndNll({ ids: input.ids }, input.targets), input.targets);
      options.onProgress?.(index + 1, plan.windows.length, 'windows');
    }
  }
}

/** Where the base model's logits of each window's scored positions come from (a base file, or memory in tests). */
export interface KldBaseReader {
  readonly vocab: number;
  /** The windows the base was computed on ([begin, end, scoreFrom] each). */
  readonly windows: readonly (readonly [number, number, number])[];
  /** Logits [rows, vocab] of window `index`'s scored positions. */
  window(index: number): Promise<Float32Array>;
}

export interface KlDivergenceResult {
  readonly statistics: KldStatistics;
  /** Per window KLD sums and counts, for the paired bootstrap. */
  readonly windows: WindowKld;
  /** The model's perplexity from the same run, exactly what `perplexity` gives it. */
  readonly perplexity: PerplexityResult;
  readonly seconds: number;
}

/**
 * The KL divergence of a model from a base on the windows of token ids (the same windows the base was computed on,
 * checked), with the model's perplexity from the same run: the model runs once per window, the base's logits are
 * read one window at a time.
 */
export async function klDivergence(model: LogitsModel, base: KldBaseReader, ids: readonly number[], options: PerplexityOptions = {}): Promise<KlDivergenceResult> {
  const started = performance.now();
  const windows = windowInputs(ids, options);
  checkSameWindows(base.windows, windows.plan.windows);
  const accumulator = new KldAccumulator();
  const sums = new PerplexitySums(windows.plan, options);
  await forEachWindowLogits(model, windows, options, async (index, window, scores, targets) => {
    const { first, count } = scoredRows(window);
    const vocab = base.vocab;
    if (scores.logits.length !== (window.end - window.begin) * vocab) {
      throw new InvalidDataError('model', `gave ${scores.logits.length} logits for a window of ${window.end - window.begin} tokens; the base has a vocabulary of ${vocab}, so the model and the base disagree on the vocabulary`);
    }
    const baseRows = await base.window(index);
    accumulator.addWindow(baseRows, scores.logits.subarray(first * vocab, (first + count) * vocab), vocab, targets.slice(first, first + count));
    sums.add(index, scores.nll);
  });
  return Object.freeze({
    statistics: accumulator.statistics(),
    windows: accumulator.windows(),
    perplexity: sums.result(),
    seconds: (performance.now() - started) / 1000,
  });
}

/** A base computed on other windows is refused (the protocol, seqlen or text differ). */
export function checkSameWindows(baseWindows: readonly (readonly [number, number, number])[], windows: readonly Window[]): void {
  const differs = baseWindows.length !== windows.length || windows.some((w, i) => {
    const b = baseWindows[i]!;
    return b[0] !== w.begin || b[1] !== w.end || b[2] !== w.scoreFrom;
  });
  if (differs) {
    throw new InvalidOptionError('windows', `the base was computed on ${baseWindows.length} windows and this evaluation has ${windows.length} (or they start at other tokens); use the same text, protocol, --seqlen and --max-tokens as the base`);
  }
}

/**
 * A base held in memory (the browser, tests, small calibration sets): the base model's logits of every scored
 * position of every window, with its perplexity from the same run. Holds tokens x vocab float32 values: for a
 * whole text or a large vocabulary use a base file (kld-base.ts), which streams.
 */
export async function kldBaseInMemory(
  model: LogitsModel,
  vocab: number,
  ids: readonly number[],
  options: PerplexityOptions = {},
): Promise<KldBaseReader & { readonly perplexity: PerplexityResult }> {
  const windows = windowInputs(ids, options);
  const sums = new PerplexitySums(windows.plan, options);
  const rows: Float32Array[] = [];
  await forEachWindowLogits(model, windows, options, (index, window, scores) => {
    const { first, count } = scoredRows(window);
    if (scores.logits.length !== (window.end - window.begin) * vocab) {
      throw new InvalidDataError('model', `gave ${scores.logits.length} logits for a window of ${window.end - window.begin} tokens, not ${vocab} per token`);
    }
    rows.push(scores.logits.slice(first * vocab, (first + count) * vocab));
    sums.add(index, scores.nll);
  });
  return Object.freeze({
    vocab,
    windows: windows.plan.windows.map((w) => [w.begin, w.end, w.scoreFrom] as const),
    window: async (index: number) => {
      const out = rows[index];
      if (!out) throw new InvalidOptionError('window', `${index} is not a window of this base (it holds ${rows.length})`);
      return out;
    },
    perplexity: sums.result(),
  });
}
