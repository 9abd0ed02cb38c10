// Activation sensitivity, fnorm table and kurtosis of the shipped model against its oracles and a PyTorch anchor.
// usage: pnpm build && node bench/sensitivity.mjs [--blocks 32] [--no-fnorm]
// Ours: brown-calib tokenized whole, the first 32 blocks of 512 tokens in order, HQQ b4g64 (the oracle's setting).
// Anchor: bench/sensitivity-reference.py (the same method in plain PyTorch fp32, 2 threads) on the same token ids.
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  SENSITIVITY_PARTS,
  kurtosisOutliers,
  outlierLayerNumbers,
  parseFnormCsv,
  parseSensitivityCsv,
  sensitivityOutliers,
} from '@layerquant/allocators';
import { brownCalibPath, shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { loadDecoderBlocks } from '@layerquant/runtime';
import { createKernelPool } from '@layerquant/quantizers/node';
import { activationSensitivity, calibrationBlocks, frobeniusTable } from '@layerquant/sensitivity';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { TABLE_HEADER, lastJson, pythonHas, ratioRow, runPython, timeIt } from './lib/anchor.mjs';

const { values } = parseArgs({ options: { blocks: { type: 'string', default: '32' }, 'no-fnorm': { type: 'boolean' } } });
const blocks = Number(values.blocks);
const seqlen = 512;
const oracleSensitivity = parseSensitivityCsv(readFileSync(`${shippedOraclesDir}/sensitivity.csv`, 'utf8'));
const oracleFnorm = parseFnormCsv(readFileSync(`${shippedOraclesDir}/fnorm.csv`, 'utf8'));
const oracles = JSON.parse(readFileSync(`${shippedOraclesDir}/oracles.json`, 'utf8'));

const tokenizer = await loadTokenizer(shippedModelDir);
const calibration = calibrationBlocks(readFileSync(brownCalibPath, 'utf8'), tokenizer, { blocks, seqlen });
const checkpoint = await openCheckpoint(shippedModelDir);
const config = await loadDecoderConfig(shippedModelDir);

const rows = [TABLE_HEADER];
const notes = [];
const load = await timeIt(() => loadDecoderBlocks(checkpoint, config, { threads: 2 }));
const model = load.value;
const ours = await timeIt(() => activationSensitivity(model, calibration, { dataset: 'brown-calib', model: 'llama-brown-26m' }));
await model.dispose();
// Progress on stderr, so a run cut short still says something; the table follows at the end.
console.error(`ours: activation sensitivity ${ours.seconds.toFixed(1)} s; running the PyTorch anchor (about 75 s on a quiet 2-core machine)...`);

const worstAgainst = (reference) => {
  const worst = {};
  for (const row of ours.value.rows) {
    const expected = reference.find((r) => r.part === row.part && r.layer === row.layer);
    if (!expected) continue;
    const deviation = Math.abs(row.sensitivity / expected.sensitivity - 1);
    if (!worst[row.part] || deviation > worst[row.part].deviation) worst[row.part] = { deviation, layer: row.layer };
  }
  return SENSITIVITY_PARTS.map((p) => `${p} ${(100 * worst[p].deviation).toFixed(2)}% (layer ${worst[p].layer})`).join(', ');
};

let anchorSeconds;
if (pythonHas('torch')) {
  const dir = mkdtempSync(join(tmpdir(), 'layerquant-bench-'));
  try {
    const idsPath = join(dir, 'ids.json');
    writeFileSync(idsPath, JSON.stringify(Array.from(calibration.ids)));
    const script = fileURLToPath(new URL('./sensitivity-reference.py', import.meta.url));
    const anchor = lastJson(runPython([script, shippedModelDir, idsPath, String(calibration.blocks), String(seqlen), '4', '64', '--threads', '2']));
    anchorSeconds = anchor.seconds;
    notes.push(`ours vs PyTorch anchor, worst per part: ${worstAgainst(anchor.rows)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  notes.push('no /usr/bin/python3 with torch: PyTorch anchor skipped');
}
rows.push(ratioRow(`activation sensitivity, ${calibration.blocks} blocks x ${seqlen} tokens, 32 layers (b4g64)`, ours.seconds, anchorSeconds));
notes.push(`model load (all weights to float32, 3 ONNX sessions): ${load.seconds.toFixed(2)} s`);
if (calibration.blocks === 32) {
  notes.push(`ours vs oracle sensitivity.csv, worst per part: ${worstAgainst(oracleSensitivity.rows)}`);
  for (const topM of [1, 0]) {
    const found = outlierLayerNumbers(sensitivityOutliers({ sensitivity: ours.value }, 32, { topM }));
    const same = JSON.stringify(found) === JSON.stringify(oracles.outliers.sensiboost[String(topM)]);
    notes.push(`SensiBoost outliers top_m=${topM}: ${same ? 'same as oracles.json' : `DIFFER: ${JSON.stringify(found)}`}`);
  }
}

if (!values['no-fnorm']) {
  const single = await timeIt(() => frobeniusTable(checkpoint));
  rows.push(ratioRow(`fnorm table, ${single.value.rows.length / 12} matrices x 12 configs (HQQ), with kurtosis, 1 thread`, single.seconds, undefined));
  const pool = createKernelPool(2);
  const fnorm = await timeIt(() => frobeniusTable(checkpoint, undefined, { pool }));
  await pool.close();
  rows.push(ratioRow('the same on 2 worker threads', fnorm.seconds, undefined));
  if (JSON.stringify(fnorm.value) !== JSON.stringify(single.value)) notes.push('WORKERS DIFFER from the calling thread');
  let worst = 0;
  let worstKurtosis = 0;
  for (const [i, row] of fnorm.value.rows.entries()) {
    worst = Math.max(worst, Math.abs(row.fnorm / oracleFnorm.rows[i].fnorm - 1));
    worstKurtosis = Math.max(worstKurtosis, Math.abs(row.kurtosis / oracleFnorm.rows[i].kurtosis - 1));
  }
  notes.push(`fnorm vs oracle fnorm.csv: worst ${(100 * worst).toFixed(3)}% over ${fnorm.value.rows.length} rows; kurtosis worst relative ${worstKurtosis.toExponential(2)}`);
  for (const topM of [1, 0]) {
    const found = outlierLayerNumbers(kurtosisOutliers({ fnorm: fnorm.value }, 32, { topM }));
    const same = JSON.stringify(found) === JSON.stringify(oracles.outliers.kurtboost[String(topM)]);
    notes.push(`KurtBoost outliers top_m=${topM}: ${same ? 'same as oracles.json' : `DIFFER: ${JSON.stringify(found)}`}`);
  }
}
await checkpoint.close();

console.log(rows.join('\n'));
console.log('');
for (const note of notes) console.log(`- ${note}`);
