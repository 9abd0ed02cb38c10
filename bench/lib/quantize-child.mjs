// One quantization in a child process (bench/gptq.mjs measures its time and, preloaded with report-peak.mjs, its
// peak memory): `quantizeModel` with a registry quantizer at one config, on the sequential layer pass when the
// quantizer is calibrated. Prints {seconds, quantizeSeconds, sqErr, notes}.
// usage: node bench/lib/quantize-child.mjs MODEL_DIR OUT_DIR QUANTIZER CONFIG [IDS_JSON BLOCKS SEQLEN] [--option name=value ...]
import { readFileSync } from 'node:fs';
import { parseConfigName } from '@layerquant/core';
import { QUANTIZER_PLUGINS, configureQuantizer, createQuantizerRegistry } from '@layerquant/quantizers';
import { quantizeModel } from '@layerquant/quantizers/node';
import { openSequentialCalibration } from '@layerquant/sensitivity';

const argv = process.argv.slice(2);
const options = {};
for (let i = argv.indexOf('--option'); i >= 0; i = argv.indexOf('--option')) {
  const [name, value] = argv[i + 1].split('=');
  options[name] = value === 'true' ? true : value === 'false' ? false : Number(value);
  argv.splice(i, 2);
}
const [modelDir, outDir, id, configText, idsPath, blocksText, seqlenText] = argv;
const quantizer = configureQuantizer(createQuantizerRegistry(QUANTIZER_PLUGINS).get(id), options);
const config = parseConfigName(configText);

const started = performance.now();
let opened;
if (quantizer.calibration) {
  const ids = Int32Array.from(JSON.parse(readFileSync(idsPath, 'utf8')));
  const blocks = Number(blocksText);
  const seqlen = Number(seqlenText);
  opened = await openSequentialCalibration(modelDir, { calibration: { ids: ids.subarray(0, blocks * seqlen), blocks, seqlen }, threads: 2 });
}
const report = await quantizeModel({ modelDir, outDir, quantizer, configFor: () => config, ...(opened ? { calibration: opened.calibration } : { workers: 2 }) });
const wall = (performance.now() - started) / 1000;
await opened?.close();
const notes = report.perMatrix.filter((m) => m.report && (m.report.deadColumns > 0 || m.report.dampeningRetries > 0)).map((m) => `${m.key}: ${JSON.stringify(m.report)}`);
console.log(JSON.stringify({ seconds: wall, quantizeSeconds: report.quantizeSeconds, sqErr: report.sqErr, notes }));
