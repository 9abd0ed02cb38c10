// HQQ and RTN speed against upstream HQQ in PyTorch (../shared/anchors/torch_cpu_anchor.py), side by side in one run.
// Usage: pnpm build && HQQ_SRC=/path/to/mobiusml-hqq-checkout node bench/quantize.mjs [--no-anchor]
// HQQ_SRC is the directory holding upstream's `hqq/` folder (never committed); default /tmp/hqq-src.
// Timed like the anchor: HQQ b4g64 = quantize + dequantize + squared error of all 224 linear matrices;
// RTN b4g64 = quantize only. Also: the TypeScript kernel alone, and quantizeModel end to end (read, quantize,
// write) in a fresh process with its peak memory.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { matrixOfTensorName, parseConfigName } from '@layerquant/core';
import { referenceHqqPath, shippedModelDir } from '@layerquant/fixtures';
import { assembleQuantized, createHqqQuantizer, prepareGroups, rtnQuantizer, squaredError, wasmKernelAvailable } from '@layerquant/quantizers';
import { createKernelPool, defaultWorkerCount, quantizeModel } from '@layerquant/quantizers/node';
import { openCheckpoint } from '@layerquant/tensor-io';
import { TABLE_HEADER, pythonHas, ratioRow } from './lib/anchor.mjs';
import { checkArguments } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { values: ['stream-child'], flags: ['no-anchor'] });

const config = parseConfigName('b4g64');

if (process.argv.includes('--stream-child')) {
  // quantizeModel alone in a fresh process: its time and peak resident memory
  const out = mkdtempSync(join(tmpdir(), 'layerquant-bench-quantize-'));
  const workers = Number(process.argv[process.argv.indexOf('--stream-child') + 1]);
  try {
    const report = await quantizeModel({ modelDir: shippedModelDir, outDir: out, quantizer: createHqqQuantizer(), configFor: () => config, workers });
    // VmHWM, not getrusage's maxRSS: Linux carries maxRSS over fork + exec, so it would report the parent's peak
    const status = existsSync('/proc/self/status') ? readFileSync('/proc/self/status', 'utf8') : '';
    const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
    const maxRssBytes = hwm ? Number(hwm[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
    console.log(JSON.stringify({ seconds: report.seconds, quantizeSeconds: report.quantizeSeconds, sqErr: report.sqErr, maxRssBytes }));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  process.exit(0);
}

const ANCHOR = fileURLToPath(new URL('../../shared/anchors/torch_cpu_anchor.py', import.meta.url));
const HQQ_SRC = process.env.HQQ_SRC ?? '/tmp/hqq-src';
const wantAnchor = !process.argv.includes('--no-anchor');
const haveAnchor = wantAnchor && existsSync(ANCHOR) && existsSync(join(HQQ_SRC, 'hqq', 'core', 'quantize.py')) && pythonHas('torch');
if (wantAnchor && !haveAnchor) {
  console.log(`(no PyTorch anchor: needs /usr/bin/python3 with torch, ${ANCHOR} and HQQ_SRC=${HQQ_SRC}/hqq; reporting our figures alone)\n`);
}

/** Runs the anchor until its first JSON line (HQQ b4g64 and RTN timings), then stops it. */
function runAnchor() {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/python3', [ANCHOR, shippedModelDir, join(shippedModelDir, 'config.json'), HQQ_SRC], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buffer = '';
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => {
      buffer += d;
      const line = buffer.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        child.kill();
        resolve(JSON.parse(line));
      }
    });
    child.on('exit', (code) => {
      if (!buffer.includes('{')) reject(new Error(`anchor exited ${code}: ${stderr.split('\n').slice(-3).join(' ')}`));
    });
  });
}

const checkpoint = await openCheckpoint(shippedModelDir);
const matrices = [];
for (const info of checkpoint.tensors) if (matrixOfTensorName(info.name)) matrices.push(await checkpoint.read(info.name));
await checkpoint.close();
const params = matrices.reduce((s, m) => s + m.data.length, 0);
console.log(`${matrices.length} linear matrices, ${params.toLocaleString('en-US')} weights; WebAssembly SIMD: ${wasmKernelAvailable() ? 'yes' : 'no'}; ${process.version}\n`);

function hqqPass(quantizer) {
  const start = performance.now();
  let error = 0;
  for (const weight of matrices) error += squaredError(quantizer.dequantize(quantizer.quantize(weight, config)), weight.data);
  return { seconds: (performance.now() - start) / 1000, sqErr: error };
}
/** The same pass with the solver on a pool of worker threads; dequantization and error on the main thread. */
async function hqqPoolPass(pool, quantizer) {
  const start = performance.now();
  const errors = await Promise.all(
    matrices.map(async (weight) => {
      const { layout, grouped } = prepareGroups(weight, config);
      const r = await pool.run({ grouped, groupSize: 64, bits: 4, roundZero: false, solver: quantizer.solver });
      const q = assembleQuantized('hqq', weight, config, layout, r.codes, r.scale, r.zero);
      return squaredError(quantizer.dequantize(q), weight.data);
    }),
  );
  return { seconds: (performance.now() - start) / 1000, sqErr: errors.reduce((a, b) => a + b, 0) };
}
function rtnPass() {
  const start = performance.now();
  for (const weight of matrices) rtnQuantizer.quantize(weight, config);
  return (performance.now() - start) / 1000;
}
function best(runs, fn) {
  let result;
  for (let i = 0; i < runs; i++) {
    const r = fn();
    if (!result || (r.seconds ?? r) < (result.seconds ?? result)) result = r;
  }
  return result;
}

const wasmHqq = createHqqQuantizer({ kernel: 'auto' });
const tsHqq = createHqqQuantizer({ kernel: 'typescript' });
hqqPass(wasmHqq); // warm-up: JIT and wasm compilation
const ours = best(3, () => hqqPass(wasmHqq));
const oursTs = best(1, () => hqqPass(tsHqq));
const workers = Math.max(2, defaultWorkerCount());
const pool = createKernelPool(workers);
let oursPool;
if (pool) {
  await hqqPoolPass(pool, wasmHqq);
  for (let i = 0; i < 3; i++) {
    const r = await hqqPoolPass(pool, wasmHqq);
    if (!oursPool || r.seconds < oursPool.seconds) oursPool = r;
  }
  await pool.close();
}
rtnPass();
const oursRtn = best(3, rtnPass);
const streamRun = (n) => JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--stream-child', String(n)], { encoding: 'utf8' }).trim().split('\n').pop());
const stream = streamRun(1);
const streamPool = streamRun(workers);

let anchor;
if (haveAnchor) {
  try {
    anchor = await runAnchor();
  } catch (error) {
    console.log(`(anchor failed: ${error.message})\n`);
  }
}

const reference = JSON.parse(readFileSync(referenceHqqPath, 'utf8'));
console.log(TABLE_HEADER);
console.log(ratioRow('HQQ b4g64, 224 matrices (WebAssembly SIMD kernel, 1 thread)', ours.seconds, anchor?.hqq_b4g64_s));
if (oursPool) console.log(ratioRow(`HQQ b4g64, 224 matrices (WebAssembly SIMD, ${workers} worker threads)`, oursPool.seconds, anchor?.hqq_b4g64_s));
console.log(ratioRow('HQQ b4g64, 224 matrices (TypeScript kernel, 1 thread)', oursTs.seconds, anchor?.hqq_b4g64_s));
console.log(ratioRow('RTN b4g64, 224 matrices', oursRtn, anchor?.rtn_b4g64_s));
console.log(ratioRow('HQQ b4g64 vs the figure in SPEC.md (2.28 s)', Math.min(ours.seconds, oursPool?.seconds ?? Infinity), 2.28));
console.log(ratioRow('RTN b4g64 vs the figure in SPEC.md (0.056 s)', oursRtn, 0.056));
console.log(`| quantizeModel end to end (read BF16, quantize, write safetensors; fresh process), 1 thread | ${stream.seconds.toFixed(3)} s | - | - |`);
console.log(`| quantizeModel end to end, ${workers} worker threads | ${streamPool.seconds.toFixed(3)} s | - | - |`);
console.log('');
const relative = (x) => `${(((x - reference.hqq_b4g64_sq_err) / reference.hqq_b4g64_sq_err) * 100).toExponential(2)}%`;
console.log(`sqErr HQQ b4g64: ours ${ours.sqErr.toFixed(6)} (${relative(ours.sqErr)} vs reference-hqq.json ${reference.hqq_b4g64_sq_err.toFixed(6)}); TypeScript kernel ${oursTs.sqErr.toFixed(6)}; workers ${oursPool?.sqErr.toFixed(6)}${anchor ? `; anchor this run ${anchor.hqq_b4g64_sq_err.toFixed(6)}` : ''}`);
const modelBytes = readdirSync(shippedModelDir).filter((f) => f.endsWith('.safetensors')).reduce((s, f) => s + statSync(join(shippedModelDir, f)).size, 0);
console.log(`peak memory of quantizeModel: ${(stream.maxRssBytes / 2 ** 20).toFixed(0)} MiB resident (1 thread), ${(streamPool.maxRssBytes / 2 ** 20).toFixed(0)} MiB (${workers} workers) (model: ${(modelBytes / 2 ** 20).toFixed(0)} MiB BF16 on disk, ${((modelBytes * 2) / 2 ** 20).toFixed(0)} MiB as float32)`);
