// GPTQ's preparation of a Hessian (H^-1's upper Cholesky factor, float64) at the sizes of real models, side by side
// in one run with PyTorch's `cholesky(cholesky_inverse(cholesky(H)), upper=True)` in float64 on the same matrix and
// the same thread count (2). It is the O(n^3) step of every GPTQ matrix: n = 4096 for a 7B model's q/k/v/o/gate/up,
// 11008 for its down_proj. Also checks that both factors agree (largest difference relative to the largest entry).
//   pnpm build && node bench/gptq-hessian.mjs [--sizes 1024,2048,4096] [--kernels typescript,wasm,pool] [--no-anchor] [--json out.json]
// Each kernel of prepareHessian runs on the same matrix (`typescript`: the oracle; `wasm`: WebAssembly SIMD in this
// thread, the default; `pool`: prepareHessianOn, split over this thread and a kernel pool's workers, as many threads
// as cores, which is what quantize does with its pool); the factors must be equal bit for bit.
// The matrix: a random symmetric one with a dominant diagonal (positive definite; the factorization's cost does not
// depend on the values), written once to a temporary file the anchor reads.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { seededRandom } from '@layerquant/core';
import { prepareHessian, prepareHessianOn } from '@layerquant/quantizers';
import { createKernelPool, defaultWorkerCount } from '@layerquant/quantizers/node';
import { lastJson, pythonHas, runPython } from './lib/anchor.mjs';

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '1024,2048,4096' }, kernels: { type: 'string', default: 'typescript,wasm,pool' }, 'no-anchor': { type: 'boolean' }, json: { type: 'string' } } });
const kernels = values.kernels.split(',');
const sizes = values.sizes.split(',').map(Number);
for (const n of sizes) if (!(Number.isInteger(n) && n > 0)) throw new Error(`--sizes: ${n} is not a positive integer`);
const haveTorch = !values['no-anchor'] && pythonHas('torch');
const work = mkdtempSync(join(tmpdir(), 'layerquant-gptq-hessian-'));
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

const ANCHOR = `
import json, sys, time, numpy, torch
torch.set_num_threads(2)
n = int(sys.argv[2])
h = torch.from_numpy(numpy.fromfile(sys.argv[1], dtype=numpy.float64).reshape(n, n))
start = time.perf_counter()
u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
seconds = time.perf_counter() - start
u.numpy().astype(numpy.float32).tofile(sys.argv[3])
print(json.dumps({"seconds": seconds}))
`;

const rows = [];
const pool = createKernelPool(defaultWorkerCount());
try {
  for (const n of sizes) {
    const random = seededRandom(n);
    const h = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) h[i * n + j] = h[j * n + i] = (random() - 0.5) / n;
      h[i * n + i] = 1 + random();
    }
    const row = { n, load: load(), seconds: {} };
    let prepared;
    for (const kernel of kernels) {
      const started = performance.now();
      // a negligible dampening (it must be positive; the matrix is positive definite as it is), natural order: the
      // factorization alone, as the anchor.
      const options = { dampening: 1e-300, actOrder: false };
      const factor =
        kernel === 'pool'
          ? await prepareHessianOn(pool.choleskyThreads, { columns: n, data: h }, options, `random ${n}x${n}`)
          : prepareHessian({ columns: n, data: h }, { ...options, kernel }, `random ${n}x${n}`);
      row.seconds[kernel] = (performance.now() - started) / 1000;
      if (prepared && !prepared.inverse.every((v, i) => Object.is(v, factor.inverse[i]))) throw new Error(`n = ${n}: the ${kernel} factor differs from the ${kernels[0]} one`);
      prepared = factor;
    }
    const seconds = row.seconds[kernels.at(-1)];
    if (haveTorch) {
      const input = join(work, `h${n}.f64`);
      const output = join(work, `u${n}.f32`);
      writeFileSync(input, new Uint8Array(h.buffer));
      const anchor = lastJson(runPython(['-c', ANCHOR, input, String(n), output]));
      const u = new Float32Array(readFileSync(output).buffer.slice(0));
      let worst = 0;
      let largest = 0;
      for (let i = 0; i < n * n; i++) {
        worst = Math.max(worst, Math.abs(u[i] - prepared.inverse[i]));
        largest = Math.max(largest, Math.abs(u[i]));
      }
      Object.assign(row, { torchSeconds: anchor.seconds, ratio: anchor.seconds / seconds, relativeDifference: worst / largest });
      rmSync(input);
      rmSync(output);
    }
    row.loadAfter = load();
    rows.push(row);
    process.stderr.write(`${JSON.stringify(row)}\n`);
  }
} finally {
  await pool?.close();
  rmSync(work, { recursive: true, force: true });
}

console.log(`| n | ${kernels.map((k) => `layerquant ${k}`).join(' | ')} | PyTorch float64, 2 threads | PyTorch / layerquant ${kernels.at(-1)} | largest difference / largest entry | load average before, after |`);
console.log(`| ---: | ${kernels.map(() => '---:').join(' | ')} | ---: | ---: | ---: | --- |`);
for (const r of rows) {
  console.log(`| ${r.n} | ${kernels.map((k) => `${r.seconds[k].toFixed(2)} s`).join(' | ')} | ${r.torchSeconds === undefined ? '-' : `${r.torchSeconds.toFixed(2)} s`} | ${r.ratio === undefined ? '-' : `${r.ratio.toFixed(3)}x`} | ${r.relativeDifference === undefined ? '-' : r.relativeDifference.toExponential(1)} | ${r.load}; ${r.loadAfter} |`);
}
if (values.json) writeFileSync(values.json, `${JSON.stringify(rows, null, 1)}\n`);
