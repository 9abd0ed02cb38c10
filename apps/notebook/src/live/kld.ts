import { InvalidOptionError } from '@layerquant/core';
import { klDivergence, kldBaseInMemory, kldSummary, type KldBaseReader, type LogitsModel, type PerplexityResult } from '@layerquant/perplexity/browser';
import type { KldAnswer, PerplexityAnswer, Progress } from './protocol.js';

// The KL divergence of the page's quantized model from its float model on the live windows (worker side), with
// @layerquant/perplexity's code, as `layerquant eval --kld-base` computes it: the float model's logits of the windows
// are computed once per page session and held in memory (the page has no files to cache them in), and reused by
// every allocation measured after.

/** The most the float logits may take in the page: scored tokens x vocab x 4 bytes. */
export const PAGE_KLD_BASE_LIMIT_BYTES = 512 * 2 ** 20;

/** Bytes of the float logits of `windows` windows of `seqlen` tokens (every position but the last scored). */
export function pageKldBaseBytes(windows: number, seqlen: number, vocab: number): number {
  return windows * (seqlen - 1) * vocab * 4;
}

const answer = (r: PerplexityResult): PerplexityAnswer => ({ ppl: r.ppl, nll: r.nll, windows: r.windows, tokens: r.tokens, seconds: r.seconds });

/** The first `windows` windows of a base computed on more (the windows are the text's first, so a prefix is the same windows). */
function firstWindows(base: KldBaseReader, windows: number): KldBaseReader {
  if (windows === base.windows.length) return base;
  return { vocab: base.vocab, windows: base.windows.slice(0, windows), window: (index) => base.window(index) };
}

interface HeldBase {
  readonly seqlen: number;
  readonly windows: number;
  readonly base: KldBaseReader & { readonly perplexity: PerplexityResult };
  readonly seconds: number;
}

/**
 * The float logits the page holds: the largest window count asked for so far; a smaller count reads its first
 * windows, a larger one computes them again (and replaces them).
 */
export class PageKldBase {
  private held: HeldBase | undefined;

  async kld(
    request: { readonly windows: number; readonly seqlen: number },
    ids: readonly number[],
    vocab: number,
    models: { readonly float: () => Promise<LogitsModel>; readonly quantized: () => Promise<LogitsModel> },
    progress: (p: Progress) => void,
  ): Promise<KldAnswer> {
    const bytes = pageKldBaseBytes(request.windows, request.seqlen, vocab);
    if (bytes > PAGE_KLD_BASE_LIMIT_BYTES) {
      const most = Math.max(1, Math.floor(PAGE_KLD_BASE_LIMIT_BYTES / pageKldBaseBytes(1, request.seqlen, vocab)));
      throw new InvalidOptionError('windows', `the float model's logits of ${request.windows} windows would take ${(bytes / 2 ** 20).toFixed(0)} MiB in the page (at most ${PAGE_KLD_BASE_LIMIT_BYTES / 2 ** 20} MiB): KL divergence is measured on at most ${most} window${most === 1 ? '' : 's'} here; \`layerquant eval --kld-base\` measures the whole text`);
    }
    const options = { seqlen: request.seqlen, maxTokens: request.windows * request.seqlen };
    let computed = false;
    if (!this.held || this.held.seqlen !== request.seqlen || this.held.windows < request.windows) {
      this.held = undefined;
      const started = performance.now();
      const float = await models.float();
      const base = await kldBaseInMemory(float, vocab, ids, { ...options, onProgress: (done, total) => progress({ done, total, label: `fp32 logits, window ${done} of ${total} (computed once)` }) });
      this.held = { seqlen: request.seqlen, windows: request.windows, base, seconds: (performance.now() - started) / 1000 };
      computed = true;
    }
    const held = this.held;
    const quantized = await models.quantized();
    const result = await klDivergence(quantized, firstWindows(held.base, request.windows), ids, { ...options, onProgress: (done, total) => progress({ done, total, label: `quantized logits, window ${done} of ${total}` }) });
    return {
      summary: kldSummary(result.statistics),
      tokens: result.statistics.tokens,
      perplexity: answer(result.perplexity),
      ...(held.windows === request.windows ? { floatPerplexity: answer(held.base.perplexity) } : {}),
      seconds: result.seconds,
      base: { computed, seconds: computed ? held.seconds : 0, bytes: pageKldBaseBytes(held.windows, held.seqlen, vocab), windows: held.windows },
    };
  }
}
