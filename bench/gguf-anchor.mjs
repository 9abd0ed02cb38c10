// The llama.cpp anchor (issue 25): llama.cpp's own recipes (llama-quantize Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, with and
// without an imatrix from the same calibration text) against layerquant's GGUF files, each judged by llama.cpp's
// llama-perplexity --kl-divergence against the F16 file: mean KLD, 99.9% KLD, same-top-p, perplexity, file size.
// Build the tools first (bench/llama-cpp-tools.sh, ~35 min), then:
//   node bench/gguf-anchor.mjs --tools ~/.cache/layerquant/llama.cpp/build/bin [--model <dir>] [--chunks 32] [--calib-chunks 32]
// layerquant's side: the ggml quantizer (llama.cpp's own types, layerquant's encoder) allocated by a knapsack
// (--methods, default mxq,measured) to each recipe's file size (--target-size: every byte of the .gguf), without and
// with an imatrix (--imatrix: the inputs' mean squares from the layer pass on the same calibration text). Statistics are
// computed once per setting (--stats-cache in the work directory) and reused across sizes.
import { exportGguf } from '@layerquant/gguf/node';
import { brownCalibPath, brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { argument, checkArguments } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { values: ['tools', 'model', 'chunks', 'calib-chunks', 'threads', 'methods', 'blocks', 'imatrix', 'recipes'] });

const tools = argument('tools', join(process.env.HOME ?? '', '.cache/layerquant/llama.cpp/build/bin'));
const modelDir = argument('model', shippedModelDir);
const chunks = argument('chunks', '32');
const calibChunks = argument('calib-chunks', '32');
const threads = argument('threads', '1');
const methods = argument('methods', 'mxq,measured').split(',');
// layerquant's calibration blocks (statistics and imatrix; default: --calib-chunks, what llama-imatrix reads)
const blocks = argument('blocks', calibChunks);
// layerquant with and without --imatrix (default both)
const imatrixModes = argument('imatrix', 'both') === 'both' ? [false, true] : [argument('imatrix', 'both') === 'yes'];
const recipes = argument('recipes', 'Q2_K,Q3_K_M,Q4_K_M,Q5_K_M').split(',');
const cli = fileURLToPath(new URL('../apps/cli/dist/bin.js', import.meta.url));
const tool = (name) => {
  const path = join(tools, name);
  if (!existsSync(path)) {
    console.error(`${path} is missing: build llama.cpp's tools with bench/llama-cpp-tools.sh and pass --tools <dir>`);
    process.exit(2);
  }
  return path;
};
/** Runs one of llama.cpp's tools; they print their results on stderr, so both streams come back. */
function runBoth(name, args) {
  const result = spawnSync(tool(name), args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (result.status !== 0) throw new Error(`${name} ${args.join(' ')} failed:\n${result.stderr.slice(-2000)}`);
  return `${result.stdout}\n${result.stderr}`;
}

const work = mkdtempSync(join(tmpdir(), 'layerquant-gguf-anchor-'));
const f16 = join(work, 'f16.gguf');
await exportGguf({ modelDir, outFile: f16, types: { '.*': 'F16' } });
const common = ['-c', '512', '-t', threads];
// The imatrix from the same calibration text the sensitivity pass reads.
const imatrix = join(work, 'imatrix.gguf');
runBoth('llama-imatrix', ['-m', f16, '-f', brownCalibPath, '-o', imatrix, '--chunks', calibChunks, ...common]);
const base = join(work, 'base.kld');
runBoth('llama-perplexity', ['-m', f16, '-f', brownTestPath, '--chunks', chunks, '--kl-divergence-base', base, ...common]);

/** llama-perplexity --kl-divergence of one file against the F16 logits. */
function judge(file) {
  const out = runBoth('llama-perplexity', ['-m', file, '--kl-divergence-base', base, '--kl-divergence', '--chunks', chunks, ...common]);
  const number = (pattern) => {
    const m = pattern.exec(out);
    return m ? Number(m[1]) : NaN;
  };
  return {
    meanKld: number(/Mean\s+KLD:\s+([0-9.eE+-]+)/),
    kld999: number(/99\.9%\s+KLD:\s+([0-9.eE+-]+)/),
    sameTop: number(/Same top p:\s+([0-9.eE+-]+)/),
    ppl: number(/Mean PPL\(Q\)\s*:\s*([0-9.eE+-]+)/),
  };
}

const rows = [];
const statsCache = join(work, 'stats');
for (const recipe of recipes) {
  // the smaller of llama.cpp's two files (its imatrix file carries a few hundred bytes more metadata)
  let bytes = Infinity;
  for (const withImatrix of [false, true]) {
    const file = join(work, `llama-${recipe}${withImatrix ? '-imatrix' : ''}.gguf`);
    runBoth('llama-quantize', [...(withImatrix ? ['--imatrix', imatrix] : []), f16, file, recipe, threads]);
    bytes = Math.min(bytes, statSync(file).size);
    rows.push({ who: `llama.cpp ${recipe}${withImatrix ? ' + imatrix' : ''}`, bytes: statSync(file).size, ...judge(file) });
    console.error(JSON.stringify(rows.at(-1)));
    rmSync(file);
  }
  // layerquant at the same file size (every byte of the .gguf at most the llama.cpp file's)
  for (const method of methods) {
    for (const withImatrix of imatrixModes) {
      const file = join(work, `layerquant-${recipe}-${method}${withImatrix ? '-imatrix' : ''}.gguf`);
      const args = ['quantize', modelDir, '--quantizer', 'ggml', ...(withImatrix ? ['--imatrix'] : []), '--method', method, ...(method === 'kld' ? ['--no-refine'] : []),
        '--calib', brownCalibPath, '--blocks', blocks, '--stats-cache', statsCache, '--format', 'gguf', '--target-size', String(bytes / 2 ** 20), '--out', file];
      const started = performance.now();
      const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
      if (result.status !== 0) throw new Error(`layerquant ${args.join(' ')} failed:\n${result.stderr.slice(-2000)}`);
      rows.push({ who: `layerquant ggml ${method}${withImatrix ? ' + imatrix' : ''} at ${recipe}'s size`, bytes: statSync(file).size, seconds: (performance.now() - started) / 1000, ...judge(file) });
      console.error(JSON.stringify(rows.at(-1)));
      rmSync(file);
    }
  }
}
console.log(`model ${modelDir}; ${chunks} chunks of 512 of brown-test, KLD against the F16 file; llama.cpp's imatrix from ${calibChunks} chunks of brown-calib, layerquant's statistics and imatrix from ${blocks} blocks of 512 of it\n`);
console.log('| file | bytes | mean KLD | 99.9% KLD | same top p % | PPL | layerquant s |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) console.log(`| ${r.who} | ${r.bytes} | ${r.meanKld} | ${r.kld999} | ${r.sameTop} | ${r.ppl} | ${r.seconds === undefined ? '' : r.seconds.toFixed(0)} |`);
rmSync(work, { recursive: true, force: true });
