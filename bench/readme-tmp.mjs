import { quantConfig, seededRandom } from '@layerquant/core';
import { gptqQuantizer, rtnQuantizer } from '@layerquant/quantizers';
const random = seededRandom(1);
const weight = { name: 'w', dtype: 'F32', shape: [64, 256], data: Float32Array.from({ length: 64 * 256 }, () => (random() - 0.5) / 8) };
const x = Float64Array.from({ length: 1024 * 256 }, (_, i) => random() - 0.5 + (i % 256 < 32 ? 2 * (random() - 0.5) : 0));
const data = new Float64Array(256 * 256);
for (let n = 0; n < 1024; n++) for (let i = 0; i < 256; i++) for (let j = 0; j < 256; j++) data[i * 256 + j] += (2 / 1024) * x[n * 256 + i] * x[n * 256 + j];
const hessian = { columns: 256, samples: 1024, data };

const outputError = (values) => { // tr((W - Q) H (W - Q)^T)
  let total = 0;
  for (let r = 0; r < 64; r++) for (let i = 0; i < 256; i++) for (let j = 0; j < 256; j++) total += (weight.data[r * 256 + i] - values[r * 256 + i]) * data[i * 256 + j] * (weight.data[r * 256 + j] - values[r * 256 + j]);
  return total;
};
const config = quantConfig(3, 64);
const q = gptqQuantizer.quantize(weight, config, { hessian });
console.log(q.report); // { deadColumns: 0, dampening: 0.01, dampeningRetries: 0 }
console.log(outputError(gptqQuantizer.dequantize(q)) < outputError(rtnQuantizer.dequantize(rtnQuantizer.quantize(weight, config)))); // true
