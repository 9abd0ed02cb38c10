import { describe, expect, it } from 'vitest';
import { createKernelPool } from './kernel-worker-pool.js';
import { proximalOptions } from './hqq-proximal.js';
import { createWasmKernel, wasmKernelAvailable } from './quant-kernel.js';
import { randomInputs, randomMatrix } from './testing/random-matrix.js';
import { baqQuantizer, createBaqQuantizer } from './baq.js';
import { createGptqQuantizer } from './gptq.js';
import { prepareHessian, prepareHessianOn } from './gptq-solver.js';
import type { CholeskyRequest } from './cholesky-kernel.js';
import { quantConfig } from '@layerquant/core';

describe.skipIf(!wasmKernelAvailable())('kernel worker pool', () => {
  it('gives results bit-identical to the in-thread WebAssembly kernel, tasks in any order', async () => {
    const pool = createKernelPool(2)!;
    const wasm = createWasmKernel()!;
    try {
      const cases = [
        { bits: 4, groupSize: 64, roundZero: false, solver: proximalOptions() },
        { bits: 3, groupSize: 32, roundZero: false, solver: proximalOptions({ kappa: 1.01 }) },
        { bits: 2, groupSize: 128, roundZero: true, solver: null },
        { bits: 8, groupSize: 64, roundZero: false, solver: proximalOptions() },
        { bits: 4, groupSize: 64, roundZero: false, solver: proximalOptions() },
        // an integer-zero (-int) config: the solved zeros rounded before the codes
        { bits: 4, groupSize: 64, roundZero: true, solver: proximalOptions({ integerZero: true }) },
      ];
      const tasks = cases.map((c, i) => ({ ...c, grouped: randomMatrix(40 + i * 50, 256, i + 1, 0.02, 9).data }));
      const results = await Promise.all(tasks.map((t) => pool.run(t)));
      for (const [i, task] of tasks.entries()) {
        const groups = task.grouped.length / task.groupSize;
        const scale = new Float32Array(groups);
        const zero = new Float32Array(groups);
        const codes = new Uint8Array(task.grouped.length);
        const iterations = wasm.quantize(task.grouped, task.groupSize, task.bits, task.roundZero, task.solver, scale, zero, codes);
        expect(results[i]!.iterations).toBe(iterations);
        expect(results[i]!.scale).toEqual(scale);
        expect(results[i]!.zero).toEqual(zero);
        expect(results[i]!.codes).toEqual(codes);
        if (task.solver?.integerZero) for (const z of zero) expect(Number.isInteger(z) && z >= 0 && z <= 2 ** task.bits - 1).toBe(true);
      }
    } finally {
      await pool.close();
    }
  });

  it('runs GPTQ and BAQ column loops (quantizeOn) with results bit-identical to the calling thread, matrices in parallel', async () => {
    const pool = createKernelPool(2)!;
    try {
      const gptq = createGptqQuantizer({ actOrder: true });
      const { hessian } = randomInputs(128, 300, 41, [3]);
      const weights = [24, 40, 16].map((rows, i) => randomMatrix(rows, 128, 50 + i, 0.05, 2));
      for (const [quantizer, config] of [[gptq, quantConfig(4, 32)], [gptq, quantConfig(3, 64, { symmetric: true })], [baqQuantizer, quantConfig(2, 64)]] as const) {
        const pooled = await Promise.all(weights.map((w) => quantizer.quantizeOn((p) => pool.runGptq(p), w, config, { hessian })));
        const direct = quantizer === baqQuantizer ? createBaqQuantizer({ kernel: 'typescript' }) : createGptqQuantizer({ actOrder: true, kernel: 'typescript' });
        for (const [i, w] of weights.entries()) {
          const expected = direct.quantize(w, config, { hessian });
          expect(pooled[i]!.packed).toEqual(expected.packed);
          expect(pooled[i]!.scale).toEqual(expected.scale);
          expect(pooled[i]!.zero).toEqual(expected.zero);
          expect(pooled[i]!.columnBits).toEqual(expected.columnBits);
        }
      }
    } finally {
      await pool.close();
    }
  });

  it("splits a Hessian's factorization over the calling thread and the workers (shared memory), the factor bit for bit the oracle's", async () => {
    const pool = createKernelPool(3)!;
    try {
      // above the smallest split region (256 columns), with rests of 1-3 rows and columns past the 4 x 4 tiles
      for (const [n, helpers] of [[300, 1], [517, 2]] as const) {
        const { hessian } = randomInputs(n, n + 40, 60 + n, [5]);
        let requests = 0;
        const threads = { count: helpers, run: (request: CholeskyRequest) => (requests++, pool.runCholesky(request)) };
        const split = await prepareHessianOn(threads, hessian, { dampening: 0.01, actOrder: true }, 'w');
        const oracle = prepareHessian(hessian, { dampening: 0.01, actOrder: true, kernel: 'typescript' }, 'w');
        expect(requests, `n=${n}`).toBeGreaterThan(0);
        expect(Array.from(split.inverse), `n=${n}`).toEqual(Array.from(oracle.inverse));
        expect(split.order).toEqual(oracle.order);
        expect(split.deadColumns).toBe(oracle.deadColumns);
      }
      // GPTQ's quantizeOn with the threads: the same codes as the calling thread's TypeScript path
      const { hessian } = randomInputs(320, 400, 71);
      const weight = randomMatrix(12, 320, 72, 0.05, 2);
      const config = quantConfig(4, 64);
      const pooled = await createGptqQuantizer().quantizeOn((p) => pool.runGptq(p), weight, config, { hessian }, pool.choleskyThreads);
      expect(pool.choleskyThreads.count).toBe(2);
      expect(pooled.packed).toEqual(createGptqQuantizer({ kernel: 'typescript' }).quantize(weight, config, { hessian }).packed);
    } finally {
      await pool.close();
    }
  });

  it('rejects tasks given after close, and those still queued when it closes, rather than leave them waiting', async () => {
    const pool = createKernelPool(1)!;
    const task = { grouped: new Float32Array(64).map((_, i) => Math.sin(i)), groupSize: 64, bits: 4, roundZero: false, solver: null };
    const first = pool.run(task);
    const queued = pool.run(task);
    first.catch(() => undefined);
    queued.catch(() => undefined);
    await pool.close();
    await expect(queued).rejects.toThrow(/worker pool is closed/);
    await expect(pool.run(task)).rejects.toThrow(/worker pool is closed/);
  });
});
