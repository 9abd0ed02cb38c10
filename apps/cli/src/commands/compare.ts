import { InvalidOptionError } from '@layerquant/core';
import { datasets } from '@layerquant/datasets';
import { hasLogits, klDivergence, perplexity, resolveTextPath, type KldStatistics, type WindowKld } from '@layerquant/perplexity';
import { parseCommandArgs, parseIntegerOption, stringOption } from '../args.js';
import type { Command } from '../command.js';
import { pairedBootstrap, pairedBootstrapKld, verdict, type PairedInterval } from '@layerquant/perplexity';
import { KLD_OPTIONS, KLD_USAGE, openKldBase, parseKldFlags } from '../flags/kld-flags.js';
import { EVALUATION_KINDS, builtinRegistries, directorySizes, openForEvaluation, resolveModelPath, type DirectorySizes } from '@layerquant/pipeline';
import { absolutePath, jsonLine, renderTable, terminalColumns, wrapAtSpaces } from '../output.js';
import { createProgress, createSpinner, formatSeconds } from '../progress.js';

interface Evaluated {
  readonly dir: string;
  readonly layout: DirectorySizes;
  readonly perplexity: number;
  readonly windows: number;
  readonly tokens: number;
  readonly seconds: number;
  readonly windowNll: readonly number[];
  readonly windowWeights: readonly number[];
  /** With --kld-base: the KL divergence from the float model, and its per-window sums. */
  readonly kld?: { readonly statistics: KldStatistics; readonly windows: WindowKld };
}

const fixed = (value: number, digits: number): string => (Number.isFinite(value) ? value.toFixed(digits) : '-');

/** The KLD columns of a model's row (compare --kld-base). */
function kldCells(r: Evaluated, interval: PairedInterval | undefined): string[] {
  if (!r.kld) return ['-', '-', '-', '-'];
  const s = r.kld.statistics;
  return [
    `${fixed(s.kld.mean, 5)} ± ${fixed(s.kld.error, 5)}`,
    fixed(s.kld.quantiles['0.999']!, 4),
    `${fixed(100 * s.sameTop.value, 2)}%`,
    interval ? `${fixed(interval.difference, 5)} [${fixed(interval.low, 5)}, ${fixed(interval.high, 5)}]${verdict(interval) === 'tie' ? '' : ` ${verdict(interval)}`}` : 'baseline',
  ];
}

export const compareCommand: Command = {
  name: 'compare',
  summary: 'perplexity of several models on the same windows, with paired intervals, size on disk and bits per weight',
  usage: [
    'layerquant compare <dir> <dir> [<dir> ...] --dataset brown-test | --text <file> [options] [--json]',
    '',
    'Evaluates every directory (a model, a quantized checkpoint, an ONNX export) on the same non-overlapping windows',
    'of the text, as `layerquant eval` does each one, and prints side by side: perplexity, its difference from the',
    'first directory with a 95% paired bootstrap interval over the windows (the experiment report\'s: 2000',
    'resamples, seed 42; "better"/"worse" only when the interval excludes 0), the linear matrices\' size on disk and',
    'bits per weight (as stored, and in the paper\'s accounting for a quantized checkpoint).',
    '',
    'Options:',
    `  --dataset <name>       built-in text: ${Object.keys(datasets).join(', ')}`,
    '  --text <file>          a UTF-8 text file instead',
    '  --seqlen <n>           window length (default 512)',
    '  --max-tokens <n>       use only the first n tokens of the text',
    '  --threads <n>          onnxruntime intra-op threads (default: one per core)',
    '  --allow-long-context   run a --seqlen above a model\'s max_position_embeddings',
    ...KLD_USAGE,
    '                         (compare adds columns mean KLD ± error, 99.9% KLD, same top p, and ΔKLD vs 1 with its',
    '                         paired interval)',
    '  --json                 one JSON object (docs/json-schema.md): one entry per directory',
  ].join('\n'),
  async run({ argv, stdout, stderr, plugins = builtinRegistries() }) {
    const { values, positionals } = parseCommandArgs(argv, {
      text: { type: 'string' },
      dataset: { type: 'string' },
      seqlen: { type: 'string' },
      'max-tokens': { type: 'string' },
      threads: { type: 'string' },
      'allow-long-context': { type: 'boolean' },
      ...KLD_OPTIONS,
    });
    const kldFlags = parseKldFlags(values);
    if (positionals.length < 2) throw new InvalidOptionError('dir', `compare needs at least two directories, got ${positionals.length}; for one, use \`layerquant eval\``);
    const dirs = positionals.map((p) => resolveModelPath(p));
    const seqlen = parseIntegerOption(stringOption(values, 'seqlen'), '--seqlen', 512, 2);
    const maxTokensText = stringOption(values, 'max-tokens');
    const maxTokens = maxTokensText === undefined ? undefined : parseIntegerOption(maxTokensText, '--max-tokens', 0, 2);
    const threadsText = stringOption(values, 'threads');
    const threads = threadsText === undefined ? undefined : parseIntegerOption(threadsText, '--threads', 0, 1);
    const textPath = resolveTextPath({ text: stringOption(values, 'text'), dataset: stringOption(values, 'dataset') }, datasets);
    const interactive = !values.json && Boolean(process.stderr.isTTY);
    // Sizes first: a directory that is not a model fails before any evaluation.
    const layouts = await Promise.all(dirs.map((dir) => directorySizes(dir)));

    const results: Evaluated[] = [];
    let kldBaseInfo: { model: string; file: string; bytes: number; computed: boolean; seconds: number } | undefined;
    for (const [i, dir] of dirs.entries()) {
      const loading = createSpinner(`loading ${i + 1}/${dirs.length} ${dir}`, interactive);
      let opened: Awaited<ReturnType<typeof openForEvaluation>>;
      try {
        opened = await openForEvaluation(dir, textPath, { seqlen, allowLongContext: values['allow-long-context'] === true, quantizers: plugins.quantizers, ...(threads === undefined ? {} : { threads }) });
      } finally {
        loading.stop();
      }
      try {
        const ids = opened.tokenizer.encode(opened.text);
        const progress = createProgress(`model ${i + 1}/${dirs.length}`, interactive);
        const windowOptions = { seqlen, ...(maxTokens === undefined ? {} : { maxTokens }) };
        const onProgress = (done: number, total: number) => progress.update(done, total, 'windows of this model');
        let result: Awaited<ReturnType<typeof perplexity>>;
        let kld: Evaluated['kld'];
        if (kldFlags) {
          const { model, kind } = opened.opened;
          if (!hasLogits(model)) throw new InvalidOptionError('--kld-base', `${dir} is evaluated as ${EVALUATION_KINDS[kind]}, which gives no logits to compare`);
          const base = await openKldBase(kldFlags, ids, windowOptions, threads === undefined ? {} : { threads }, (line) => {
            if (!values.json) stderr(`compare: ${line}\n`);
          });
          try {
            const measured = await klDivergence(model, base.base, ids, { ...windowOptions, onProgress });
            result = measured.perplexity;
            kld = { statistics: measured.statistics, windows: measured.windows };
            kldBaseInfo ??= { model: kldFlags.floatModelDir, file: base.base.path, bytes: base.base.bytes, computed: base.computed, seconds: base.seconds };
          } finally {
            await base.base.close();
          }
        } else {
          result = await perplexity(opened.opened.model, ids, { ...windowOptions, onProgress });
        }
        progress.done();
        results.push({
          dir, layout: layouts[i]!, perplexity: result.ppl, windows: result.windows, tokens: result.tokens, seconds: result.seconds,
          windowNll: result.windowNll, windowWeights: result.windowWeights, ...(kld ? { kld } : {}),
        });
      } finally {
        await opened.opened.dispose();
      }
    }
    const first = results[0]!;
    const intervals: Array<PairedInterval | undefined> = results.map((r, i) => {
      if (i === 0) return undefined;
      if (r.windows !== first.windows) {
        throw new InvalidOptionError(r.dir, `was evaluated on ${r.windows} windows and ${first.dir} on ${first.windows}: their tokenizers differ, so the windows cannot be paired`);
      }
      return pairedBootstrap({ nll: r.windowNll, weights: r.windowWeights }, { nll: first.windowNll, weights: first.windowWeights });
    });
    const kldIntervals: Array<PairedInterval | undefined> = results.map((r, i) => (i > 0 && r.kld && first.kld ? pairedBootstrapKld(r.kld.windows, first.kld.windows) : undefined));
    const described = (interval: PairedInterval) => ({ difference: interval.difference, low: interval.low, high: interval.high, level: interval.level, verdict: verdict(interval) });

    if (values.json) {
      stdout(jsonLine('compare', {
        text: absolutePath(textPath),
        protocol: 'windows',
        seqlen,
        windows: first.windows,
        tokens: first.tokens,
        baseline: first.dir,
        ...(kldBaseInfo ? { kldBase: kldBaseInfo } : {}),
        models: results.map((r, i) => {
          const interval = intervals[i];
          const kldInterval = kldIntervals[i];
          return {
            model: r.dir,
            layout: r.layout.layout,
            perplexity: r.perplexity,
            versusFirst: interval ? described(interval) : null,
            ...(r.kld ? { kld: r.kld.statistics, kldVersusFirst: kldInterval ? described(kldInterval) : null } : {}),
            sizes: r.layout.sizes,
            seconds: r.seconds,
          };
        }),
      }));
      return;
    }
    const rows = results.map((r, i) => {
      const interval = intervals[i];
      const s = r.layout.sizes;
      return [
        String(i + 1),
        r.dir,
        r.layout.layout,
        fixed(r.perplexity, 4),
        interval ? `${fixed(interval.difference, 3)} [${fixed(interval.low, 3)}, ${fixed(interval.high, 3)}]${verdict(interval) === 'tie' ? '' : ` ${verdict(interval)}`}` : 'baseline',
        ...(kldFlags ? kldCells(r, kldIntervals[i]) : []),
        s.shipped ? fixed(s.shipped.MiB, 2) : '-',
        s.shipped ? fixed(s.shipped.bitsPerWeight, 4) : '-',
        s.diskMiB === null ? '-' : fixed(s.diskMiB, 2),
        s.diskBitsPerWeight === null ? '-' : fixed(s.diskBitsPerWeight, 4),
        s.paperBitsPerWeight === null ? '-' : fixed(s.paperBitsPerWeight, 4),
      ];
    });
    // Prose broken at spaces to the terminal's width (never inside a number); the table keeps its cells whole.
    stdout(`${wrapAtSpaces(`perplexity on ${textPath}: ${first.windows} windows of ${seqlen} tokens, the same for every model; Δ against model 1, 95% paired bootstrap interval`, terminalColumns(), 2)}\n`);
    stdout(renderTable(
      [
        { header: '#', align: 'right' },
        { header: 'model' },
        { header: 'layout' },
        { header: 'perplexity', align: 'right' },
        { header: 'Δppl vs 1 [95% CI]', align: 'right' },
        ...(kldFlags ? [{ header: 'mean KLD', align: 'right' as const }, { header: '99.9% KLD', align: 'right' as const }, { header: 'same top', align: 'right' as const }, { header: 'ΔKLD vs 1 [95% CI]', align: 'right' as const }] : []),
        { header: 'MiB shipped', align: 'right' },
        { header: 'bits/w shipped', align: 'right' },
        { header: 'MiB disk', align: 'right' },
        { header: 'bits/w disk', align: 'right' },
        { header: 'bits/w paper', align: 'right' },
      ],
      rows,
    ));
    if (kldBaseInfo) stdout(`${wrapAtSpaces(`KLD: of each model's next-token distribution from ${kldBaseInfo.model}'s on the same scored tokens, nats per token (mean ± its error, 99.9th percentile); same top: how often both rank the same token first`, terminalColumns(), 2)}\n`);
    stdout(`${wrapAtSpaces('sizes: shipped = every byte of the file a user ships (ONNX: onnx/*, embeddings and lm_head included), bits per linear weight; disk and paper = the linear matrices', terminalColumns(), 2)}\n`);
    stdout(`${wrapAtSpaces(`evaluation time: ${results.map((r, i) => `model ${i + 1} ${formatSeconds(r.seconds)}`).join(', ')}`, terminalColumns(), 2)}\n`);
  },
};
