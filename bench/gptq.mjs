// GPTQ on the shipped model, side by side in one run: our gptq quantizer (the sequential layer pass, WebAssembly
// column loop) against an independent PyTorch GPTQ written from the paper (bench/gptq_reference.py), and the
// perplexity of GPTQ, HQQ, RTN (and BAQ) at each config on brown-test.
//   - per matrix, the Hessian-weighted error tr((W - Q) H (W - Q)^T) (goal: within 1%), twice: each from its own
//     sequential pass (each pass feeds its own quantized matrices forward, so every later Hessian differs a little
//     and GPTQ's rounding carries that on), and on the same Hessians: our quantizer solving every matrix on the
//     Hessian the reference solved it on (dumped by gptq_reference.py --hessians), the solvers compared alone;
//   - whole-model perplexity of both GPTQ models with layerquant's evaluator (goal: within 0.2%);
//   - time and peak memory of each quantization (ours in a child preloaded with lib/report-peak.mjs; PyTorch's
//     max RSS), both on 2 threads;
//   - perplexity of every quantizer of --quantizers at every config, and (unless --no-kld) its KL divergence from the
//     float model on the same windows (llama.cpp's statistics: mean with its error, 99.9%, same top p), against a
//     float base computed once and cached (@layerquant/pipeline's floatKldBase, tokens x vocab x 4 bytes on disk).
// Usage: pnpm build && node bench/gptq.mjs [--blocks 32] [--seqlen 512] [--configs b4g128,b3g64,b2g64]
//          [--quantizers gptq,hqq,rtn] [--max-tokens N] [--no-anchor] [--no-kld] [--json results.json]
//          [--reference-float64]: the reference factorizes H in float64 as ours does (the paper's code: float32)
// Each row also goes to stderr as soon as it is measured (with the load average), and --json is rewritten after every
// row, so a run stopped part-way keeps what it measured.
// The smallest run that shows it works: --blocks 2 --configs b4g128 --max-tokens 4096 (minutes on 2 cores).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LINEAR_MODULES, matrixTensorName, parseConfigName } from '@layerquant/core';
import { brownCalibPath, brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { klDivergence, kldSummary, perplexity, readEvaluationText } from '@layerquant/perplexity';
import { floatKldBase } from '@layerquant/pipeline';
import { createGptqQuantizer } from '@layerquant/quantizers';
import { hessianWeightedError } from '@layerquant/quantizers/testing';
import { openModelWeights } from '@layerquant/quantizers/node';
import { loadDecoderModel } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { lastJson, pythonHas, runPython } from './lib/anchor.mjs';

const { values } = parseArgs({
  options: {
    blocks: { type: 'string', default: '32' },
    seqlen: { type: 'string', default: '512' },
    configs: { type: 'string', default: 'b4g128,b3g64,b2g64' },
    quantizers: { type: 'string', default: 'gptq,hqq,rtn' },
    'max-tokens': { type: 'string' },
    'no-anchor': { type: 'boolean' },
    'no-kld': { type: 'boolean' },
    'reference-float64': { type: 'boolean' },
    json: { type: 'string' },
  },
});
const blocks = Number(values.blocks);
const seqlen = Number(values.seqlen);
const configs = values.configs.split(',');
const quantizers = values.quantizers.split(',');
const THREADS = 2;
const CHILD = fileURLToPath(new URL('./lib/quantize-child.mjs', import.meta.url));
const PEAK_HOOK = fileURLToPath(new URL('./lib/report-peak.mjs', import.meta.url));
const REFERENCE = fileURLToPath(new URL('./gptq_reference.py', import.meta.url));
const haveTorch = !values['no-anchor'] && pythonHas('torch');
const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
const results = { started: new Date().toISOString(), blocks, seqlen, configs, quantizers, threads: THREADS, rows: [], anchor: [] };
const record = (kind, row, line) => {
  results[kind].push({ ...row, load: load(), at: new Date().toISOString() });
  console.error(`${line}   [load ${load()}]`);
  if (values.json) writeFileSync(values.json, `${JSON.stringify(results, null, 1)}\n`);
};

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-bench-gptq-'));
let kldBase; // the float model's distributions on the evaluation windows (unless --no-kld)
try {
  const tokenizer = await loadTokenizer(shippedModelDir);
  const calibrationIds = tokenizer.encode(readFileSync(brownCalibPath, 'utf8')).slice(0, blocks * seqlen);
  if (calibrationIds.length < blocks * seqlen) throw new Error(`brown-calib has ${calibrationIds.length} tokens, fewer than ${blocks} x ${seqlen}`);
  const idsPath = join(scratch, 'calibration.json');
  writeFileSync(idsPath, JSON.stringify(calibrationIds));
  let testIds = tokenizer.encode(await readEvaluationText(brownTestPath));
  if (values['max-tokens']) testIds = testIds.slice(0, Number(values['max-tokens']));
  const modelConfig = await loadDecoderConfig(shippedModelDir);
  console.error(`calibration: brown-calib, ${blocks} blocks x ${seqlen} tokens; evaluation: brown-test, ${testIds.length} tokens at ${seqlen}`);
  results.testTokens = testIds.length;

  if (!values['no-kld']) {
    const floatBase = await floatKldBase(shippedModelDir, testIds, { seqlen }, { evaluation: { threads: THREADS }, onCompute: (file, bytes) => console.error(`computing the float KLD base: ${file} (${(bytes / 2 ** 30).toFixed(2)} GiB)`) });
    kldBase = floatBase.base;
    results.kldBase = { computed: floatBase.computed, seconds: floatBase.seconds };
  }
  /** Perplexity, and the KLD summary from the float model where the base is there. */
  const evaluate = async (source, overrides) => {
    const model = await loadDecoderModel(source, modelConfig, { threads: THREADS, ...(overrides ? { overrides } : {}) });
    try {
      if (!kldBase) return { ppl: (await perplexity(model, testIds, { seqlen })).ppl };
      const result = await klDivergence(model, kldBase, testIds, { seqlen });
      return { ppl: result.perplexity.ppl, kld: kldSummary(result.statistics) };
    } finally {
      await model.dispose();
    }
  };
  const kldCells = (kld) => (kld ? `${kld.mean.toFixed(5)} ± ${kld.error.toFixed(5)} | ${kld.p999.toFixed(4)} | ${(100 * kld.sameTop).toFixed(2)}%` : '- | - | -');
  const quantizeInChild = (quantizer, config, outDir) => {
    const peakFile = join(scratch, 'peak');
    const stdout = execFileSync(process.execPath, ['--import', PEAK_HOOK, CHILD, shippedModelDir, outDir, quantizer, config, idsPath, String(blocks), String(seqlen)], {
      encoding: 'utf8',
      env: { ...process.env, LAYERQUANT_PEAK_FILE: peakFile },
      maxBuffer: 64 * 2 ** 20,
    });
    return { ...lastJson(stdout), peakBytes: Number(readFileSync(peakFile, 'utf8')) };
  };

  /**
   * Our GPTQ (the registry's quantizer, its WebAssembly kernel) on the Hessians the reference quantized with: every
   * matrix of the float checkpoint solved alone on the reference's own H (2 X^T X / N from its sequential pass), its
   * tr((W - Q) H (W - Q)^T) against the reference's on that same H.
   */
  const sameHessianErrors = async (config, hessianDir) => {
    const index = JSON.parse(readFileSync(join(hessianDir, 'index.json'), 'utf8'));
    const gptq = createGptqQuantizer();
    const parsed = parseConfigName(config);
    const checkpoint = await openCheckpoint(shippedModelDir);
    const errors = {};
    try {
      let current; // the modules sharing a Hessian are consecutive: one read per file
      for (const [key, file] of Object.entries(index)) {
        const [layer, ...module] = key.split('.');
        const weight = await checkpoint.read(matrixTensorName(Number(layer), module.join('.')));
        const columns = weight.shape[1];
        if (current?.file !== file) {
          const bytes = readFileSync(join(hessianDir, file));
          const data = new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
          if (data.length !== columns * columns) throw new Error(`${file}: ${data.length} values, not ${columns} x ${columns} (${key})`);
          current = { file, hessian: Object.freeze({ columns, samples: blocks * seqlen, data }) };
        }
        const dequantized = gptq.dequantize(gptq.quantize(weight, parsed, { hessian: current.hessian }));
        errors[key] = hessianWeightedError(weight.data, dequantized, current.hessian);
      }
    } finally {
      await checkpoint.close();
    }
    return errors;
  };
  /** How many of the reference's per-matrix errors another set is within 1% of, and the worst. */
  const deviationsFrom = (theirs, ours) => {
    const signed = Object.entries(theirs).map(([key, reference]) => ({ key, deviation: ours[key] / reference - 1 }));
    const deviations = signed.map(({ key, deviation }) => ({ key, deviation: Math.abs(deviation) }));
    return {
      within: deviations.filter((d) => d.deviation <= 0.01).length,
      matrices: deviations.length,
      worst: deviations.reduce((a, b) => (b.deviation > a.deviation ? b : a)),
      meanSigned: signed.reduce((sum, d) => sum + d.deviation, 0) / signed.length,
    };
  };

  const table = ['| config | quantizer | brown-test ppl | mean KLD | KLD 99.9% | same top | quantize time | peak memory |', '| --- | --- | --- | --- | --- | --- | --- | --- |'];
  const anchorTable = [
    '| config | matrices within 1%, each its own pass (worst) | matrices within 1%, same Hessians (worst) | ppl ours / PyTorch GPTQ (difference) | time ours / PyTorch (speed-up) | peak ours / PyTorch |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  const notes = [];
  for (const config of configs) {
    for (const quantizer of quantizers) {
      const outDir = join(scratch, `${quantizer}-${config}`);
      console.error(`${config}: quantizing with ${quantizer}...`);
      const ours = quantizeInChild(quantizer, config, outDir);
      const weights = await openModelWeights(outDir);
      const { ppl, kld } = await evaluate(weights);
      table.push(`| ${config} | ${quantizer} | ${ppl.toFixed(4)} | ${kldCells(kld)} | ${ours.seconds.toFixed(1)} s | ${mib(ours.peakBytes)} |`);
      record('rows', { config, quantizer, ppl, ...(kld ? { kld } : {}), seconds: ours.seconds, peakBytes: ours.peakBytes, notes: ours.notes ?? [] }, table.at(-1));
      for (const note of ours.notes ?? []) notes.push(`${config} ${quantizer} ${note}`);
      const bits = /^b(\d+)g(\d+)$/.exec(config);
      const oursPath = join(scratch, 'ours.f32');
      if (quantizer === 'gptq' && haveTorch) {
        // our dequantized matrices, layer-major (q, k, v, o, gate, up, down), for the reference to measure
        const chunks = [];
        for (let layer = 0; layer < modelConfig.numLayers; layer++) for (const module of LINEAR_MODULES) {
          const { data } = await weights.read(matrixTensorName(layer, module));
          chunks.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
        }
        writeFileSync(oursPath, Buffer.concat(chunks));
      }
      await weights.close();
      rmSync(outDir, { recursive: true, force: true });
      if (quantizer !== 'gptq' || !haveTorch) continue;

      console.error(`${config}: running the PyTorch GPTQ reference...`);
      const dequantizedPath = join(scratch, 'reference.f32');
      const common = [REFERENCE, shippedModelDir, idsPath, String(blocks), String(seqlen), bits[1], bits[2], '--threads', String(THREADS), ...(values['reference-float64'] ? ['--factor64'] : [])];
      const hessianDir = join(scratch, 'hessians');
      rmSync(hessianDir, { recursive: true, force: true });
      mkdirSync(hessianDir);
      const reference = lastJson(runPython([...common, '--out', dequantizedPath, '--hessians', hessianDir]));
      // ours measured by the same script: each matrix's Hessian from the layer pass with our earlier matrices in place
      const measured = lastJson(runPython([...common, '--evaluate', oursPath]));
      const { within, matrices, worst } = deviationsFrom(reference.errors, measured.errors);
      console.error(`${config}: our GPTQ on the reference's Hessians, matrix by matrix...`);
      const sameErrors = await sameHessianErrors(config, hessianDir);
      rmSync(hessianDir, { recursive: true, force: true });
      const same = deviationsFrom(reference.errors, sameErrors);
      const sum = (errors) => Object.values(errors).reduce((a, b) => a + b, 0);
      notes.push(`${config}: summed Hessian-weighted error ours ${sum(measured.errors).toPrecision(6)}, PyTorch ${sum(reference.errors).toPrecision(6)}`);
      // the reference's dequantized matrices (same layout) as overrides of the float model
      const all = new Float32Array(readFileSync(dequantizedPath).buffer.slice(0));
      const overrides = new Map();
      const checkpoint = await openCheckpoint(shippedModelDir);
      let offset = 0;
      for (let layer = 0; layer < modelConfig.numLayers; layer++) {
        for (const module of LINEAR_MODULES) {
          const name = matrixTensorName(layer, module);
          const size = checkpoint.info(name).shape.reduce((a, b) => a * b, 1);
          overrides.set(name, all.subarray(offset, offset + size));
          offset += size;
        }
      }
      const { ppl: referencePpl, kld: referenceKld } = await evaluate(checkpoint, overrides);
      if (referenceKld) notes.push(`${config}: mean KLD ours ${kld.mean.toFixed(5)}, PyTorch GPTQ ${referenceKld.mean.toFixed(5)} ± ${referenceKld.error.toFixed(5)}`);
      await checkpoint.close();
      anchorTable.push(
        `| ${config} | ${within} of ${matrices} (worst ${(100 * worst.deviation).toFixed(2)}%, ${worst.key}) | ${same.within} of ${same.matrices} (worst ${(100 * same.worst.deviation).toFixed(3)}%, ${same.worst.key}; mean signed ${(100 * same.meanSigned).toFixed(4)}%) | ${ppl.toFixed(4)} / ${referencePpl.toFixed(4)} (${((100 * (ppl - referencePpl)) / referencePpl).toFixed(3)}%) | ${ours.seconds.toFixed(1)} s / ${reference.seconds.toFixed(1)} s (${(reference.seconds / ours.seconds).toFixed(2)}x) | ${mib(ours.peakBytes)} / ${mib(reference.peakBytes)} |`,
      );
      record(
        'anchor',
        {
          config, ppl, referencePpl, seconds: ours.seconds, referenceSeconds: reference.seconds, referenceHessianSeconds: reference.hessianSeconds,
          referenceGptqSeconds: reference.gptqSeconds, peakBytes: ours.peakBytes, referencePeakBytes: reference.peakBytes,
          within, matrices, worst, errors: measured.errors, referenceErrors: reference.errors,
          sameHessians: { within: same.within, matrices: same.matrices, worst: same.worst, meanSigned: same.meanSigned, errors: sameErrors },
        },
        anchorTable.at(-1),
      );
    }
  }
  console.log(table.join('\n'));
  if (haveTorch && quantizers.includes('gptq')) console.log(`\nGPTQ against the PyTorch reference (bench/gptq_reference.py, ${THREADS} threads):\n${anchorTable.join('\n')}`);
  else if (quantizers.includes('gptq')) console.log(`\n(PyTorch GPTQ reference skipped: ${values['no-anchor'] ? '--no-anchor' : 'no /usr/bin/python3 with torch'})`);
  for (const note of notes) console.log(`- ${note}`);
} finally {
  await kldBase?.close();
  rmSync(scratch, { recursive: true, force: true });
}
