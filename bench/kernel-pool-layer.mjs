// One decoder layer's seven matrices of a real shape (random weights), HQQ b4g64 quantized + dequantized: in the
// calling thread one after another, and all at once on a kernel worker pool (what `sensitivity` does per layer).
// A benchmark, not a test. Usage: pnpm build && node bench/kernel-pool-layer.mjs [--shape tinyllama|llama-3.2-3b|llama-2-7b] [--workers N] [--reps N]
import { parseConfigName } from '@layerquant/core';
import { assembleQuantized, hqqQuantizer, prepareGroups, squaredError } from '@layerquant/quantizers';
import { createKernelPool, defaultWorkerCount } from '@layerquant/quantizers/node';
import { argument, checkArguments, shapeArgument } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { values: ['workers', 'reps', 'shape'] });

const { shapeName, shape } = shapeArgument();
const workers = Number(argument('workers', String(defaultWorkerCount())));
const reps = Number(argument('reps', '2'));
const { hidden: h, ffn: f, heads, kvHeads } = shape;
const kv = (h / heads) * kvHeads;
const shapes = { q_proj: [h, h], k_proj: [kv, h], v_proj: [kv, h], o_proj: [h, h], gate_proj: [f, h], up_proj: [f, h], down_proj: [h, f] };
let state = 42;
const uniform = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.04;
const weights = Object.entries(shapes).map(([name, s]) => ({ name, dtype: 'F32', shape: s, data: Float32Array.from({ length: s[0] * s[1] }, uniform) }));
const params = weights.reduce((sum, w) => sum + w.data.length, 0);
const config = parseConfigName('b4g64');
const pool = createKernelPool(workers);
if (!pool) throw new Error('no WebAssembly SIMD: the pool cannot run');

const onPool = async (w) => {
  const { layout, grouped } = prepareGroups(w, config);
  const r = await pool.run({ grouped, groupSize: layout.groupSize, bits: config.bits, roundZero: config.roundZero, solver: hqqQuantizer.kernelSolver });
  return hqqQuantizer.dequantize(assembleQuantized(hqqQuantizer.id, w, config, layout, r.codes, r.scale, r.zero));
};
const rows = [];
for (let rep = 0; rep < reps; rep++) {
  let t = performance.now();
  const serial = weights.map((w) => squaredError(w.data, hqqQuantizer.dequantize(hqqQuantizer.quantize(w, config))));
  const callingMs = performance.now() - t;
  t = performance.now();
  const pooled = await Promise.all(weights.map(async (w) => squaredError(w.data, await onPool(w))));
  const poolMs = performance.now() - t;
  if (pooled.some((e, i) => e !== serial[i])) throw new Error('the pool and the calling thread disagree');
  rows.push({ rep, callingMs, poolMs, speedUp: callingMs / poolMs });
}
await pool.close();
console.log(`${shapeName}: one layer, 7 matrices, ${(params / 1e6).toFixed(1)}M weights, HQQ b4g64 quantize + dequantize + squared error (bit-identical checked)`);
console.log('| rep | calling thread | pool of ' + workers + ' | speed-up |\n| ---: | ---: | ---: | ---: |');
for (const r of rows) console.log(`| ${r.rep} | ${(r.callingMs / 1000).toFixed(2)} s | ${(r.poolMs / 1000).toFixed(2)} s | ${r.speedUp.toFixed(2)}x |`);
