// The shipped model exported to ONNX (MatMulNBits) side by side with the fp32 graph of the same model, in one run:
// bytes on disk and bits per linear weight (export vs the paper's accounting vs the BF16 source), prefill and decode
// speed with the KV cache and peak memory (each model in its own process, VmHWM), and the accuracy of the variants
// (accuracy level 4, float16 scales, float16 activations) against the dequantized evaluation.
//
//   node bench/export.mjs [--windows N] [--sections size,speed,wide,layers,ppl]
//   (--windows: perplexity on the first N windows of 512 tokens; default: the whole of brown-test)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { quantConfig } from '@layerquant/core';
import { exportOnnx, openOnnxExport } from '@layerquant/export';
import { brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { perplexity } from '@layerquant/perplexity';
import { hqqQuantizer, modelMemory } from '@layerquant/quantizers';
import { openModelWeights, quantizeModel } from '@layerquant/quantizers/node';
import { decoderLayout, expectedShapes, loadDecoderModel } from '@layerquant/runtime';
import { randomDecoderSource, relativeError, tinyConfig } from '@layerquant/runtime/testing';
import { loadDecoderConfig, loadTokenizer, writeSafetensors } from '@layerquant/tensor-io';
import { checkArguments } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { values: ['windows', 'sections'] });

const args = process.argv.slice(2);
const windowsArg = args.indexOf('--windows');
const pplWindows = windowsArg >= 0 ? Number(args[windowsArg + 1]) : undefined;
const sectionsArg = args.indexOf('--sections');
const sections = new Set((sectionsArg >= 0 ? args[sectionsArg + 1] : 'size,speed,wide,layers,ppl').split(','));
const child = fileURLToPath(new URL('./lib/export-speed-child.mjs', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'layerquant-bench-export-'));
const log = (text) => process.stderr.write(`${text}\n`);
const MiB = (bytes) => (bytes / 2 ** 20).toFixed(2);

function runChild(file, configDir, idsPath, windows, decode) {
  const out = execFileSync(process.execPath, [child, file, configDir, idsPath, String(windows), String(decode)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return JSON.parse(out.trim().split('\n').pop());
}

function printSpeed(title, speed, baseline, variants, prefill, decode) {
  const above = (kib) => (kib - baseline.peakKiB) / 1024;
  console.log(`## Speed and memory: ${title}\n`);
  console.log(`1 thread, batch 1; prefill: best of ${prefill}; decode: ${decode} tokens with the KV cache. Memory: VmHWM of a process`);
  console.log(`that holds only the model, above a process with the runtime and a one-node session (${(baseline.peakKiB / 1024).toFixed(1)} MiB).\n`);
  console.log('| model | prefill tokens/s | decode tokens/s | session start | weights in the file | peak RSS after loading | peak RSS after the runs |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const [name, s] of Object.entries(speed)) {
    const r = variants[name];
    console.log(`| ${name} | ${s.prefillTokensPerSecond.toFixed(1)} | ${s.decodeTokensPerSecond.toFixed(2)} | ${s.sessionSeconds.toFixed(2)} s | ${MiB(r.fileBytes + r.externalDataBytes)} MiB (linear ${MiB(r.linearBytes)}) | +${above(s.sessionPeakKiB).toFixed(1)} MiB | +${above(s.peakKiB).toFixed(1)} MiB |`);
  }
  const f = speed.fp32;
  for (const name of Object.keys(speed).filter((n) => n !== 'fp32')) {
    const q = speed[name];
    console.log(`\n${name} / fp32: prefill ${(q.prefillTokensPerSecond / f.prefillTokensPerSecond).toFixed(2)}x (goal >= 1), decode ${(q.decodeTokensPerSecond / f.decodeTokensPerSecond).toFixed(2)}x (goal >= 2), memory after loading ${(above(q.sessionPeakKiB) / above(f.sessionPeakKiB)).toFixed(3)} (goal for the linear weights <= 0.167), linear bytes in the file ${(variants[name].linearBytes / variants.fp32.linearBytes).toFixed(3)}`);
  }
  console.log('');
}

/** A random decoder (runtime's test weights) written as a Hugging Face directory. */
async function writeRandomModel(dir, config) {
  mkdirSync(dir, { recursive: true });
  const source = randomDecoderSource(config, 1);
  const layout = decoderLayout(config, source);
  const tensors = [];
  for (const [name, shape] of expectedShapes(config, layout)) tensors.push({ name, dtype: 'BF16', shape, data: (await source.read(name)).data });
  await writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: config.hiddenSize, intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers, num_attention_heads: config.numHeads, num_key_value_heads: config.numKeyValueHeads, head_dim: config.headDim,
    vocab_size: config.vocabSize, rms_norm_eps: config.rmsNormEps, rope_theta: config.ropeTheta, max_position_embeddings: config.maxPositionEmbeddings,
    tie_word_embeddings: true, bos_token_id: 0, eos_token_id: 0,
  }));
}

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
  if (sections.has('size')) {
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

  }

  // ---- speed and memory, each model in its own process --------------------------------------------------------
  const baseline = runChild('-', shippedModelDir, idsPath, 0, 0);
  if (sections.has('speed')) {
    const speed = {};
    for (const name of ['fp32', 'q4 level 4', 'q4 level 0', 'q4f16']) {
      log(`speed: ${name} ...`);
      speed[name] = runChild(join(variants[name].outDir, variants[name].file), shippedModelDir, idsPath, 4, 64);
  }
  printSpeed('shipped model (26M parameters, 32 layers, hidden 256)', speed, baseline, variants, '4 windows of 512 tokens', 64);
  }

  // ---- a wide random model, where the linear weights dominate time and memory ---------------------------------
  const wide = tinyConfig({ hiddenSize: 2048, intermediateSize: 5632, numLayers: 2, numHeads: 16, numKeyValueHeads: 4, headDim: 128, vocabSize: 2048, maxPositionEmbeddings: 4096, tieWordEmbeddings: true });
  const wideIds = join(root, 'wide-ids.json');
  writeFileSync(wideIds, JSON.stringify(ids.slice(0, 512).map((id) => id % wide.vocabSize)));
  if (sections.has('wide')) {
    log('wide random model: writing, quantizing, exporting ...');
    const wideDir = join(root, 'wide');
    await writeRandomModel(wideDir, wide);
    const wideQuantized = join(root, 'wide-b4g64');
    await quantizeModel({ modelDir: wideDir, outDir: wideQuantized, quantizer: hqqQuantizer, workers: 2, configFor: () => quantConfig(4, 64) });
    const wideVariants = {
      fp32: await exportOnnx({ modelDir: wideDir, outDir: join(root, 'wide-fp32') }),
      'q4 level 4': await exportOnnx({ modelDir: wideQuantized, outDir: join(root, 'wide-q4-l4'), accuracyLevel: 4 }),
      'q4 level 0': await exportOnnx({ modelDir: wideQuantized, outDir: join(root, 'wide-q4-l0'), accuracyLevel: 0 }),
    };
    rmSync(wideDir, { recursive: true, force: true });
    const wideSpeed = {};
    for (const name of Object.keys(wideVariants)) {
      log(`speed (wide): ${name} ...`);
      wideSpeed[name] = runChild(join(wideVariants[name].outDir, wideVariants[name].file), join(root, 'wide-fp32'), wideIds, 1, 16);
  }
  printSpeed(`wide random Llama (${(wideVariants.fp32.linearParams / 1e6).toFixed(0)}M linear weights, 2 layers, hidden 2048, ffn 5632)`, wideSpeed, baseline, wideVariants, '1 window of 512 tokens', 16);
  }

  // ---- memory of the linear weights alone: the growth from 1 to 3 layers of the wide model ----------------------
  if (sections.has('layers')) {
    const peaks = {};
    const bytes = {};
    for (const layers of [1, 3]) {
      log(`layer growth: ${layers} layer(s) ...`);
      const dir = join(root, `layers-${layers}`);
      await writeRandomModel(dir, { ...wide, numLayers: layers });
      await quantizeModel({ modelDir: dir, outDir: `${dir}-b4g64`, quantizer: hqqQuantizer, workers: 2, configFor: () => quantConfig(4, 64) });
      const exports = {
        fp32: await exportOnnx({ modelDir: dir, outDir: `${dir}-fp32` }),
        'q4 level 4': await exportOnnx({ modelDir: `${dir}-b4g64`, outDir: `${dir}-l4`, accuracyLevel: 4 }),
        'q4 level 0': await exportOnnx({ modelDir: `${dir}-b4g64`, outDir: `${dir}-l0`, accuracyLevel: 0 }),
      };
      for (const [name, r] of Object.entries(exports)) {
        peaks[name] = { ...peaks[name], [layers]: runChild(join(r.outDir, r.file), `${dir}-fp32`, wideIds, 0, 1).sessionPeakKiB };
        bytes[name] = { ...bytes[name], [layers]: r.linearBytes };
      }
      for (const d of [dir, `${dir}-b4g64`, `${dir}-fp32`, `${dir}-l4`, `${dir}-l0`]) rmSync(d, { recursive: true, force: true });
    }
    console.log('## Memory of the linear weights: peak RSS after loading, 3 layers minus 1 layer of the wide model\n');
    console.log('| model | linear bytes of 2 layers in the file | peak RSS of 2 layers | ratio to fp32 |');
    console.log('| --- | --- | --- | --- |');
    const growth = (name) => (peaks[name][3] - peaks[name][1]) / 1024;
    for (const name of Object.keys(peaks)) {
      console.log(`| ${name} | ${MiB(bytes[name][3] - bytes[name][1])} MiB | ${growth(name).toFixed(1)} MiB | ${(growth(name) / growth('fp32')).toFixed(3)} (goal <= 0.167) |`);
    }
    console.log('');
  }
  if (sections.has('ppl')) {

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
    const probe = ids.slice(0, 64);
    const exact = await openOnnxExport(variants['q4 level 0'].outDir, { threads: 2 });
    const exactLogits = await exact.logits({ ids: probe });
    await exact.dispose();
    const logitErrors = {};
    for (const name of ['q4 level 0', 'q4 level 4', 'q4 f16 scales', 'q4f16']) {
      log(`perplexity: ${name} ...`);
      const model = await openOnnxExport(variants[name].outDir, { threads: 2 });
      logitErrors[name] = relativeError(await model.logits({ ids: probe }), exactLogits);
      const result = await perplexity(model, ids, options);
      await model.dispose();
      const change = (100 * (result.ppl - dequantized.ppl)) / dequantized.ppl;
      console.log(`| export ${name} | ${result.ppl.toFixed(4)} | ${change >= 0 ? '+' : ''}${change.toFixed(4)}% | ${result.seconds.toFixed(1)} s |`);
    }
    console.log('\nLogits of a 64-token probe, max |difference| / max |logit| against the level-0 export (float activations and scales):');
    for (const [name, error] of Object.entries(logitErrors)) console.log(`- ${name}: ${error.toExponential(2)}`);
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
