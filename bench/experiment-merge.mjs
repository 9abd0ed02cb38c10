// Merges the results.json of several `layerquant experiment` runs on the same model and text (e.g. methods run in
// parallel processes, each with its own --out) into one table: results.md (with the paired bootstrap intervals
// against HQQ uniform and MXQ), results.csv and results.json in --out. Rows of the same method and budget must not
// repeat; the runs' settings must agree on model, text, tokens and seqlen.
// --between 2.8,3.8: rows of the plug-ins that need a budget stop (uniform, the boosts) at those budgets are the rows
// of the highest stop below (the experiment runs them there: the same allocation, so the same perplexity), copied
// with the budget and "at stop ..." in the options instead of evaluated again.
// usage: node bench/experiment-merge.mjs --out <dir> [--between 2.8,3.8] <run-dir> [<run-dir> ...]   (after `pnpm build`)
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { ALLOCATOR_PLUGINS, floorStop, parseMethodName } from '@layerquant/allocators';
import { formatResultsCsv, formatResultsMarkdown, rowForFile, rowFromFile } from '@layerquant/experiment';

const { values, positionals } = parseArgs({ options: { out: { type: 'string' }, order: { type: 'string' }, between: { type: 'string' } }, allowPositionals: true });
if (!values.out || positionals.length === 0) {
  console.error('usage: node bench/experiment-merge.mjs --out <dir> [--order hqq,mxq,...] <run-dir> [<run-dir> ...]');
  process.exit(1);
}
const runs = positionals.map((dir) => ({ dir, ...JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) }));
const key = (s) => JSON.stringify([s.model, s.text, s.tokens, s.seqlen, s.maxTokens]);
for (const run of runs) {
  if (key(run.settings) !== key(runs[0].settings)) throw new Error(`${run.dir}: settings differ from ${runs[0].dir} (model, text, tokens, seqlen)`);
}
const rows = [];
for (const run of runs) {
  // A row of results.json (`perplexity`; `ppl` in version 2 files) as the report functions take it.
  for (const row of run.rows.map(rowFromFile)) {
    if (rows.some((r) => r.method === row.method && r.budget === row.budget)) throw new Error(`${run.dir}: ${row.method} @ ${row.budget} is in two runs`);
    rows.push({ ...row, extraMemoryPercent: row.extraMemoryPercent ?? Number.NaN });
  }
}
for (const budget of (values.between ?? '').split(',').filter(Boolean).map(Number)) {
  const stop = floorStop(budget);
  for (const row of rows.filter((r) => r.budget === stop)) {
    const plugin = ALLOCATOR_PLUGINS.find((p) => p.id === parseMethodName(row.method).allocator);
    if (plugin.budget !== 'stop' || rows.some((r) => r.method === row.method && r.budget === budget)) continue;
    rows.push({ ...row, budget, options: [row.options, `at stop ${stop} (row of ${stop}, not re-evaluated)`].filter(Boolean).join(' '), seconds: 0 });
  }
}
const order = (values.order ?? '').split(',').filter(Boolean);
const rank = (m) => (m === 'fp' ? -1 : order.includes(m) ? order.indexOf(m) : order.length);
rows.sort((a, b) => (a.budget ?? -1) - (b.budget ?? -1) || rank(a.method) - rank(b.method));
const s = runs[0].settings;
const md = formatResultsMarkdown(rows, {
  model: basename(s.model),
  text: basename(s.text),
  tokens: s.maxTokens ? Math.min(s.maxTokens, s.tokens) : s.tokens,
  protocol: `non-overlapping windows of ${s.seqlen}`,
  statsSource: [...new Set(runs.map((r) => r.settings.stats))].join(' and '),
});
mkdirSync(values.out, { recursive: true });
const write = (name, text) => {
  const path = join(values.out, name);
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
};
write('results.md', md);
write('results.csv', formatResultsCsv(rows));
write('results.json', `${JSON.stringify({ settings: { ...s, stats: [...new Set(runs.map((r) => r.settings.stats))].join(' and '), merged: runs.map((r) => r.dir) }, rows: rows.map(rowForFile) }, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 1)}\n`);
console.log(md);
