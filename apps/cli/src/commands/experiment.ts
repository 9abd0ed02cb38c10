import { methodNameHelp } from '@layerquant/allocators';
import { InvalidOptionError, checkContextLength, configName, parseConfigList } from '@layerquant/core';
import { brownCalibPath, datasets } from '@layerquant/datasets';
import { readEvaluationText, resolveTextPath } from '@layerquant/perplexity';
import { loadTokenizer, inspectModel, writeTextAtomic } from '@layerquant/tensor-io';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { parseCommandArgs, parseIntegerOption, requireString, stringOption } from '../args.js';
import type { Command } from '../command.js';
import { builtinRegistries, type PluginRegistries } from '../plugins.js';
import { quantizerFlags, quantizerFromFlags } from './quantize.js';
import { checkBudget } from '../experiment/allocate-method.js';
import { PAPER_BUDGETS, parseBudgets, parseMethods, tablesNeeded } from '../experiment/grid.js';
import { formatResultsCsv, formatResultsMarkdown, type ExperimentRow } from '../experiment/report.js';
import { runExperiment } from '../experiment/run-experiment.js';
import { ensureStatistics } from '../experiment/statistics.js';
import { createProgress, formatSeconds } from '../progress.js';

const usage = (plugins: PluginRegistries): string => `layerquant experiment <model-dir> --out <dir> [options]

Runs the paper's comparison: for every budget and method, allocate bits from the model's statistics, quantize
every linear matrix with --quantizer (default hqq), and measure perplexity. Statistics are computed once (or read with --stats) and
cached in <out>/stats; finished cells are kept in <out>/results.json, so an interrupted run resumes.
Writes results.csv, results.md (table, win/tie/loss, headline) and results.json.

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
  --dataset <name>       evaluation text: ${Object.keys(datasets).join(', ')} (default brown-test)
  --text <file>          evaluation text from a file instead
  --seqlen <n>           perplexity window (default 512)
  --max-tokens <n>       evaluate only the first n tokens of the text
  --stats <dir>          reuse statistics (a \`layerquant sensitivity\` output or a paper-data directory)
  --calib <file>         calibration text for activation sensitivity (default: built-in brown-calib)
  --blocks <n>           calibration blocks of 512 tokens (default 128, fewer when the text is shorter)
  --quantizer <id>       the quantizer of every matrix: ${plugins.quantizers.ids().join(', ')} (default hqq)
  --plugin <module>      load allocators/quantizers from a module (a path or package name; repeatable)
  --seed <n>             seed of the ablations' random layers (default 42)
  --no-fp                skip the unquantized baseline
  --fresh                ignore results of an earlier run in --out
  --threads <n>          onnxruntime threads (default: one per core)
  --json                 one JSON object: rows and the files written`;

interface SavedResults {
  readonly settings: Record<string, unknown>;
  readonly rows: ExperimentRow[];
}

export const experimentCommand: Command = {
  name: 'experiment',
  summary: "the paper's grid: methods x budgets, quantized and evaluated, as CSV and Markdown",
  usage,
  async run({ argv, stdout, plugins = builtinRegistries() }) {
    const allocators = plugins.allocators.list();
    const { values, positionals } = parseCommandArgs(argv, {
      out: { type: 'string' },
      quantizer: { type: 'string' },
      ...quantizerFlags(plugins),
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
    });
    const modelDir = resolve(requireString(positionals[0], 'model-dir', 'layerquant experiment <model-dir> --out <dir>'));
    if (positionals.length > 1) throw new InvalidOptionError('model-dir', `one model directory expected, got ${positionals.length}`);
    const outDir = resolve(requireString(values.out, '--out', 'a directory for results.csv, results.md and the cached statistics'));
    const methods = parseMethods(stringOption(values, 'methods') ?? 'paper', allocators);
    const { quantizer, options: quantizerOptions } = quantizerFromFlags(stringOption(values, 'quantizer') ?? 'hqq', values, plugins);
    const budgets = parseBudgets(stringOption(values, 'budgets') ?? PAPER_BUDGETS.join(','));
    const seqlen = parseIntegerOption(stringOption(values, 'seqlen'), '--seqlen', 512, 2);
    const maxTokensText = stringOption(values, 'max-tokens');
    const maxTokens = maxTokensText === undefined ? undefined : parseIntegerOption(maxTokensText, '--max-tokens', 0, seqlen);
    const blocks = parseIntegerOption(stringOption(values, 'blocks'), '--blocks', 128, 1);
    const seed = parseIntegerOption(stringOption(values, 'seed'), '--seed', 42, 0);
    const threadsText = stringOption(values, 'threads');
    const threads = threadsText === undefined ? undefined : parseIntegerOption(threadsText, '--threads', 0, 1);
    const textSource = { text: stringOption(values, 'text'), dataset: stringOption(values, 'dataset') ?? (stringOption(values, 'text') ? undefined : 'brown-test') };
    const textPath = resolveTextPath(textSource, datasets);
    const calibPath = stringOption(values, 'calib') ?? brownCalibPath;
    const calibName = stringOption(values, 'calib') ? basename(calibPath) : 'brown-calib';
    const statsDir = stringOption(values, 'stats');
    const json = Boolean(values.json);
    const interactive = !json && Boolean(process.stderr.isTTY);

    const configsText = stringOption(values, 'configs');
    const ladder = configsText === undefined ? undefined : parseConfigList(configsText, '--configs');
    for (const method of methods) for (const budget of budgets) checkBudget(method, budget, ladder, allocators, true);
    // Validate the model before any long step (a bad directory fails here with its own error).
    const summary = await inspectModel(modelDir);
    checkContextLength(seqlen, summary, '--seqlen');
    const text = await readEvaluationText(textPath);
    const tokenizer = await loadTokenizer(modelDir);
    const ids = tokenizer.encode(text);
    await mkdir(outDir, { recursive: true });

    const statsProgress = createProgress('statistics', interactive);
    const { stats, source } = await ensureStatistics({
      modelDir,
      ...(statsDir ? { statsDir } : {}),
      cacheDir: join(outDir, 'stats'),
      needs: tablesNeeded(methods, allocators),
      calibrationPath: calibPath,
      calibrationName: calibName,
      blocks,
      seqlen: 512,
      ...(ladder ? { configs: ladder } : {}),
      ...(threads ? { threads } : {}),
      onStep: (step, done, total) =>
        statsProgress.update(done, total, step === 'fnorm' ? `HQQ error of every matrix x ${ladder?.length ?? 12} configs` : step === 'measured' ? 'measured block error, every matrix x config, layer by layer' : 'activation sensitivity, layer by layer'),
    });
    statsProgress.done(`from ${source}`);

    const settings = {
      model: modelDir, text: textPath, tokens: ids.length, seqlen, maxTokens: maxTokens ?? null, stats: source.replace(/ \((cached|computed)\)$/, ''), seed,
      ...(ladder ? { configs: ladder.map(configName) } : {}),
      // Results of another quantizer are not resumed into this run's table.
      ...(quantizer.id === 'hqq' && Object.keys(quantizerOptions).length === 0 ? {} : { quantizer: quantizer.id, quantizerOptions }),
    };
    const resultsJson = join(outDir, 'results.json');
    let done: ExperimentRow[] = [];
    if (!values.fresh && existsSync(resultsJson)) {
      const saved = JSON.parse(await readFile(resultsJson, 'utf8')) as SavedResults;
      if (JSON.stringify(saved.settings) === JSON.stringify(settings)) done = saved.rows.map((r) => ({ ...r, extraMemoryPercent: r.extraMemoryPercent ?? Number.NaN }));
    }
    const context = {
      model: summary.architecture === 'LlamaForCausalLM' ? basename(modelDir) : `${basename(modelDir)} (${summary.architecture})`,
      text: basename(textPath),
      tokens: maxTokens !== undefined ? Math.min(maxTokens, ids.length) : ids.length,
      protocol: `non-overlapping windows of ${seqlen}`,
      statsSource: source,
    };
    const save = async (rows: readonly ExperimentRow[]) => {
      await writeTextAtomic(resultsJson, `${JSON.stringify({ settings, rows }, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 1)}\n`);
      await writeTextAtomic(join(outDir, 'results.csv'), formatResultsCsv(rows));
      await writeTextAtomic(join(outDir, 'results.md'), formatResultsMarkdown(rows, context));
    };

    const progress = createProgress('experiment', interactive);
    const started = performance.now();
    const rows = await runExperiment({
      modelDir,
      modelName: basename(modelDir),
      stats,
      methods,
      budgets,
      ids,
      seqlen,
      ...(maxTokens === undefined ? {} : { maxTokens }),
      includeFloat: !values['no-fp'],
      seed,
      ...(ladder ? { configs: ladder } : {}),
      ...(threads ? { threads } : {}),
      allocators,
      quantizer,
      done,
      onEvent: (event) => {
        if (event.kind === 'window' && event.done !== undefined && event.total) {
          progress.update((event.cell - 1) * event.total + event.done, event.cells * event.total, event.label);
        } else if (event.kind === 'cell-done' && event.row && interactive) {
          progress.done();
          process.stderr.write(`  ${event.label.padEnd(32)} ppl ${event.row.ppl.toFixed(4)}  ${event.row.bpp.toFixed(4)} bpp  ${formatSeconds(event.row.seconds)}\n`);
        }
      },
      onRows: save,
    });
    progress.done();
    await save(rows);
    const files = ['results.csv', 'results.md', 'results.json'].map((f) => join(outDir, f));
    if (json) {
      stdout(`${JSON.stringify({ rows, files, statistics: source, seconds: (performance.now() - started) / 1000 }, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v))}\n`);
      return;
    }
    stdout(formatResultsMarkdown(rows, context));
    stdout(`\nwrote ${files.join(', ')}\n`);
  },
};
