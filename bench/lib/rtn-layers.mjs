// RTN b4g64 of the linear matrices of the first N layers of a checkpoint, read one matrix at a time: our time
// (quantize only, as the anchor) and, when /usr/bin/python3 has torch and HQQ_SRC holds upstream's hqq/, PyTorch's
// on the same matrices. usage: node bench/lib/rtn-layers.mjs MODEL_DIR LAYERS ANCHOR_SCRIPT -> one JSON line
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { matrixOfTensorName, parseConfigName } from '@layerquant/core';
import { rtnQuantizer } from '@layerquant/quantizers';
import { openCheckpoint } from '@layerquant/tensor-io';
import { lastJson, pythonHas, runPython } from './anchor.mjs';

const [modelDir, layersText, anchorScript] = process.argv.slice(2);
const layers = Number(layersText);
const config = parseConfigName('b4g64');
const checkpoint = await openCheckpoint(modelDir);
let seconds = 0;
let params = 0;
let matrices = 0;
for (const info of checkpoint.tensors) {
  const m = matrixOfTensorName(info.name);
  if (!m || m.layer >= layers) continue;
  const weight = await checkpoint.read(info.name);
  const start = performance.now();
  rtnQuantizer.quantize(weight, config);
  seconds += (performance.now() - start) / 1000;
  params += weight.data.length;
  matrices++;
}
await checkpoint.close();
const hqqSrc = process.env.HQQ_SRC ?? '/tmp/hqq-src';
let anchor;
if (existsSync(join(hqqSrc, 'hqq', 'core', 'quantize.py')) && pythonHas('torch')) {
  anchor = lastJson(runPython([anchorScript, modelDir, String(layers), hqqSrc]));
}
console.log(JSON.stringify({
  matrices, params, oursSeconds: seconds, torchSeconds: anchor?.rtn_b4g64_s,
  speedUp: anchor ? anchor.rtn_b4g64_s / seconds : undefined,
}));
