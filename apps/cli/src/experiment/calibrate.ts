import { perplexity } from '@layerquant/perplexity';
import { openForEvaluation } from '../commands/eval.js';

/**
 * Evaluation speed of this machine now, for the plan's estimate: the model opened the way every cell opens it, one
 * window run to warm the session up, then one window timed. A fixed constant was wrong by 4x on a loaded machine.
 */
export async function measureEvaluationSpeed(modelDir: string, textPath: string, ids: readonly number[], seqlen: number, threads?: number): Promise<{ tokensPerSecond: number; seconds: number }> {
  const started = performance.now();
  const { model } = await openForEvaluation(modelDir, textPath, { seqlen, allowLongContext: false, ...(threads === undefined ? {} : { threads }) });
  try {
    const windows = Math.min(2, Math.floor(ids.length / seqlen));
    if (windows === 0) return { tokensPerSecond: Number.NaN, seconds: (performance.now() - started) / 1000 };
    const window = ids.slice((windows - 1) * seqlen, windows * seqlen);
    if (windows === 2) await perplexity(model, ids.slice(0, seqlen), { seqlen });
    const timed = await perplexity(model, window, { seqlen });
    return { tokensPerSecond: window.length / timed.seconds, seconds: (performance.now() - started) / 1000 };
  } finally {
    await model.dispose();
  }
}
