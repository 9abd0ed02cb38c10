import { quantConfig } from '@layerquant/core';
import { loadDecoderBlocks, type DecoderBlocks } from '@layerquant/runtime';
import { randomDecoderSource, tinyConfig } from '@layerquant/runtime/testing';
import { activationSensitivityMetric, endToEndKldMetric, frobeniusMetric, kurtosisMetric, measuredErrorMetric } from './metrics.js';
import { runMetricConformance } from './testing.js';
import { freemem } from 'node:os';

// Every built-in metric plug-in passes the suite a contributed one must pass, on a tiny random GQA Llama.
const config = tinyConfig({ numLayers: 2 });
const configs = [quantConfig(2, 16), quantConfig(4, 16), quantConfig(8, 16), quantConfig(3, 8), quantConfig(4, 8)];
const seqlen = 12;
const ids = Int32Array.from({ length: 2 * seqlen }, (_, i) => (i * 37 + 11) % config.vocabSize);
const activations = async (): Promise<{ model: DecoderBlocks; calibration: Int32Array }> => ({
  model: await loadDecoderBlocks(randomDecoderSource(config, 7), config, { threads: 1 }),
  calibration: ids,
});
const dispose = async (input: { model: DecoderBlocks }) => input.model.dispose();

runMetricConformance(kurtosisMetric, { input: () => randomDecoderSource(config, 3), layers: config.numLayers });
runMetricConformance(frobeniusMetric, { input: () => randomDecoderSource(config, 3), options: { configs }, layers: config.numLayers });
runMetricConformance(activationSensitivityMetric, { input: activations, dispose, options: { seqlen, batchSize: 1, config: quantConfig(4, 16) }, layers: config.numLayers });
runMetricConformance(measuredErrorMetric, { input: activations, dispose, options: { configs, seqlen, batchSize: 1 }, layers: config.numLayers });
// kld holds every layer's weights: it is told the free memory, as measureMetrics tells it.
runMetricConformance(endToEndKldMetric, { input: activations, dispose, options: { configs: [quantConfig(2, 16), quantConfig(4, 16), quantConfig(8, 16)], seqlen, batchSize: 1, availableMemoryBytes: freemem() }, layers: config.numLayers });
