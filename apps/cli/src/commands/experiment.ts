import { methodNameHelp } from '@layerquant/allocators';
import { InvalidOptionError, checkContextLength, configName, parseConfigList, type OptionValue } from '@layerquant/core';
import { brownCalibPath, datasets } from '@layerquant/datasets';
import { readEvaluationText, resolveTextPath } from '@layerquant/perplexity';
import { loadTokenizer, inspectModel, openOutputDirectory, removeStaleTemporaries, writeTextAtomic } from '@layerquant/tensor-io';
import { basename, join, resolve } from 'node:path';
import { parseCommandArgs, parseIntegerOption, requireString, stringOption } from '../args.js';
import type { Command } from '../command.js';
import { builtinRegistries, quantizerSettings, type PluginRegistries } from '../plugins.js';
import { quantizerFlags, quantizerFromFlags, quantizerHelp } from './quantize.js';
import { checkBudget } from '../experiment/allocate-method.js';
import { PAPER_BUDGETS, parseBudgets, parseMethods, tablesNeeded } from '../experiment/grid.js';
import { fileContentHash, modelContentHash } from '../experiment/keys.js';
import { planCells, type PlannedCell } from '../experiment/plan.js';
import { formatResultsCsv, formatResultsMarkdown, type ExperimentRow } from '../experiment/report.js';
import { ResultsStore } from '../experiment/results-store.js';
import { runExperiment } from '../experiment/run-experiment.js';
import { ensureStatistics } from '../experiment/statistics.js';
import { connectCoordinator, type Coordinator } from '../queue/coordinator.js';
import { createProgress, createSpinner, fitStderr, formatSeconds } from '../progress.js';
import { resolveModelPath } from '../model-path.js';
import { jsonLine, terminalColumns, wrapAtSpaces } from '../output.js';
import { experimentPlan, experimentRowJson, formatPlan, formatResultsTable } from '../experiment/render.js';
import { measureEvaluationSpeed } from '../experiment/calibrate.js';

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
  --dataset <name>       evaluation text: ${Object.keys(datasets).join(', ')} (default brown-test)
  --text <file>          evaluation text from a file instead
  --seqlen <n>           perplexity window (default 512)
  --max-tokens <n>       evaluate only the first n tokens of the text
  --stats <dir>          reuse statistics (a \`layerquant sensitivity\` output or a paper-data directory)
  --calib <file>         calibration text for activation sensitivity (default: built-in brown-calib)
  --blocks <n>           calibration blocks of 512 tokens (default 128, fewer when the text is shorter)
  --seed <n>             seed of the ablations' random layers (default 42)
  --quantizer <id>       the quantizer of every cell (default hqq; the fnorm statistics stay HQQ's, as the
                         authors measure them); part of every cell's key, so cells of two quantizers never mix
  --plugin <module>      load allocators, quantizers and metrics from a module (a path or package name;
                         repeatable); with --queue, start the workers with the same --plugin
  --no-fp                skip the unquantized baseline
  --fresh                ignore results of an earlier run in --out
  --threads <n>          onnxruntime threads (default: one per core)
  --queue <url>          redis://[user:password@]host:port/db: enqueue the statistics and one job per cell on
                         this Redis (BullMQ) for \`layerquant worker\` processes, instead of running them here;
                         shows progress, writes results as cells finish, resumes where the queue is
  --attempts <n>         with --queue: tries per job before it is reported failed (default 3)
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
      quantizer: { type: 'string' },
      ...quantizerFlags(plugins),
    });
    const modelDir = resolveModelPath(requireString(positionals[0], 'model-dir', 'layerquant experiment <model-dir> --out <dir>'));
    if (positionals.length > 1) throw new InvalidOptionError('model-dir', `one model directory expected, got ${positionals.length}`);
    const outPath = resolve(requireString(values.out, '--out', 'a directory for results.csv, results.md and the cached statistics'));
    const methods = parseMethods(stringOption(values, 'methods') ?? 'paper', allocators);
    const budgets = parseBudgets(stringOption(values, 'budgets') ?? PAPER_BUDGETS.join(','));
    const seqlen = parseIntegerOption(stringOption(values, 'seqlen'), '--seqlen', 512, 2);
    const maxTokensText = stringOption(values, 'max-tokens');
    const maxTokens = maxTokensText === undefined ? undefined : parseIntegerOption(maxTokensText, '--max-tokens', 0, seqlen);
    const blocks = parseIntegerOption(stringOption(values, 'blocks'), '--blocks', 128, 1);
    const seed = parseIntegerOption(stringOption(values, 'seed'), '--seed', 42, 0);
    const threadsText = stringOption(values, 'threads');
    const threads = threadsText === undefined ? undefined : parseIntegerOption(threadsText, '--threads', 0, 1);
    const attempts = parseIntegerOption(stringOption(values, 'attempts'), '--attempts', 3, 1);
    const queueUrl = stringOption(values, 'queue');
    const textSource = { text: stringOption(values, 'text'), dataset: stringOption(values, 'dataset') ?? (stringOption(values, 'text') ? undefined : 'brown-test') };
    const textPath = resolveTextPath(textSource, datasets);
    const calibPath = stringOption(values, 'calib') ?? brownCalibPath;
    const calibName = stringOption(values, 'calib') ? basename(calibPath) : 'brown-calib';
    const statsDir = stringOption(values, 'stats');
    const quantizerChoice = { id: stringOption(values, 'quantizer') ?? 'hqq', options: {} as Record<string, OptionValue> };
    const { quantizer, options: quantizerOptions } = quantizerFromFlags(quantizerChoice.id, values, plugins);
    quantizerChoice.options = quantizerOptions;
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
    const cells = methods.length * budgets.length + (values['no-fp'] ? 0 : 1);
    const tokens = maxTokens === undefined ? ids.length : Math.min(maxTokens, ids.length);
    // On a terminal, where the estimate decides whether --yes is needed, it rests on this machine's speed now: a short
    // calibration (the model loaded, one window timed). Scripts and --json skip it (a resumed run stays instant).
    const measuring = createSpinner('measuring the evaluation speed for the plan', interactive);
    const speed = interactive ? await measureEvaluationSpeed(modelDir, textPath, ids.slice(0, tokens), seqlen, threads).finally(() => measuring.stop()) : undefined;
    const plan = experimentPlan({ cells, cellsDone: 0, tokens, seqlen, params: summary.params, linearParams: summary.linearParams, ...(speed ? { tokensPerSecond: speed.tokensPerSecond } : {}) });
    if (!json) process.stderr.write(`${fitStderr(formatPlan(plan).trimEnd())}\n`);
    if (plan.estimatedSeconds > CONFIRM_SECONDS && !values.yes && process.stdin.isTTY && process.stderr.isTTY && !json) {
      throw new InvalidOptionError('--yes', `the grid would take about ${plan.estimatedSeconds >= 3600 ? `${(plan.estimatedSeconds / 3600).toFixed(1)} h` : formatSeconds(plan.estimatedSeconds)}; rerun with --yes to start it, or choose a smaller grid (--methods, --budgets, --max-tokens)`);
    }
    const out = await openOutputDirectory(outPath, 'experiment');
    let coordinator: Coordinator | undefined;
    try {
      const outDir = out.path;
      for (const name of out.removedTemporaries) stderr(`${fitStderr(`experiment: removed ${join(outDir, name)}, a temporary left by a process that no longer runs`)}\n`);
      removeStaleTemporaries(join(outDir, 'stats'));
      const store = await ResultsStore.open(join(outDir, 'results.json'), Boolean(values.fresh));
      for (const line of store.notes) stderr(`${fitStderr(`experiment: ${line}`)}\n`);
      const modelHash = await modelContentHash(modelDir);
      const textHash = await fileContentHash(textPath);
      if (queueUrl) coordinator = await connectCoordinator(queueUrl, { attempts, log: (line) => stderr(`${fitStderr(line)}\n`) });

      const statsProgress = createProgress('statistics', interactive);
      const resolved = await ensureStatistics({
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
        onNote: (line) => stderr(`${fitStderr(`experiment: ${line}`)}\n`),
        ...(coordinator ? { compute: coordinator.statisticsComputer({ modelDir, modelHash }) } : {}),
      });
      statsProgress.done(`from ${resolved.source}`);

      const planned = planCells({ model: modelHash, text: textHash, seqlen, maxTokens: maxTokens ?? null, seed, ...(ladder ? { configs: ladder.map(configName) } : {}), quantizer: quantizerSettings(quantizer, quantizerOptions) }, methods, budgets, !values['no-fp'], resolved.key);
      for (const line of store.explain(planned)) stderr(`${fitStderr(`experiment: ${line}`)}\n`);
      const context = {
        model: summary.architecture === 'LlamaForCausalLM' ? basename(modelDir) : `${basename(modelDir)} (${summary.architecture})`,
        text: basename(textPath),
        tokens: maxTokens !== undefined ? Math.min(maxTokens, ids.length) : ids.length,
        protocol: `non-overlapping windows of ${seqlen}`,
        statsSource: resolved.source,
      };
      const save = async () => {
        const rows = store.rows(planned);
        await store.save(planned, { model: modelDir, text: textPath, tokens: ids.length, seqlen, maxTokens: maxTokens ?? null, stats: resolved.source.replace(/ \((cached|computed)\)$/, ''), seed, ...(ladder ? { configs: ladder.map(configName) } : {}) });
        await writeTextAtomic(join(outDir, 'results.csv'), formatResultsCsv(rows));
        await writeTextAtomic(join(outDir, 'results.md'), formatResultsMarkdown(rows, context));
      };
      const settingsOf = new Map(planned.map((p: PlannedCell) => [p.spec.key, p.settings]));
      const started = performance.now();
      const cellContext = { modelName: basename(modelDir), stats: resolved.stats, ids, seqlen, ...(maxTokens === undefined ? {} : { maxTokens }), seed, ...(ladder ? { configs: ladder } : {}), quantizer };
      if (coordinator) {
        await coordinator.runCells({
          planned,
          modelDir,
          modelHash,
          text: { path: textPath, hash: textHash },
          statsKey: resolved.key,
          stats: resolved.stats,
          context: cellContext,
          quantizer: quantizerChoice,
          done: store.reusable(planned),
          onResult: async (result) => {
            store.add(result, settingsOf.get(result.key)!);
            await save();
          },
        });
      } else {
        const progress = createProgress('experiment', interactive);
        const loading = createSpinner('loading the model', interactive);
        await runExperiment({
          modelDir,
          cells: planned.map((p) => p.spec),
          ...cellContext,
          // The registry's allocators (--plugin's included); queue workers load the same --plugin modules.
          allocators,
          ...(threads ? { threads } : {}),
          done: store.reusable(planned),
          onEvent: (event) => {
            loading.stop();
            if (event.kind === 'window' && event.done !== undefined && event.total) {
              progress.update(event.done, event.total, `windows of cell ${event.cell}/${event.cells}: ${event.label}`);
            } else if (event.kind === 'cell-done' && event.result && interactive) {
              progress.done();
              const row = event.result.row;
              process.stderr.write(`${fitStderr(`  cell ${event.cell}/${event.cells} ${event.label}: perplexity ${row.ppl.toFixed(4)}, ${row.bpp.toFixed(4)} bits/weight (paper), ${formatSeconds(row.seconds)}`)}\n`);
            }
          },
          onCell: async (result) => {
            store.add(result, settingsOf.get(result.key)!);
            await save();
          },
        });
        loading.stop();
        progress.done();
      }
      await save();
      const rows: ExperimentRow[] = store.rows(planned);
      const files = ['results.csv', 'results.md', 'results.json'].map((f) => join(outDir, f));
      if (json) {
        stdout(jsonLine('experiment', { model: modelDir, out: outDir, text: resolve(textPath), plan, rows: rows.map((r) => experimentRowJson(r, rows)), files, statistics: resolved.source, seconds: (performance.now() - started) / 1000 }));
        return;
      }
      stdout(formatResultsTable(rows));
      stdout(`\n${wrapAtSpaces(`wrote ${files.join(', ')}`, terminalColumns(), 2)}\n`);
    } finally {
      await coordinator?.close();
      out.release();
    }
  },
};
