// Per-window oracle figures of one experiment cell, for the CLI test that checks `layerquant experiment` against the
// PyTorch oracle on a few windows (apps/cli/test/experiment.test.ts) instead of the whole text (bench/experiment.mjs
// keeps that check): SensiBoost 2-1 at 2.25 bits on the shipped model with the oracles' statistics, allocated by
// `layerquant allocate` (its bits per weight are oracles.json's to the last digit), every matrix dequantized by
// upstream HQQ in plain PyTorch fp32 and evaluated there (bench/perplexity_anchor.py --allocation) on the first
// --windows windows of brown-test at 512 tokens. Writes packages/fixtures/models/llama-brown-26m/
// reference-experiment-windows.json. --whole also evaluates the whole text and records it beside oracles.json's
// perplexity of the same cell: the check that this PyTorch pipeline reproduces the oracle (minutes: the whole text).
// usage: pnpm build && node bench/experiment-oracle-windows.mjs [--windows 4] [--whole]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { brownTestPath, referenceExperimentWindowsPath, shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { readEvaluationText } from '@layerquant/perplexity';
import { loadTokenizer } from '@layerquant/tensor-io';
import { lastJson, pythonHas, runPython } from './lib/anchor.mjs';

const { values } = parseArgs({ options: { windows: { type: 'string', default: '4' }, whole: { type: 'boolean' } } });
const windows = Number(values.windows);
const cell = { method: 'sensiboost-2-1', budget: 2.25, seqlen: 512 };
if (!pythonHas('torch')) {
  console.error('needs /usr/bin/python3 with torch (Debian: apt install python3-torch)');
  process.exit(2);
}
const cli = fileURLToPath(new URL('../apps/cli/dist/bin.js', import.meta.url));
const anchor = fileURLToPath(new URL('./perplexity_anchor.py', import.meta.url));
const oracle = JSON.parse(readFileSync(join(shippedOraclesDir, 'oracles.json'), 'utf8')).table.find((r) => r.method === cell.method && r.budget === cell.budget);

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-oracle-windows-'));
try {
  const allocated = JSON.parse(execFileSync(process.execPath, [cli, 'allocate', '--stats', shippedOraclesDir, '--method', cell.method, '--budget', String(cell.budget), '--model', shippedModelDir, '--json'], { encoding: 'utf8' }));
  const bpp = allocated.sizes.paperBitsPerWeight;
  if (bpp !== oracle.bpp) throw new Error(`layerquant allocates ${bpp} bits per weight, oracles.json ${oracle.bpp}: not the oracle's allocation`);
  const allocationPath = join(scratch, 'allocation.json');
  writeFileSync(allocationPath, JSON.stringify(allocated.allocation));
  const ids = (await loadTokenizer(shippedModelDir)).encode(await readEvaluationText(brownTestPath));
  const idsPath = join(scratch, 'ids.json');
  writeFileSync(idsPath, JSON.stringify(ids));

  const prefix = lastJson(runPython([anchor, shippedModelDir, idsPath, String(cell.seqlen), '2', String(windows * cell.seqlen), '--allocation', allocationPath]));
  console.log(`first ${windows} windows: perplexity ${prefix.ppl.toFixed(6)} (PyTorch, ${prefix.seconds.toFixed(1)} s)`);
  let wholeText;
  if (values.whole) {
    const whole = lastJson(runPython([anchor, shippedModelDir, idsPath, String(cell.seqlen), '2', '--allocation', allocationPath]));
    wholeText = { windows: whole.windowNll.length, perplexity: whole.ppl, oraclesJson: oracle.ppl, relativeDifference: whole.ppl / oracle.ppl - 1 };
    console.log(`whole text: ${wholeText.windows} windows, perplexity ${whole.ppl.toFixed(6)} against oracles.json ${oracle.ppl.toFixed(6)} (${(100 * wholeText.relativeDifference).toFixed(4)}%), ${whole.seconds.toFixed(0)} s`);
  }
  const previous = (() => {
    try {
      return JSON.parse(readFileSync(referenceExperimentWindowsPath, 'utf8'));
    } catch {
      return {};
    }
  })();
  const fixture = {
    source: 'bench/experiment-oracle-windows.mjs: `layerquant allocate` of the cell with the oracles\' statistics, upstream HQQ (axis 1) and the fp32 forward in PyTorch (bench/perplexity_anchor.py --allocation)',
    ...cell,
    text: 'brown-test',
    bpp,
    windows,
    windowNll: prefix.windowNll,
    windowTokens: prefix.windowTokens,
    perplexity: prefix.ppl,
    // Kept from an earlier --whole run when this one has none: it checks the pipeline, not these windows.
    ...(wholeText ? { wholeText } : previous.wholeText ? { wholeText: previous.wholeText } : {}),
  };
  writeFileSync(`${referenceExperimentWindowsPath}.tmp`, `${JSON.stringify(fixture, null, 1)}\n`);
  renameSync(`${referenceExperimentWindowsPath}.tmp`, referenceExperimentWindowsPath);
  console.log(`wrote ${referenceExperimentWindowsPath}`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
