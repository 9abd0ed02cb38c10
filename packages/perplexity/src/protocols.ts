import { InvalidDataError, InvalidOptionError } from '@layerquant/core';

/**
 * One forward window: tokens [begin, end) are fed; the NLL of positions [scoreFrom, end) is scored
 * (absolute token indices; a position p is predicted by the logits at p - 1, so scoreFrom > begin).
 */
export interface Window {
  readonly begin: number;
  readonly end: number;
  readonly scoreFrom: number;
  /** The weight the protocol gives this window's mean NLL (sliding: trg_len; windows: the scored count). */
  readonly weight: number;
}

/** The windows of a protocol and what the weighted NLL sum is divided by. */
export interface WindowPlan {
  readonly windows: readonly Window[];
  /** ppl = exp(sum over windows of meanNll * weight / divisor). */
  readonly divisor: number;
}

/**
 * The default protocol: non-overlapping windows of `seqlen` tokens, the tail that does not fill a window dropped,
 * loss over the seqlen - 1 predicted tokens of each window; ppl = exp(total NLL / scored tokens).
 */
export function nonOverlappingWindows(tokenCount: number, seqlen: number): WindowPlan {
  checkLength('seqlen', seqlen, 2);
  const count = Math.floor(tokenCount / seqlen);
  if (count === 0) {
    throw new InvalidDataError('text', `has ${tokenCount} tokens, fewer than one window of seqlen ${seqlen}; use a longer text or a smaller --seqlen`);
  }
  const windows = Array.from({ length: count }, (_, i) => ({ begin: i * seqlen, end: (i + 1) * seqlen, scoreFrom: i * seqlen + 1, weight: seqlen - 1 }));
  return { windows, divisor: count * (seqlen - 1) };
}

/**
 * The Hugging Face sliding window as the authors run it (transformers v4.2.2 perplexity guide, used by
 * lm-quant-toolkit's eval_ppl): for i = 0, stride, 2*stride, ... < N: feed [max(i + stride - maxLength, 0),
 * min(i + stride, N)), score its last trg_len = end - i labels (the first window loses its first label to the
 * shift), weight the window's mean NLL by trg_len, and divide the sum by the last end (= N).
 */
export function slidingWindows(tokenCount: number, maxLength: number, stride: number): WindowPlan {
  checkLength('maxLength', maxLength, 2);
  checkLength('stride', stride, 1);
  if (stride > maxLength) throw new InvalidOptionError('stride', `${stride} is larger than maxLength ${maxLength}; choose stride <= maxLength`);
  if (tokenCount < 2) throw new InvalidDataError('text', `has ${tokenCount} tokens; perplexity needs at least 2`);
  const windows: Window[] = [];
  for (let i = 0; i < tokenCount; i += stride) {
    const begin = Math.max(i + stride - maxLength, 0);
    const end = Math.min(i + stride, tokenCount);
    const targetLength = end - i;
    const scoreFrom = Math.max(end - targetLength, begin + 1);
    if (scoreFrom >= end) continue; // a one-token first window predicts nothing
    windows.push({ begin, end, scoreFrom, weight: targetLength });
  }
  return { windows, divisor: tokenCount };
}

function checkLength(option: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new InvalidOptionError(option, `${value} must be an integer >= ${min}`);
}
