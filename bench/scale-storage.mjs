// What storing scales and zeros as fp16 or 8 bits (quantize --scale-dtype f16|u8) costs against fp32: per-matrix
// relative Frobenius error ||W - W_q||_F / ||W||_F and the whole-text perplexity of brown-test@512, HQQ on the shipped
// model, one run, every variant on the same windows.
// Usage: pnpm build && node bench/scale-storage.mjs [--configs b2g64,b3g64,b4g64] [--dtypes F32,F16,U8] [--windows N]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigName } from '@layerquant/core';
import { brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { perplexity, readEvaluationText } from '@layerquant/perplexity';
import { createHqqQuantizer } from '@layerquant/quantizers';
import { openModelWeights, quantizeModel } from '@layerquant/quantizers/node';
import { loadDecoderModel } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { checkArguments } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { values: ['configs', 'dtypes', 'windows'] });

const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const configs = option('configs', 'b2g64,b3g64,b4g64').split(',');
const dtypes = option('dtypes', 'F32,F16,U8').split(',');
const windows = option('windows', undefined);
const scratch = mkdtempSync(join(tmpdir(), 'layerquant-bench-scales-'));
try {
  const original = await openCheckpoint(shippedModelDir);
  const norms = new Map();
  for (const info of original.tensors) {
    if (!/\.(q|k|v|o|gate|up|down)_proj\.weight$/.test(info.name)) continue;
    const { data } = await original.read(info.name);
    let sum = 0;
    for (let i = 0; i < data.length; i++) sum += data[i] * data[i];
    norms.set(info.name, sum);
  }
  await original.close();
  const tokenizer = await loadTokenizer(shippedModelDir);
  let ids = tokenizer.encode(await readEvaluationText(brownTestPath));
  if (windows !== undefined) ids = ids.slice(0, Number(windows) * 512);
  const rows = [];
  for (const config of configs) {
    const reports = {};
    for (const scaleDtype of dtypes) {
      const outDir = join(scratch, `${config}-${scaleDtype}`);
      const report = await quantizeModel({ modelDir: shippedModelDir, outDir, quantizer: createHqqQuantizer(), configFor: () => parseConfigName(config), method: 'hqq', scaleDtype, workers: 2 });
      reports[scaleDtype] = report;
      const weights = await openModelWeights(outDir);
      const model = await loadDecoderModel(weights, await loadDecoderConfig(outDir), { threads: 2 });
      await weights.close();
      const started = performance.now();
      const result = await perplexity(model, ids, { seqlen: 512 });
      await model.dispose();
      const relative = report.perMatrix.map((m) => Math.sqrt(m.sqErr / norms.get(m.name)));
      const base = scaleDtype === 'F32' ? undefined : reports.F32?.perMatrix.map((m) => Math.sqrt(m.sqErr / norms.get(m.name)));
      const increase = base ? relative.map((r, i) => r / base[i] - 1).sort((a, b) => a - b) : undefined;
      const row = {
        config, scaleDtype, ppl: result.ppl, tokens: result.tokens, evalSeconds: (performance.now() - started) / 1000,
        bitsOnDisk: (8 * report.bytes) / report.params, paperBits: report.bpp, sqErr: report.sqErr,
        relFrobeniusMean: relative.reduce((a, b) => a + b, 0) / relative.length,
        increaseMedian: increase?.[Math.floor(increase.length / 2)], increaseMax: increase?.at(-1),
        pplChange: scaleDtype !== 'F32' && reports.F32 ? result.ppl / rows.find((r) => r.config === config && r.scaleDtype === 'F32').ppl - 1 : undefined,
      };
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  }
  console.log('\n| config | scales | on disk bits/weight | paper bits/weight | mean rel. Frobenius error | error vs fp32 (median / max over 224 matrices) | ppl brown-test@512 | vs fp32 |');
  console.log('| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |');
  for (const r of rows) {
    const pct = (x) => (x === undefined ? '-' : `${x >= 0 ? '+' : ''}${(100 * x).toFixed(3)}%`);
    console.log(`| ${r.config} | ${r.scaleDtype} | ${r.bitsOnDisk.toFixed(4)} | ${r.paperBits.toFixed(4)} | ${r.relFrobeniusMean.toFixed(5)} | ${r.scaleDtype === 'F32' ? '-' : `${pct(r.increaseMedian)} / ${pct(r.increaseMax)}`} | ${r.ppl.toFixed(4)} | ${r.scaleDtype === 'F32' ? '-' : pct(r.pplChange)} |`);
  }
  console.log(`\n(${rows[0]?.tokens} tokens per evaluation)`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
