// GPTQ at real model shapes: time and peak memory of our GPTQ (the sequential layer pass, column loops on 2 WebAssembly
// workers) against the PyTorch reference (bench/gptq_reference.py, 2 threads) on the first --layers layers of a
// synthetic checkpoint (bench/lib/synthetic-model.mjs: random BF16 weights, the shipped tokenizer), calibration blocks
// of random token ids, each in a fresh child process (peak: VmHWM via lib/report-peak.mjs; PyTorch's max RSS). Prints
// both and the whole model's time extrapolated from the measured layers (our plan line's kind of estimate).
// Usage: pnpm build && node bench/gptq-scale.mjs --shape tinyllama|llama-3.2-3b|llama-2-7b [--layers 2] [--blocks 8]
//          [--seqlen 512] [--config b4g128] [--no-anchor]
// Models are written to $LAYERQUANT_SCALE_DIR (default <tmpdir>/layerquant-scale), never into the repository.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { seededRandom } from '@layerquant/core';
import { lastJson, pythonHas, runPython } from './lib/anchor.mjs';
import { argument, checkArguments, shapeArgument, writeSyntheticCheckpoint } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { values: ['layers', 'blocks', 'seqlen', 'config', 'shape'], flags: ['no-anchor'] });

const { shapeName, shape } = shapeArgument();
const layers = Number(argument('layers', '2'));
const blocks = Number(argument('blocks', '8'));
const seqlen = Number(argument('seqlen', '512'));
const config = argument('config', 'b4g128');
const anchor = !process.argv.includes('--no-anchor') && pythonHas('torch');
const CHILD = fileURLToPath(new URL('./lib/gptq-layers.mjs', import.meta.url));
const PEAK_HOOK = fileURLToPath(new URL('./lib/report-peak.mjs', import.meta.url));
const REFERENCE = fileURLToPath(new URL('./gptq_reference.py', import.meta.url));
const root = process.env.LAYERQUANT_SCALE_DIR ?? join(tmpdir(), 'layerquant-scale');
const modelDir = join(root, shapeName);
if (!existsSync(join(modelDir, 'config.json'))) {
  console.error(`writing a synthetic ${shapeName} checkpoint to ${modelDir}...`);
  await writeSyntheticCheckpoint(modelDir, shape);
}
const scratch = mkdtempSync(join(tmpdir(), 'layerquant-bench-gptq-scale-'));
const gib = (bytes) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
try {
  const random = seededRandom(1);
  const idsPath = join(scratch, 'ids.json');
  writeFileSync(idsPath, JSON.stringify(Array.from({ length: blocks * seqlen }, () => Math.floor(random() * 8192))));
  const peakFile = join(scratch, 'peak');
  console.error(`ours: GPTQ ${config} of the first ${layers} layers, ${blocks} blocks x ${seqlen} tokens...`);
  const ours = lastJson(execFileSync(process.execPath, ['--import', PEAK_HOOK, CHILD, modelDir, String(layers), String(blocks), String(seqlen), config, idsPath], {
    encoding: 'utf8',
    env: { ...process.env, LAYERQUANT_PEAK_FILE: peakFile },
    stdio: ['ignore', 'pipe', 'inherit'],
  }));
  const oursPeak = Number(readFileSync(peakFile, 'utf8'));
  let reference;
  if (anchor) {
    console.error('PyTorch GPTQ reference...');
    const bits = /^b(\d+)g(\d+)/.exec(config);
    reference = lastJson(runPython([REFERENCE, modelDir, idsPath, String(blocks), String(seqlen), bits[1], bits[2], '--layers', String(layers), '--threads', '2']));
  }
  console.log(`| ${shapeName}, first ${layers} of ${shape.layers} layers, ${config}, ${blocks} x ${seqlen} tokens | layerquant (2 workers) | PyTorch (2 threads) |`);
  console.log('| --- | --- | --- |');
  console.log(`| time | ${ours.seconds.toFixed(1)} s (per layer ${ours.layerSeconds.map((s) => s.toFixed(1)).join(', ')} s) | ${reference ? `${reference.seconds.toFixed(1)} s (Hessians ${reference.hessianSeconds.toFixed(1)} s, GPTQ ${reference.gptqSeconds.toFixed(1)} s)` : '-'} |`);
  console.log(`| peak memory | ${gib(oursPeak)} | ${reference ? gib(reference.peakBytes) : '-'} |`);
  console.log(`| whole model, extrapolated from these layers | ${(ours.estimateSeconds / 60).toFixed(1)} min | ${reference ? `${((reference.seconds / layers) * shape.layers / 60).toFixed(1)} min` : '-'} |`);
  if (reference) console.log(`\nspeed-up: ${(reference.seconds / ours.seconds).toFixed(2)}x`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
