// The shipped model exported to ONNX (MatMulNBits) side by side with the fp32 graph of the same model, in one run:
// bytes on disk and bits per linear weight (export vs the paper's accounting vs the BF16 source), prefill and decode
// speed with the KV cache and peak memory (each model in its own process, VmHWM), and the accuracy of the variants
// (accuracy level 4, float16 scales, float16 activations) against the dequantized evaluation.
//
//   node bench/export.mjs [--windows N]   (perplexity windows of 512 tokens; default: the whole of brown-test)
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { quantConfig } from '@layerquant/core';
import { exportOnnx, openOnnxExport } from '@layerquant/export';
import { brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { perplexity } from '@layerquant/perplexity';
import { hqqQuantizer, modelMemory } from '@layerquant/quantizers';
import { openModelWeights, quantizeModel } from '@layerquant/quantizers/node';
import { loadDecoderModel } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer } from '@layerquant/tensor-io';

const args = process.argv.slice(2);
const windowsArg = args.indexOf('--windows');
const pplWindows = windowsArg >= 0 ? Number(args[windowsArg + 1]) : undefined;
const child = fileURLToPath(new URL('./lib/export-speed-child.mjs', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'layerquant-bench-export-'));
const log = (text) => process.stderr.write(`${text}\n`);
const MiB = (bytes) => (bytes / 2 ** 20).toFixed(2);

try {
  const config = await loadDecoderConfig(shippedModelDir);
  const tokenizer = await loadTokenizer(shippedModelDir);
  const ids = tokenizer.encode(readFileSync(brownTestPath, 'utf8'));
  const idsPath = join(root, 'ids.json');
  writeFileSync(idsPath, JSON.stringify(ids.slice(0, 4 * 512)));

  log('quantizing b4g64 (HQQ) ...');
  const quantizedDir = join(root, 'b4g64');
  const quantized = await quantizeModel({ modelDir: shippedModelDir, outDir: quantizedDir, quantizer: hqqQuantizer, workers: 2, configFor: () => quantConfig(4, 64) });
  log('exporting ...');
  const variants = {
    fp32: await exportOnnx({ modelDir: shippedModelDir, outDir: join(root, 'fp32') }),
    'q4 level 4': await exportOnnx({ modelDir: quantizedDir, outDir: join(root, 'q4-l4'), accuracyLevel: 4 }),
    'q4 level 0': await exportOnnx({ modelDir: quantizedDir, outDir: join(root, 'q4-l0'), accuracyLevel: 0 }),
    'q4 f16 scales': await exportOnnx({ modelDir: quantizedDir, outDir: join(root, 'q4-f16s'), accuracyLevel: 0, scaleType: 'float16' }),
    q4f16: await exportOnnx({ modelDir: quantizedDir, outDir: join(root, 'q4f16'), accuracyLevel: 0, activations: 'float16' }),
  };

  // ---- bytes -------------------------------------------------------------------------------------------------
  const sourceBytes = readdirSync(shippedModelDir).filter((f) => f.endsWith('.safetensors')).reduce((s, f) => s + statSync(join(shippedModelDir, f)).size, 0);
  const params = quantized.params;
  const paper = modelMemory(quantized.perMatrix.map((m) => ({ shape: m.shape, config: quantConfig(4, 64) })));
  const q4 = variants['q4 level 4'];
  console.log('## Size (shipped model, b4g64)\n');
  console.log('| what | bytes | linear weights | bits per linear weight |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| BF16 source (safetensors) | ${MiB(sourceBytes)} MiB | ${MiB(params * 2)} MiB | 16 |`);
  console.log(`| fp32 graph (model.onnx) | ${MiB(variants.fp32.fileBytes)} MiB | ${MiB(variants.fp32.linearBytes)} MiB | ${variants.fp32.linearBitsPerWeight.toFixed(4)} |`);
  console.log(`| paper accounting (8-bit scale and zero per group) | - | ${MiB(paper.paperMB * 2 ** 20)} MiB | ${paper.paperBitsPerWeight.toFixed(4)} |`);
  console.log(`| layerquant checkpoint (model.safetensors) | ${MiB(quantized.fileBytes)} MiB | ${MiB(quantized.bytes)} MiB | ${((8 * quantized.bytes) / params).toFixed(4)} |`);
  for (const [name, r] of Object.entries(variants).slice(1)) {
    console.log(`| export ${name} (${r.file}) | ${MiB(r.fileBytes + r.externalDataBytes)} MiB | ${MiB(r.linearBytes)} MiB | ${r.linearBitsPerWeight.toFixed(4)} |`);
  }
  console.log(`\nq4 export / BF16 source: ${(q4.fileBytes / sourceBytes).toFixed(3)} (file), ${(q4.linearBytes / (params * 2)).toFixed(3)} (linear weights); q4 / fp32 graph: ${(q4.fileBytes / variants.fp32.fileBytes).toFixed(3)} (file), ${(q4.linearBytes / variants.fp32.linearBytes).toFixed(3)} (linear); export bits / paper bits: ${(q4.linearBitsPerWeight / paper.paperBitsPerWeight).toFixed(3)}\n`);

  // ---- speed and memory, each model in its own process --------------------------------------------------------
  const run = (file) => JSON.parse(execFileSync(process.execPath, [child, file, shippedModelDir, idsPath, '4', '64'], { encoding: 'utf8' }).trim().split('\n').pop());
  log('baseline process ...');
  const baseline = run('-');
  const speed = {};
  for (const name of ['fp32', 'q4 level 4', 'q4 level 0', 'q4f16']) {
    log(`speed: ${name} ...`);
    speed[name] = run(join(variants[name].outDir, variants[name].file));
  }
  console.log('## Speed and memory (2 threads, batch 1; prefill: best of 4 windows of 512 tokens; decode: 64 tokens with the KV cache)\n');
  console.log('| model | prefill tokens/s | decode tokens/s | session start | peak RSS (VmHWM) | peak RSS above the bare runtime |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const [name, s] of Object.entries(speed)) {
    console.log(`| ${name} | ${s.prefillTokensPerSecond.toFixed(0)} | ${s.decodeTokensPerSecond.toFixed(1)} | ${s.sessionSeconds.toFixed(2)} s | ${(s.peakKiB / 1024).toFixed(1)} MiB | ${((s.peakKiB - baseline.peakKiB) / 1024).toFixed(1)} MiB |`);
  }
  const f = speed.fp32;
  const q = speed['q4 level 4'];
  const above = (s) => s.peakKiB - baseline.peakKiB;
  console.log(`\nbare runtime process: ${(baseline.peakKiB / 1024).toFixed(1)} MiB`);
  console.log(`q4 (level 4) / fp32: prefill ${(q.prefillTokensPerSecond / f.prefillTokensPerSecond).toFixed(2)}x (goal >= 1), decode ${(q.decodeTokensPerSecond / f.decodeTokensPerSecond).toFixed(2)}x (goal >= 2), memory above the runtime ${(above(q) / above(f)).toFixed(3)} (goal for the linear weights <= 0.167), linear weights in the file ${(q4.linearBytes / variants.fp32.linearBytes).toFixed(3)}\n`);

  // ---- accuracy -------------------------------------------------------------------------------------------------
  const options = { seqlen: 512, ...(pplWindows ? { maxTokens: pplWindows * 512 } : {}) };
  log(`perplexity on ${pplWindows ? `${pplWindows} windows` : 'the whole'} of brown-test@512 ...`);
  const weights = await openModelWeights(quantizedDir);
  const dequantizedModel = await loadDecoderModel(weights, config, { threads: 2 });
  await weights.close();
  const dequantized = await perplexity(dequantizedModel, ids, options);
  await dequantizedModel.dispose();
  console.log(`## Perplexity on brown-test@512 (${dequantized.tokens} tokens, ${dequantized.windows} windows)\n`);
  console.log('| model | perplexity | vs dequantized | time |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| b4g64 dequantized (float graph) | ${dequantized.ppl.toFixed(4)} | - | ${dequantized.seconds.toFixed(1)} s |`);
  for (const name of ['q4 level 0', 'q4 level 4', 'q4 f16 scales', 'q4f16']) {
    log(`perplexity: ${name} ...`);
    const model = await openOnnxExport(variants[name].outDir, { threads: 2 });
    const result = await perplexity(model, ids, options);
    await model.dispose();
    const change = (100 * (result.ppl - dequantized.ppl)) / dequantized.ppl;
    console.log(`| export ${name} | ${result.ppl.toFixed(4)} | ${change >= 0 ? '+' : ''}${change.toFixed(4)}% | ${result.seconds.toFixed(1)} s |`);
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
