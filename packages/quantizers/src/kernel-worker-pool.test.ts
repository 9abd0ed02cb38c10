import { describe, expect, it } from 'vitest';
import { createKernelPool } from './kernel-worker-pool.js';
import { proximalOptions } from './hqq-proximal.js';
import { createWasmKernel, wasmKernelAvailable } from './quant-kernel.js';
import { randomMatrix } from './testing/random-matrix.js';

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
});
