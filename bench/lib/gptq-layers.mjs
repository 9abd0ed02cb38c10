// GPTQ of the first N layers of a checkpoint on the sequential layer pass (the pass quantizeModel runs, without
// writing a file): blocks of random token ids, every matrix of a layer quantized as it is reached, the column loops
// on a pool of 2 workers. Prints one JSON line: seconds, the first layer's seconds, matrices, and the whole model's
// time extrapolated from the first layer (what quantize's plan line estimates).
// usage: node bench/lib/gptq-layers.mjs MODEL_DIR LAYERS BLOCKS SEQLEN CONFIG IDS_JSON
import { readFileSync } from 'node:fs';
import { LINEAR_MODULES, matrixKey, matrixTensorName, parseConfigName } from '@layerquant/core';
import { gptqQuantizer } from '@layerquant/quantizers';
import { createKernelPool } from '@layerquant/quantizers/node';
import { openSequentialCalibration } from '@layerquant/sensitivity';
import { openModel } from '@layerquant/tensor-io';

const [modelDir, layersText, blocksText, seqlenText, configText, idsPath] = process.argv.slice(2);
const layers = Number(layersText);
const blocks = Number(blocksText);
const seqlen = Number(seqlenText);
const config = parseConfigName(configText);
const ids = Int32Array.from(JSON.parse(readFileSync(idsPath, 'utf8')).slice(0, blocks * seqlen));
const { config: modelConfig, checkpoint } = await openModel(modelDir);
const started = performance.now();
const opened = await openSequentialCalibration(modelDir, { calibration: { ids, blocks, seqlen }, threads: 2 });
const pool = createKernelPool(2);
const layerSeconds = [];
try {
  for (let layer = 0; layer < layers; layer++) {
    const layerStart = performance.now();
    // a layer's matrices side by side, as quantizeModel starts them ahead (each waits in its context for those before)
    await Promise.all(LINEAR_MODULES.map(async (module) => {
      const name = matrixTensorName(layer, module);
      const weight = await checkpoint.read(name);
      const matrix = { key: matrixKey(layer, module), name, layer, module, shape: [weight.shape[0], weight.shape[1]] };
      const context = await opened.calibration.context(matrix);
      // as quantizeModel does: the Hessian's factorization split over this thread and the pool's workers
      const q = await gptqQuantizer.quantizeOn((p) => pool.runGptq(p), weight, config, context, pool.choleskyThreads);
      opened.calibration.done(matrix, gptqQuantizer.dequantize(q));
    }));
    layerSeconds.push((performance.now() - layerStart) / 1000);
  }
} finally {
  await pool.close();
  await opened.close();
  await checkpoint.close();
}
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ layers, matrices: layers * LINEAR_MODULES.length, seconds, layerSeconds, estimateSeconds: (seconds / layers) * modelConfig.numLayers }));
