import { InvalidOptionError } from '@layerquant/core';
import type { KldStatistics } from '@layerquant/perplexity';
import { defaultKldCacheDir, floatKldBase, resolveModelPath, type EvaluationOptions, type FloatKldBase } from '@layerquant/pipeline';
import type { PerplexityOptions } from '@layerquant/perplexity';
import { resolve } from 'node:path';
import type { ParsedArgs } from '../args.js';
import { stringOption } from '../args.js';
import { formatBytes, formatSeconds } from '../progress.js';

/** --kld-base and --kld-cache, as eval, compare and experiment take them. */
export const KLD_OPTIONS = {
  'kld-base': { type: 'string' },
  'kld-cache': { type: 'string' },
} as const;

export const KLD_USAGE = [
  '  --kld-base <float-dir> also the KL divergence of each model\'s next-token distribution from this float model\'s on',
  '                         the same tokens (llama.cpp\'s statistics: mean KLD ± error, median, percentiles, same top p,',
  '                         RMS Δp, PPL ratio). The float model\'s logits are computed once (one float pass, tokens x',
  '                         vocab x 4 bytes on disk, said before it starts) and cached by model, tokenizer, text and',
  '                         window hashes',
  `  --kld-cache <dir>      where those base files go (default ${defaultKldCacheDir().replace(process.env.HOME ?? '\0', '~')})`,
];

export interface KldFlags {
  readonly floatModelDir: string;
  readonly cacheDir: string;
}

export function parseKldFlags(values: ParsedArgs['values']): KldFlags | undefined {
  const base = stringOption(values, 'kld-base');
  const cache = stringOption(values, 'kld-cache');
  if (base === undefined) {
    if (cache !== undefined) throw new InvalidOptionError('--kld-cache', 'applies with --kld-base only (the float model the KL divergence is measured against)');
    return undefined;
  }
  return { floatModelDir: resolveModelPath(base), cacheDir: resolve(cache ?? defaultKldCacheDir()) };
}

/** The base of a command's evaluation, with its cost said on `note` before a float pass starts. */
export async function openKldBase(flags: KldFlags, ids: readonly number[], options: PerplexityOptions, evaluation: EvaluationOptions, note: (line: string) => void): Promise<FloatKldBase> {
  const opened = await floatKldBase(flags.floatModelDir, ids, options, {
    cacheDir: flags.cacheDir,
    evaluation,
    onCompute: (file, bytes) => note(`KLD base: computing the logits of ${flags.floatModelDir} (one float pass) into ${file}, ${formatBytes(bytes)}`),
  });
  note(opened.computed ? `KLD base: computed in ${formatSeconds(opened.seconds)}` : `KLD base: reusing ${opened.base.path}`);
  return opened;
}

const f = (value: number, digits = 6) => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const pct = (value: number, digits = 3) => (Number.isFinite(value) ? `${(100 * value).toFixed(digits)}%` : '-');

/** llama.cpp's KL-divergence lines (tools/perplexity's), as rows of `formatRows`. */
export function kldRows(s: KldStatistics): Array<[string, string]> {
  const q = s.kld.quantiles;
  const dp = s.deltaP.quantiles;
  return [
    ['PPL(Q)', `${f(s.ppl.value)} ± ${f(s.ppl.error)}`],
    ['PPL(base)', `${f(s.pplBase.value)} ± ${f(s.pplBase.error)}`],
    ['cor(ln PPL(Q), ln PPL(base))', pct(s.nllCorrelation, 2)],
    ['mean ln(PPL(Q)/PPL(base))', `${f(s.lnPplRatio.value)} ± ${f(s.lnPplRatio.error)}`],
    ['mean PPL(Q)/PPL(base)', `${f(s.pplRatio.value)} ± ${f(s.pplRatio.error)}`],
    ['mean PPL(Q)-PPL(base)', `${f(s.pplDifference.value)} ± ${f(s.pplDifference.error)}`],
    ['mean KLD', `${f(s.kld.mean)} ± ${f(s.kld.error)}`],
    ['maximum KLD', f(s.kld.max)],
    ['99.9% KLD', f(q['0.999']!)],
    ['99.0% KLD', f(q['0.99']!)],
    ['median KLD', f(s.kld.median)],
    ['10.0% KLD', f(q['0.1']!)],
    ['1.0% KLD', f(q['0.01']!)],
    ['minimum KLD', f(s.kld.min)],
    ['mean Δp', `${pct(s.deltaP.mean)} ± ${pct(s.deltaP.error)}`],
    ['maximum Δp', pct(s.deltaP.max)],
    ['99.9% Δp', pct(dp['0.999']!)],
    ['99.0% Δp', pct(dp['0.99']!)],
    ['median Δp', pct(s.deltaP.median)],
    ['1.0% Δp', pct(dp['0.01']!)],
    ['0.1% Δp', pct(dp['0.001']!)],
    ['minimum Δp', pct(s.deltaP.min)],
    ['RMS Δp', `${pct(s.rmsDeltaP.value)} ± ${pct(s.rmsDeltaP.error)}`],
    ['same top p', `${pct(s.sameTop.value)} ± ${pct(s.sameTop.error)}`],
  ];
}
