import { perplexity } from '@layerquant/perplexity';
import { openForEvaluation } from '@layerquant/pipeline';

/**
 * Evaluation speed of this machine now, for the plan's estimate: the model opened the way every cell opens it and
 * its first window timed (session warm-up included, so the estimate errs long, never short by much). A fixed
 * constant was wrong by 4x on a loaded machine.
 */
export async function measureEvaluationSpeed(modelDir: string, textPath: string, ids: readonly number[], seqlen: number, threads?: number): Promise<{ tokensPerSecond: number; seconds: number }> {
  const started = performance.now();
  if (ids.length < seqlen) return { tokensPerSecond: Number.NaN, seconds: 0 };
  const { opened } = await openForEvaluation(modelDir, textPath, { seqlen, allowLongContext: false, ...(threads === undefined ? {} : { threads }) });
  try {
    const timed = await perplexity(opened.model, ids.slice(0, seqlen), { seqlen });
    return { tokensPerSecond: seqlen / timed.seconds, seconds: (performance.now() - started) / 1000 };
  } finally {
    await opened.dispose();
  }
}
