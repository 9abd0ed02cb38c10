import { expandMethodList, methodNameHelp } from '@layerquant/allocators';
import { InvalidOptionError, parseConfigList, type OptionValue } from '@layerquant/core';
import { brownCalibPath, datasets } from '@layerquant/datasets';
import { PAPER_BUDGETS, REPORT_METRICS, measureEvaluationSpeed, parseBudgets, prepareGrid, runGrid, type ReportMetric, type ShippedUnit } from '@layerquant/experiment';
import { resolveTextPath } from '@layerquant/perplexity';
import { builtinRegistries, resolveModelPath, type ExportRequest, type PluginRegistries } from '@layerquant/pipeline';
import { basename, resolve } from 'node:path';
import { parseCommandArgs, parseIntegerOption, parseNumberOption, requireString, stringOption, type ParsedArgs } from '../args.js';
import { parseEmbeddingConfigs, parseTargetFormat, shippedPlan, targetFormatRequest } from '../flags/file-target.js';
import type { Command } from '../command.js';
import { experimentPlan, experimentRowJson, formatPlan, formatResultsTable } from '../experiment/render.js';
import { quantizerFlags, quantizerFromFlags, quantizerHelp } from '../flags/quantizer-flags.js';
import { jsonLine, terminalColumns, wrapAtSpaces } from '../output.js';
import { createProgress, createSpinner, fitStderr, formatSeconds } from '../progress.js';
import { refineDoneLine, refinePlanLine, refineRoundLine } from '../flags/refine-flags.js';

/** Over this estimate, a run started on a terminal needs --yes (a script, not on a terminal, proceeds). */
const CONFIRM_SECONDS = 600;

const usage = (plugins: PluginRegistries): string => `layerquant experiment <model-dir> --out <dir> [options]

Runs the paper's comparison: for every budget and method, allocate bits from the model's statistics, quantize
every linear matrix with --quantizer (default hqq), and measure perplexity. Statistics are computed once (or read with --stats) and
cached in <out>/stats/<key>; finished cells are kept in <out>/results.json, so an interrupted run resumes.
Every cache and cell is keyed by the settings it depends on (model content, texts, blocks, seqlen, method and
options, budget, max tokens, quantizer, statistics): a result is reused only under the same settings, and
cells of other settings stay in results.json. Writes results.csv, results.md (table, win/tie/loss, headline;
the current settings' cells) and results.json.

  --methods <list>       method names of the allocator plug-ins: ${methodNameHelp(plugins.allocators.list())}
                         (S = boost stop, M = top_m, 0 = all outliers), other options as :flag=value
                         (sensi-milp-1:factor=3:ablation); bare ids expand to their variants (sensiboost, kurtboost,
                         ablation: the paper's four each; sensi-milp, kurt-milp: top_m 1-3); paper = hqq, mxq and all
                         four variants of each boost and ablation (the default)
  --budgets <list>       bits per weight (default ${PAPER_BUDGETS.join(',')}); uniform and the boosts need a stop
                         of the ladder and take the highest stop at or below a budget between stops (2.8 -> 2.51,
                         marked "at stop 2.51"), the knapsack allocators use the budget itself
  --configs <list>       the config ladder (default: the paper's 12), e.g. b2g64,b3g64,b4g32; statistics are
                         measured for these configs only
  --target-format onnx|gguf  a grid of shipped files: each cell allocates to the bytes of that file (embeddings
                         and lm_head units of the allocation), writes it as \`quantize --format\` does (into a
                         temporary directory) and measures the file itself: a .gguf in llama.cpp (node-llama-cpp),
                         an ONNX export in onnxruntime. The ladder is the format's native one for --quantizer
                         (gguf with --quantizer ggml: llama.cpp's types); the methods must be knapsack allocators
                         (mxq, measured, kld, the milps); results add the file's MiB and bits per weight.
                         Every cell is measured on the grid's tokens (the checkpoint's tokenizer), the same
                         windows for all cells
  --target-sizes <list>  with --target-format: the file sizes of the grid's columns, MiB (instead of --budgets)
  --target-bpws <list>   with --target-format: the same as bits per linear weight of the file
  --embedding-configs <list>|float  with --target-format: embed_tokens' and lm_head's ladder, or float
  --tokenizer-pre <name> with --target-format gguf: llama.cpp's pre-tokenizer name (part of the file's bytes)
  --dataset <name>       evaluation text: ${Object.keys(datasets).join(', ')} (default brown-test)
  --text <file>          evaluation text from a file instead
  --seqlen <n>           perplexity window (default 512)
  --max-tokens <n>       evaluate only the first n tokens of the text
  --stats <dir>          reuse statistics (a \`layerquant sensitivity\` output or a paper-data directory)
  --calib <file>         calibration text of the statistics and of a calibrated quantizer (default: brown-calib)
  --blocks <n>           calibration blocks of 512 tokens (default 128, fewer when the text is shorter)
  --seed <n>             seed of the ablations' random layers (default 42)
  --quantizer <id>       the quantizer of every cell (default hqq); part of every cell's key, so cells of two
                         quantizers never mix. A calibrated one (gptq, baq) quantizes each cell layer by layer on
                         the calibration blocks (--calib, --blocks); with --queue the workers collect the
                         Hessians on their model from the calibration text the job names by content hash
  --stats-quantizer <id> the quantizer the statistics are measured with (fnorm, sensitivity, measured; default:
                         --quantizer's, with its options; hqq gives the authors' tables for any --quantizer)
  --plugin <module>      load allocators, quantizers and metrics from a module (a path or package name;
                         repeatable); with --queue, start the workers with the same --plugin
  --kld                  every cell also measures the KL divergence of its next-token distribution from the
                         unquantized model's on the same windows (mean, 99.9%, same top p, ...; one float pass
                         computes that model's logits once into <out>/kld: scored tokens x vocab x 4 bytes).
                         Part of each cell's key: cells computed without it are not reused for it
  --metric ppl|kld       what results.md's intervals, win/tie/loss and headline and the terminal table's
                         intervals are read by (default ppl; kld needs --kld): the paired bootstrap of mean KLD
  --refine               cells of an allocator that corrects its allocation by measurement (kld) run that
                         correction on the statistics' calibration (--calib, --blocks): their plan, each measured
                         allocation's KLD and the result print as they run; a cell quantizes the corrected allocation
                         only when its measured KLD is not above the additive one's, and records both (--json:
                         refinement). Off by default, so earlier cells keep their keys; part of those cells' keys
                         only when set. With --queue, each worker measures on its own copy of the model (the
                         calibration text travels in Redis) and logs what it kept
  --no-fp                skip the unquantized baseline
  --fresh                ignore results of an earlier run in --out
  --threads <n>          onnxruntime threads (default: one per core)
  --queue <url>          redis://[user:password@]host:port/db: enqueue the statistics and one job per cell on
                         this Redis (BullMQ) for \`layerquant worker\` processes, instead of running them here;
                         shows progress, writes results as cells finish, resumes where the queue is
  --attempts <n>         with --queue: tries per job before it is reported failed (default 3)
  --connect-timeout <s>  with --queue: seconds to wait for Redis at start before an error (default 10)
  --yes                  start a grid estimated at over 10 minutes from a terminal (the plan, cells x windows and
                         the estimated time, is printed first; without a terminal the run proceeds after the plan)
  --json                 one JSON object (docs/json-schema.md): plan, rows and the files written

Quantizers (--quantizer) and their options:
${quantizerHelp(plugins, '  ')}

On a terminal the results print as a table fitted to its width; results.md holds the Markdown report.`;

export const experimentCommand: Command = {
  name: 'experiment',
  summary: "the paper's grid: methods x budgets, quantized and evaluated, as CSV and Markdown",
  usage,
  async run({ argv, stdout, stderr, plugins = builtinRegistries() }) {
    const allocators = plugins.allocators.list();
    const { values, positionals } = parseCommandArgs(argv, {
      out: { type: 'string' },
      methods: { type: 'string' },
      budgets: { type: 'string' },
      dataset: { type: 'string' },
      text: { type: 'string' },
      seqlen: { type: 'string' },
      'max-tokens': { type: 'string' },
      stats: { type: 'string' },
      calib: { type: 'string' },
      blocks: { type: 'string' },
      configs: { type: 'string' },
      seed: { type: 'string' },
      'no-fp': { type: 'boolean' },
      fresh: { type: 'boolean' },
      threads: { type: 'string' },
      yes: { type: 'boolean' },
      queue: { type: 'string' },
      attempts: { type: 'string' },
      'connect-timeout': { type: 'string' },
      quantizer: { type: 'string' },
      'stats-quantizer': { type: 'string' },
      kld: { type: 'boolean' },
      metric: { type: 'string' },
      refine: { type: 'boolean' },
      'target-format': { type: 'string' },
      'target-sizes': { type: 'string' },
      'target-bpws': { type: 'string' },
      'embedding-configs': { type: 'string' },
      'tokenizer-pre': { type: 'string' },
      ...quantizerFlags(plugins),
    });
    const modelDir = resolveModelPath(requireString(positionals[0], 'model-dir', 'layerquant experiment <model-dir> --out <dir>'));
    if (positionals.length > 1) throw new InvalidOptionError('model-dir', `one model directory expected, got ${positionals.length}`);
    const outPath = resolve(requireString(values.out, '--out', 'a directory for results.csv, results.md and the cached statistics'));
    const methods = expandMethodList(stringOption(values, 'methods') ?? 'paper', allocators);
    const targets = shippedTargets(values);
    const budgets = targets ? targets.values : parseBudgets(stringOption(values, 'budgets') ?? PAPER_BUDGETS.join(','));
    const seqlen = parseIntegerOption(stringOption(values, 'seqlen'), '--seqlen', 512, 2);
    const maxTokensText = stringOption(values, 'max-tokens');
    const maxTokens = maxTokensText === undefined ? undefined : parseIntegerOption(maxTokensText, '--max-tokens', 0, seqlen);
    const blocks = parseIntegerOption(stringOption(values, 'blocks'), '--blocks', 128, 1);
    const seed = parseIntegerOption(stringOption(values, 'seed'), '--seed', 42, 0);
    const threadsText = stringOption(values, 'threads');
    const threads = threadsText === undefined ? undefined : parseIntegerOption(threadsText, '--threads', 0, 1);
    const attempts = parseIntegerOption(stringOption(values, 'attempts'), '--attempts', 3, 1);
    const queueUrl = stringOption(values, 'queue');
    // The queue (BullMQ, ioredis: about half a second of imports) is loaded only for --queue.
    const queue = queueUrl === undefined ? undefined : await import('@layerquant/queue');
    // A malformed URL is refused before --out is created (its message shows the URL redacted).
    if (queueUrl !== undefined) queue!.parseQueueUrl(queueUrl);
    const connectTimeoutSeconds = parseNumberOption(stringOption(values, 'connect-timeout'), '--connect-timeout', 10, (n) => n > 0 && n <= 3600);
    const textSource = { text: stringOption(values, 'text'), dataset: stringOption(values, 'dataset') ?? (stringOption(values, 'text') ? undefined : 'brown-test') };
    const textPath = resolveTextPath(textSource, datasets);
    const calibPath = stringOption(values, 'calib') ?? brownCalibPath;
    const calibName = stringOption(values, 'calib') ? basename(calibPath) : 'brown-calib';
    const statsDir = stringOption(values, 'stats');
    const quantizerChoice = { id: stringOption(values, 'quantizer') ?? 'hqq', options: {} as Record<string, OptionValue> };
    quantizerChoice.options = quantizerFromFlags(quantizerChoice.id, values, plugins).options;
    const statsQuantizerId = stringOption(values, 'stats-quantizer');
    // an id nobody registered: UnknownPluginError listing those that are
    if (statsQuantizerId !== undefined) plugins.quantizers.get(statsQuantizerId);
    // the same quantizer keeps its flags' options; another is used with its defaults
    const statisticsQuantizer = statsQuantizerId === undefined || statsQuantizerId === quantizerChoice.id ? quantizerChoice : { id: statsQuantizerId, options: {} };
    const metric = (stringOption(values, 'metric') ?? 'ppl') as ReportMetric;
    if (!REPORT_METRICS.includes(metric)) throw new InvalidOptionError('--metric', `"${metric}" is not a metric; use ${REPORT_METRICS.join(' or ')}`);
    const kld = values.kld === true;
    if (metric === 'kld' && !kld) throw new InvalidOptionError('--metric', 'kld reads the cells\' KL divergence from the unquantized model: add --kld so the cells measure it');
    const refine = values.refine === true;
    const json = Boolean(values.json);
    const interactive = !json && Boolean(process.stderr.isTTY);

    const configsText = stringOption(values, 'configs');
    const ladder = configsText === undefined ? undefined : parseConfigList(configsText, '--configs');
    // A grid of shipped files: the format's plan (exact bytes, native ladders) for the cells' quantizer.
    const request = targets ? targetFormatRequest(targets.format, modelDir, values) : undefined;
    const shipped = targets && request
      ? { request, plan: await shippedPlan(modelDir, request, plugins.quantizers.get(quantizerChoice.id), ladder, parseEmbeddingConfigs(values)), unit: targets.unit }
      : undefined;
    const grid = await prepareGrid({
      modelDir,
      methods,
      budgets,
      textPath,
      seqlen,
      ...(maxTokens === undefined ? {} : { maxTokens }),
      ...(ladder ? { configs: ladder } : {}),
      includeFloat: !values['no-fp'],
      plugins,
      ...(shipped ? { shipped } : {}),
    });
    // On a terminal, where the estimate decides whether --yes is needed, it rests on this machine's speed now: a short
    // calibration (the model loaded, one window timed). Scripts and --json skip it (a resumed run stays instant).
    const measuring = createSpinner('measuring the evaluation speed for the plan', interactive);
    const speed = interactive ? await measureEvaluationSpeed(modelDir, textPath, grid.ids.slice(0, grid.tokens), seqlen, threads).finally(() => measuring.stop()) : undefined;
    const plan = experimentPlan({ cells: grid.cells, cellsDone: 0, tokens: grid.tokens, seqlen, params: grid.summary.params, linearParams: grid.summary.linearParams, ...(speed ? { tokensPerSecond: speed.tokensPerSecond } : {}) });
    if (!json) process.stderr.write(`${fitStderr(formatPlan(plan).trimEnd())}\n`);
    if (plan.estimatedSeconds > CONFIRM_SECONDS && !values.yes && process.stdin.isTTY && process.stderr.isTTY && !json) {
      throw new InvalidOptionError('--yes', `the grid would take about ${plan.estimatedSeconds >= 3600 ? `${(plan.estimatedSeconds / 3600).toFixed(1)} h` : formatSeconds(plan.estimatedSeconds)}; rerun with --yes to start it, or choose a smaller grid (--methods, --budgets, --max-tokens)`);
    }
    const started = performance.now();
    const statsProgress = createProgress('statistics', interactive);
    const progress = createProgress('experiment', interactive);
    // In process, the first cell loads the model after the statistics: a spinner until its first event.
    let loading: ReturnType<typeof createSpinner> | undefined;
    const result = await runGrid(grid, {
      outDir: outPath,
      fresh: Boolean(values.fresh),
      statistics: { ...(statsDir ? { statsDir } : {}), calibrationPath: calibPath, calibrationName: calibName, blocks },
      seed,
      quantizer: quantizerChoice,
      statisticsQuantizer,
      ...(kld ? { kld } : {}),
      ...(refine
        ? {
            refine,
            onRefine: {
              plan: (cell, plan) => stderr(`${fitStderr(`experiment: refine ${cell}: ${refinePlanLine(plan)}`)}\n`),
              round: (cell, round) => stderr(`${fitStderr(`experiment: refine ${cell}: ${refineRoundLine(round)}`)}\n`),
              done: (cell, report) => stderr(`${fitStderr(`experiment: refine ${cell}: ${refineDoneLine(report)}`)}\n`),
            },
          }
        : {}),
      metric,
      ...(threads ? { threads } : {}),
      ...(queueUrl ? { connect: () => queue!.connectCoordinator(queueUrl, { attempts, connectTimeoutSeconds, log: (line) => stderr(`${fitStderr(line)}\n`) }) } : {}),
      onNote: (line) => stderr(`${fitStderr(`experiment: ${line}`)}\n`),
      onStatistics: (step, done, total) =>
        statsProgress.update(
          done,
          total,
          step === 'fnorm' ? `${statisticsQuantizer.id} error of every matrix x ${ladder?.length ?? 12} configs` : step === 'measured' ? 'measured block error, every matrix x config, layer by layer' : step === 'sensitivity' ? 'activation sensitivity, layer by layer' : `${step} table`,
        ),
      onStatisticsReady: (source) => {
        statsProgress.done(`from ${source}`);
        if (!queueUrl) loading = createSpinner('loading the model', interactive);
      },
      onEvent: (event) => {
        loading?.stop();
        if (event.kind === 'window' && event.done !== undefined && event.total) {
          progress.update(event.done, event.total, `windows of cell ${event.cell}/${event.cells}: ${event.label}`);
        } else if (event.kind === 'cell-done' && event.result && interactive) {
          progress.done();
          const row = event.result.row;
          process.stderr.write(`${fitStderr(`  cell ${event.cell}/${event.cells} ${event.label}: perplexity ${row.ppl.toFixed(4)}${row.kld ? `, mean KLD ${row.kld.mean.toFixed(5)}` : ''}, ${row.shipped ? `${row.shipped.MiB.toFixed(3)} MiB ${row.shipped.format} file, ` : ''}${row.bpp.toFixed(4)} bits/weight (paper), ${formatSeconds(row.seconds)}`)}\n`);
        }
      },
    }).finally(() => {
      loading?.stop();
      progress.done();
    });
    const { rows, files } = result;
    if (json) {
      stdout(jsonLine('experiment', { model: modelDir, out: result.outDir, text: resolve(textPath), plan, rows: rows.map((r) => experimentRowJson(r, rows)), metric, files, statistics: result.statistics, seconds: (performance.now() - started) / 1000 }));
      return;
    }
    stdout(formatResultsTable(rows, terminalColumns(), metric));
    stdout(`\n${wrapAtSpaces(`wrote ${files.join(', ')}`, terminalColumns(), 2)}\n`);
  },
};

/**
 * --target-format with --target-sizes or --target-bpws: the format, the targets and their unit; undefined without
 * --target-format. Errors name the flag: a target list without a format, a format without targets, --budgets beside
 * targets, a format option without its format.
 */
function shippedTargets(values: ParsedArgs['values']): { format: ExportRequest['format']; values: number[]; unit: ShippedUnit } | undefined {
  const sizes = stringOption(values, 'target-sizes');
  const bpws = stringOption(values, 'target-bpws');
  if (stringOption(values, 'target-format') === undefined) {
    const flag = sizes !== undefined ? '--target-sizes' : bpws !== undefined ? '--target-bpws' : stringOption(values, 'embedding-configs') !== undefined ? '--embedding-configs' : stringOption(values, 'tokenizer-pre') !== undefined ? '--tokenizer-pre' : undefined;
    if (flag) throw new InvalidOptionError(flag, 'belongs to a grid of shipped files: give its format, --target-format onnx or gguf');
    return undefined;
  }
  const format = parseTargetFormat(values)!;
  if (stringOption(values, 'budgets') !== undefined) throw new InvalidOptionError('--budgets', 'a grid of shipped files has target sizes as its columns: give --target-sizes <MiB,...> (or --target-bpws) instead of --budgets');
  if (sizes !== undefined && bpws !== undefined) throw new InvalidOptionError('--target-bpws', 'give either --target-sizes or --target-bpws, not both');
  if (sizes === undefined && bpws === undefined) throw new InvalidOptionError('--target-sizes', `--target-format ${format} needs the grid's file sizes: --target-sizes <MiB,...> or --target-bpws <bits,...>`);
  const flag = sizes !== undefined ? '--target-sizes' : '--target-bpws';
  const list = (sizes ?? bpws)!.split(',').map((t) => t.trim()).filter(Boolean).map((t) => parseNumberOption(t, flag, Number.NaN, (n) => Number.isFinite(n) && n > 0));
  if (list.length === 0) throw new InvalidOptionError(flag, 'give at least one target, e.g. 11.5,13.6');
  if (new Set(list).size !== list.length) throw new InvalidOptionError(flag, `${list.join(',')} names a target twice`);
  return { format, values: list, unit: sizes !== undefined ? 'MiB' : 'bits per weight' };
}
