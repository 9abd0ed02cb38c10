// The paper's comparison on the shipped model, against the PyTorch oracle (oracles/oracles.json: the authors'
// method with upstream HQQ in PyTorch, perplexity of brown-test at 512). Runs `layerquant experiment` with the
// oracle's own statistics, so every allocation is the oracle's, and reports our perplexity against theirs.
// The grid runs through @layerquant/experiment (prepareGrid, runGrid), the calls `layerquant experiment` makes.
// usage: node bench/experiment.mjs [--budgets 2.25,3.25] [--out out/bench-experiment]   (after `pnpm build`)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { datasets } from '@layerquant/datasets';
import { expandMethodList } from '@layerquant/allocators';
import { parseBudgets, prepareGrid, runGrid } from '@layerquant/experiment';

const root = fileURLToPath(new URL('..', import.meta.url));
const model = join(root, 'packages/fixtures/models/llama-brown-26m');
const oracleDir = join(model, 'oracles');
const { values } = parseArgs({ options: { budgets: { type: 'string', default: '2.25,2.51,3.13,3.25,3.51,4.13,4.25,4.51' }, out: { type: 'string', default: join(root, 'out/bench-experiment') } } });
const oracle = JSON.parse(readFileSync(join(oracleDir, 'oracles.json'), 'utf8'));
const methods = 'hqq,mxq,sensiboost-2-1,sensiboost-3-0,kurtboost-2-1,kurtboost-3-0';
const started = performance.now();
const grid = await prepareGrid({ modelDir: model, methods: expandMethodList(methods), budgets: parseBudgets(values.budgets), textPath: datasets['brown-test'] });
const { rows } = await runGrid(grid, { outDir: values.out, statistics: { statsDir: oracleDir, calibrationPath: datasets['brown-calib'], calibrationName: 'brown-calib', blocks: 128 } });
const seconds = (performance.now() - started) / 1000;
console.log('| budget | method | bpp (ours) | bpp (oracle) | perplexity (ours) | perplexity (PyTorch) | difference |');
console.log('| ---: | --- | ---: | ---: | ---: | ---: | ---: |');
let worst = 0;
for (const r of rows) {
  const o = r.method === 'fp' ? { bpp: 16, ppl: oracle['fp_ppl@512'] } : oracle.table.find((x) => x.method === r.method && x.budget === r.budget);
  if (!o) continue;
  const diff = (r.ppl - o.ppl) / o.ppl;
  worst = Math.max(worst, Math.abs(diff));
  console.log(`| ${r.budget ?? '-'} | ${r.method} | ${r.bpp.toFixed(6)} | ${o.bpp.toFixed(6)} | ${r.ppl.toFixed(4)} | ${o.ppl.toFixed(4)} | ${(100 * diff).toFixed(3)}% |`);
}
const evaluated = rows.length;
console.log(`\n${evaluated} cells in ${seconds.toFixed(0)} s (${(seconds / evaluated).toFixed(1)} s a cell, statistics from the oracle); worst difference ${(100 * worst).toFixed(3)}% (goal: under 0.1%).`);
console.log('The PyTorch anchor measured 421 s for one brown-test@512 evaluation on this machine (SPEC.md section 5).');
