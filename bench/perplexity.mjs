// Perplexity speed and accuracy: `layerquant eval`'s path (onnxruntime, one session for all windows) against a
// plain PyTorch fp32 forward of the same model (bench/perplexity_anchor.py), both on 2 threads, one after the
// other in this run. Checks brown-test perplexity against reference-torch.json (0.05%) at seqlen 512 and 128.
// Usage: pnpm build && node bench/perplexity.mjs [--seqlen 512] [--no-anchor] [--quantized]
//   --quantized also quantizes the model with HQQ b4g64 and evaluates the quantized directory (oracles.json: 80.7907).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brownTestPath, referenceTorchPath, shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { perplexity, readEvaluationText } from '@layerquant/perplexity';
import { loadDecoderModel } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { lastJson, pythonHas, runPython } from './lib/anchor.mjs';
import { checkArguments } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { values: ['seqlen'], flags: ['no-anchor'] });

const args = process.argv.slice(2);
const seqlens = args.includes('--seqlen') ? [Number(args[args.indexOf('--seqlen') + 1])] : [512, 128];
const THREADS = 2;
const ANCHOR = fileURLToPath(new URL('./perplexity_anchor.py', import.meta.url));
const haveTorch = !args.includes('--no-anchor') && pythonHas('torch');
if (!haveTorch) console.log('(no PyTorch anchor: needs /usr/bin/python3 with torch; reporting our figures alone)\n');

const reference = JSON.parse(readFileSync(referenceTorchPath, 'utf8'));
const scratch = mkdtempSync(join(tmpdir(), 'layerquant-bench-ppl-'));
try {
  const tokenizer = await loadTokenizer(shippedModelDir);
  const ids = tokenizer.encode(await readEvaluationText(brownTestPath));
  const idsPath = join(scratch, 'ids.json');
  writeFileSync(idsPath, JSON.stringify(ids));

  let started = performance.now();
  const checkpoint = await openCheckpoint(shippedModelDir);
  const model = await loadDecoderModel(checkpoint, await loadDecoderConfig(shippedModelDir), { threads: THREADS });
  await checkpoint.close();
  const loadSeconds = (performance.now() - started) / 1000;
  console.log(`brown-test: ${ids.length} tokens (reference ${reference.token_counts['brown-test']}); model load + session: ${loadSeconds.toFixed(2)} s\n`);

  const rows = [];
  for (const seqlen of seqlens) {
    const ours = await perplexity(model, ids, { seqlen });
    const expected = reference[`brown-test@${seqlen}`];
    console.log(`seqlen ${seqlen}: ours ${ours.seconds.toFixed(1)} s, ${(ours.tokens / ours.seconds).toFixed(0)} tokens/s${haveTorch ? '; running the PyTorch anchor...' : ''}`);
    const anchor = haveTorch ? lastJson(runPython([ANCHOR, shippedModelDir, idsPath, String(seqlen), String(THREADS)])) : undefined;
    rows.push({ seqlen, ours, expected, anchor });
    const error = expected === undefined ? 'n/a' : `${((100 * Math.abs(ours.ppl - expected)) / expected).toFixed(4)}%`;
    console.log(`seqlen ${seqlen}: ours ppl ${ours.ppl.toFixed(4)} (reference ${expected?.toFixed(4) ?? '-'}, error ${error})${anchor ? `, PyTorch ppl ${anchor.ppl.toFixed(4)}` : ''}`);
  }
  await model.dispose();

  console.log('\n| brown-test | layerquant eval (onnxruntime, 2 threads) | PyTorch fp32 (2 threads) | speed-up |\n| --- | --- | --- | --- |');
  for (const { seqlen, ours, anchor } of rows) {
    const oursRate = ours.tokens / ours.seconds;
    const anchorRate = anchor ? anchor.tokens / anchor.seconds : undefined;
    console.log(
      `| seqlen ${seqlen} | ${oursRate.toFixed(0)} tokens/s (${ours.seconds.toFixed(1)} s) | ${anchorRate ? `${anchorRate.toFixed(0)} tokens/s (${anchor.seconds.toFixed(1)} s)` : '-'} | ${anchorRate ? `${(oursRate / anchorRate).toFixed(2)}x` : 'n/a'} |`,
    );
  }
  const failed = rows.filter((r) => r.expected !== undefined && Math.abs(r.ours.ppl - r.expected) / r.expected >= 5e-4);

  if (args.includes('--quantized')) {
    const { createHqqQuantizer } = await import('@layerquant/quantizers');
    const { quantizeModel, openModelWeights } = await import('@layerquant/quantizers/node');
    const { quantConfig } = await import('@layerquant/core');
    const outDir = join(scratch, 'b4g64');
    started = performance.now();
    await quantizeModel({ modelDir: shippedModelDir, outDir, quantizer: createHqqQuantizer(), configFor: () => quantConfig(4, 64), method: 'hqq', options: { config: 'b4g64' } });
    const quantizeSeconds = (performance.now() - started) / 1000;
    const weights = await openModelWeights(outDir);
    const quantized = await loadDecoderModel(weights, await loadDecoderConfig(outDir), { threads: THREADS });
    await weights.close();
    const result = await perplexity(quantized, ids, { seqlen: 512 });
    await quantized.dispose();
    const oracle = JSON.parse(readFileSync(join(shippedOraclesDir, 'oracles.json'), 'utf8')).table.find((r) => r.method === 'hqq' && r.budget === 4.25)?.ppl;
    console.log(`\nHQQ b4g64 quantized directory (quantized in ${quantizeSeconds.toFixed(1)} s): ppl ${result.ppl.toFixed(4)} at 512 (oracles.json ${oracle?.toFixed(4) ?? '-'}), ${(result.tokens / result.seconds).toFixed(0)} tokens/s`);
  }
  if (failed.length) {
    console.error(`\nFAILED: perplexity off by more than 0.05% at seqlen ${failed.map((r) => r.seqlen).join(', ')}`);
    process.exitCode = 1;
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
