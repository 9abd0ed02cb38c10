#!/usr/bin/env node
// Writes public/data/notebook.json, everything the notebook page cannot compute in the browser:
// model facts and tensor list (`layerquant inspect --json` + the checkpoint headers), the statistics tables
// (fnorm.csv with kurtosis, sensitivity.csv from `layerquant sensitivity`) and perplexity per method and budget
// (results.json from `layerquant experiment`). Missing CLI output falls back to the PyTorch oracles shipped with
// the model, and the JSON says which source each part came from. See ../README.md.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { ALLOCATOR_PLUGINS, parseFnormCsv, parseMeasuredCsv, parseMethodName, parseSensitivityCsv } from '@layerquant/allocators';
import { BUDGET_STOPS, InvalidDataError, InvalidOptionError, MissingFileError, memoryMB } from '@layerquant/core';
import { referenceTorchPath, shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { openCheckpoint } from '@layerquant/tensor-io';

const appDir = fileURLToPath(new URL('..', import.meta.url));
const repoDir = resolve(appDir, '../..');
const cliBin = resolve(repoDir, 'apps/cli/dist/bin.js');
const usage = `pnpm --filter notebook precompute [--model <dir>] [--stats <dir>] [--results <results.json>] [--out <file>]

  --model    model directory (default: the shipped llama-brown-26m)
  --stats    directory written by \`layerquant sensitivity <model> --out <dir>\` (fnorm.csv, sensitivity.csv);
             default: the shipped PyTorch oracles (source "oracles")
  --results  results.json written by \`layerquant experiment\`; default: oracles.json's perplexity table
  --out      output file (default: public/data/notebook.json)`;

// `pnpm --filter notebook precompute -- --stats dir` forwards the `--` too; drop it.
const argv = process.argv.slice(2);
const { values } = parseArgs({
  args: argv[0] === '--' ? argv.slice(1) : argv,
  options: {
    model: { type: 'string' },
    stats: { type: 'string' },
    results: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(usage);
  process.exit(0);
}

// pnpm runs scripts in the package directory; paths given by a user are relative to where they typed.
const cwd = process.env.INIT_CWD ?? process.cwd();
const modelDir = values.model ? resolve(cwd, values.model) : shippedModelDir;
const outFile = values.out ? resolve(cwd, values.out) : join(appDir, 'public/data/notebook.json');
// The JSON is committed and shown on a public page: it names paths inside the repository relative to its root and
// never a path of the machine that computed it (a directory outside the repository is named by its last part only).
const shown = (path) => {
  const inside = relative(repoDir, path);
  if (isAbsolute(inside) || inside.startsWith('..')) return `${basename(path)} (outside the repository)`;
  return inside || '.';
};

/** Strings of the data that name an absolute path (a machine's) or an issue number: none may reach the page. */
function privateText(value, at = 'notebook.json') {
  if (typeof value === 'string') return /(?:^|[\s('"`])(?:\/[A-Za-z]|[A-Za-z]:\\)|\bissues? #?\d+/i.test(value) ? [`${at}: ${value.slice(0, 120)}`] : [];
  if (Array.isArray(value)) return value.flatMap((v, i) => privateText(v, `${at}[${i}]`));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => privateText(v, `${at}.${k}`));
  return [];
}

async function inspectWithCli(dir) {
  if (!existsSync(cliBin)) {
    throw new MissingFileError(cliBin, 'the layerquant CLI is not built; run `pnpm turbo run build --filter=layerquant` first');
  }
  const { stdout } = await promisify(execFile)(process.execPath, [cliBin, 'inspect', dir, '--json'], { maxBuffer: 16 << 20 });
  return JSON.parse(stdout);
}

async function tensorList(dir) {
  const checkpoint = await openCheckpoint(dir);
  try {
    return checkpoint.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape], bytes: t.byteLength, file: basename(t.file) }));
  } finally {
    await checkpoint.close();
  }
}

async function readText(path, hint) {
  if (!existsSync(path)) throw new MissingFileError(path, hint);
  return readFile(path, 'utf8');
}

/**
 * Method names of the experiment grid and of oracles.json as {method, options}, parsed by the allocator plug-ins
 * (@layerquant/allocators' parseMethodName): `hqq` (uniform), `mxq`, `sensiboost-2-1` (boost stop 2, top_m 1;
 * 0 = all), `ablation-kurtboost-3-0`, `sensi-milp-1`, `measured`, ...; options are those the name sets.
 */
function methodFromName(name, source) {
  let spec;
  try {
    spec = parseMethodName(name, ALLOCATOR_PLUGINS, 'method');
  } catch (error) {
    throw new InvalidDataError(source, `unknown method "${name}": ${error instanceof Error ? error.message : String(error)}`);
  }
  return { method: spec.allocator, options: Object.fromEntries(spec.explicit.map((key) => [key, spec.options[key]])) };
}

function withExtraMemory(rows) {
  const uniform = new Map(rows.filter((r) => r.method === 'uniform').map((r) => [r.budget, r.memoryMB]));
  return rows.map((r) => {
    if (r.extraMemoryPercent !== undefined && r.extraMemoryPercent !== null) return r;
    const base = uniform.get(r.budget);
    return { ...r, extraMemoryPercent: base ? 100 * (r.memoryMB / base - 1) : null };
  });
}

function oracleResults(oracles, modelName, linearParams) {
  return withExtraMemory(
    oracles.table.map((row) => ({
      model: modelName,
      ...methodFromName(row.method, 'oracles.json'),
      budget: row.budget,
      bpp: row.bpp,
      memoryMB: memoryMB(row.bpp, linearParams),
      ppl: row.ppl,
      seconds: null,
      ...(row.objective === undefined ? {} : { objective: row.objective }),
    })),
  );
}

const RESULT_FIELDS = ['method', 'bpp', 'memoryMB'];
/** A results.json row's perplexity: `perplexity` (results.json version 3), `ppl` (version 2 and merged files). */
const rowPerplexity = (row) => row.perplexity ?? row.ppl;
/** Rows of the unquantized model: the fp32 reference line, not a point of the grid. */
const FLOAT_METHODS = new Set(['fp', 'fp32', 'fp16', 'float', 'none']);

/** Option names as the allocators spell them (the CLI may write its flags' snake_case). */
const OPTION_NAMES = { boost_stop: 'boostStop', top_m: 'topM', 'boost-stop': 'boostStop', 'top-m': 'topM' };

/** A row's method and options: named by the grid (`sensiboost-2-1`), or an allocator id with an options object. */
function methodOfRow(row, source) {
  if (row.options && typeof row.options === 'object' && !/-\d+(-\d+)?(:.*)?$/.test(row.method)) {
    const options = Object.fromEntries(Object.entries(row.options).map(([key, value]) => [OPTION_NAMES[key] ?? key, value]));
    return { method: row.method === 'hqq' ? 'uniform' : row.method, options };
  }
  return methodFromName(row.method, source);
}

function cliResults(json, path) {
  const rows = Array.isArray(json) ? json : (json.rows ?? json.results);
  if (!Array.isArray(rows) || rows.length === 0) throw new InvalidDataError(path, 'has no result rows; expected the results.json of `layerquant experiment`');
  for (const [i, row] of rows.entries()) {
    for (const name of RESULT_FIELDS) {
      if (row[name] === undefined) throw new InvalidDataError(`${path} row ${i}`, `missing field "${name}"`);
    }
    if (rowPerplexity(row) === undefined) throw new InvalidDataError(`${path} row ${i}`, 'missing field "perplexity"');
  }
  const floatRows = rows.filter((r) => FLOAT_METHODS.has(r.method));
  const quantized = rows
    .filter((r) => !FLOAT_METHODS.has(r.method))
    .map((r, i) => ({
      model: r.model,
      ...methodOfRow(r, `${path} row ${i}`),
      budget: r.budget,
      bpp: r.bpp,
      memoryMB: r.memoryMB,
      ...(Number.isFinite(r.packedBytes) ? { packedBytes: r.packedBytes } : {}),
      ppl: rowPerplexity(r),
      seconds: r.seconds ?? null,
      extraMemoryPercent: Number.isFinite(r.extraMemoryPercent) ? r.extraMemoryPercent : null,
    }));
  return { rows: withExtraMemory(quantized), floatRow: floatRows[0] };
}

/** An fp32 perplexity the experiment may record beside its rows. */
function floatPerplexityOf(json) {
  if (Array.isArray(json)) return undefined;
  for (const key of ['fp32Ppl', 'fp32Perplexity', 'fpPpl', 'floatPpl']) if (Number.isFinite(json[key])) return json[key];
  return undefined;
}


async function main() {
  const inspect = await inspectWithCli(modelDir);
  const tensors = await tensorList(modelDir);
  const modelName = basename(modelDir);
  const oracles = JSON.parse(await readText(join(shippedOraclesDir, 'oracles.json'), 'the shipped oracles are missing'));

  const statsDir = values.stats ? resolve(cwd, values.stats) : shippedOraclesDir;
  const statsHint = 'run `layerquant sensitivity <model> --out <dir>` and pass that directory with --stats';
  const fnormCsv = await readText(join(statsDir, 'fnorm.csv'), statsHint);
  const sensitivityCsv = await readText(join(statsDir, 'sensitivity.csv'), statsHint);
  // Parse now with the same functions the page uses, so a bad table fails here and not in a reader's browser.
  const fnorm = parseFnormCsv(fnormCsv, join(statsDir, 'fnorm.csv'));
  parseSensitivityCsv(sensitivityCsv, join(statsDir, 'sensitivity.csv'));
  // measured.csv (layerquant sensitivity --measured) lets the page run the `measured` allocator too.
  const measuredPath = join(statsDir, 'measured.csv');
  const measuredCsv = existsSync(measuredPath) ? await readText(measuredPath, statsHint) : undefined;
  if (measuredCsv !== undefined) parseMeasuredCsv(measuredCsv, measuredPath);
  if (fnorm.rows.every((r) => r.kurtosis === undefined)) {
    throw new InvalidDataError(join(statsDir, 'fnorm.csv'), 'has no kurtosis column; the notebook plots kurtosis from it');
  }

  let results;
  let fp;
  let perplexityDataset = 'brown-test@512';
  let allocationStats;
  if (values.results) {
    const path = resolve(cwd, values.results);
    const json = JSON.parse(await readText(path, 'run `layerquant experiment` and pass its results.json with --results'));
    const { rows, floatRow } = cliResults(json, path);
    results = rows;
    const settings = Array.isArray(json) ? undefined : json.settings;
    allocationStats = typeof settings?.stats === 'string' ? settings.stats : undefined;
    if (settings?.text && settings.seqlen) {
      perplexityDataset = `${basename(settings.text).replace(/\.txt$/, '')}@${settings.seqlen}${settings.maxTokens ? `, first ${settings.maxTokens} tokens` : ''}`;
    }
    const floatPpl = (floatRow && rowPerplexity(floatRow)) ?? floatPerplexityOf(json);
    if (floatPpl !== undefined) {
      fp = { ppl: floatPpl, source: 'layerquant', detail: `${floatRow ? `${floatRow.method} row` : 'fp32 perplexity'} of ${shown(path)}` };
    }
  } else {
    results = oracleResults(oracles, modelName, inspect.linearParams);
  }
  if (!fp) {
    const torch = JSON.parse(await readText(referenceTorchPath, 'the shipped PyTorch reference is missing'));
    fp = { ppl: torch['brown-test@512'], source: 'oracles', detail: 'PyTorch fp32 forward, reference-torch.json (brown-test@512)' };
  }
  if (!Number.isFinite(fp.ppl)) throw new InvalidDataError('fp32 perplexity', 'is not a number');

  // The shipped oracle directory passed explicitly is still the oracles.
  const statsSource = resolve(statsDir) === resolve(shippedOraclesDir) ? 'oracles' : 'layerquant';
  const resultsSource = values.results ? 'layerquant' : 'oracles';
  const data = {
    format: 'layerquant-notebook',
    version: 1,
    generatedAt: new Date().toISOString(),
    source: statsSource === 'layerquant' && resultsSource === 'layerquant' ? 'layerquant' : 'oracles',
    sources: {
      model: { kind: 'layerquant', detail: `layerquant inspect --json ${shown(modelDir)} and its safetensors headers` },
      statistics: {
        kind: statsSource,
        detail: statsSource === 'layerquant'
          ? `layerquant sensitivity output in ${shown(statsDir)}`
          : `PyTorch oracles in ${shown(statsDir)} (upstream HQQ, brown-calib, 32 blocks of 512 tokens)`,
      },
      results: {
        kind: resultsSource,
        detail: values.results
          ? `layerquant experiment output ${shown(resolve(cwd, values.results))}${allocationStats ? ` (allocations from the statistics in ${shown(resolve(cwd, allocationStats))})` : ''}`
          : `PyTorch oracles, ${shown(join(shippedOraclesDir, 'oracles.json'))} (brown-test, windows of 512 tokens)`,
      },
    },
    // inspect's `model` is the absolute directory it read.
    model: { name: modelName, path: shown(modelDir), ...inspect, model: shown(modelDir) },
    tensors,
    statistics: { fnormCsv, sensitivityCsv, ...(measuredCsv === undefined ? {} : { measuredCsv }) },
    results,
    reference: {
      fp32Perplexity: fp.ppl,
      fp32Source: fp.source,
      fp32Detail: fp.detail,
      perplexityDataset,
      // Outlier layers the authors' code finds on the shipped oracle tables (top_m "1" and "0" = all).
      oracleOutliers: oracles.outliers,
    },
    budgets: BUDGET_STOPS.map((s) => s.budget),
  };
  // Budgets between stops are fine (the knapsack allocators take any); each must be a positive number.
  if (data.results.some((r) => !(Number.isFinite(r.budget) && r.budget > 0))) {
    throw new InvalidOptionError('budget', 'a result row has a budget that is not a positive number of bits per weight');
  }
  const leaks = privateText(data);
  if (leaks.length > 0) throw new InvalidDataError(outFile, `would show a machine path or an issue number on the page: ${leaks.join('; ')}`);
  const text = `${JSON.stringify(data)}\n`;
  const temp = `${outFile}.${process.pid}.tmp`;
  await writeFile(temp, text);
  await rename(temp, outFile);
  console.log(
    `wrote ${shown(outFile)} (${(text.length / 1024).toFixed(0)} KiB): model ${modelName}, ${tensors.length} tensors, ` +
      `${fnorm.rows.length} fnorm rows, ${results.length} results; statistics from ${statsSource}, results from ${resultsSource}`,
  );
}

main().catch((error) => {
  console.error(`precompute: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
