import { describe, expect, it } from 'vitest';
import { KERNELS, generatedSource } from '../wasm/build-wasm.mjs';
import { readFileSync } from 'node:fs';

describe('generated WebAssembly modules', () => {
  for (const kernel of KERNELS) {
    it(`src/${kernel.generated} is the assembled wasm/${kernel.wat} (run build:wasm after editing the .wat)`, async () => {
      const committed = readFileSync(new URL(`./${kernel.generated}`, import.meta.url), 'utf8');
      expect(committed).toBe(await generatedSource(kernel));
    });
  }
});

describe('packed output of the WebAssembly kernel (one pass: codes written as packed words)', () => {
  it('equals the TypeScript oracle quantized then packed by packCodes, for RTN and HQQ at 2, 4 and 8 bits', async () => {
    const { createRtnQuantizer, createHqqQuantizer, unpackQuantizedCodes } = await import('./quantizers.js');
    const { packCodes } = await import('./bit-packing.js');
    const { quantConfig } = await import('@layerquant/core');
    let state = 12345;
    const random = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state / 4294967296;
    };
    // values on a coarse grid give exact ties in round(W*s + z); a constant row exercises the small-range branch
    const rows = 24;
    const columns = 256;
    const data = Float32Array.from({ length: rows * columns }, (_, i) => (i < columns ? 0.5 : Math.round((random() - 0.5) * 64) / 64));
    const weight = { name: 'w', dtype: 'F32' as const, shape: [rows, columns], data };
    for (const [label, make] of [['rtn', createRtnQuantizer], ['hqq', createHqqQuantizer]] as const) {
      const wasm = make({ kernel: 'wasm' });
      const oracle = make({ kernel: 'typescript' });
      for (const bits of [2, 4, 8]) {
        for (const group of [32, 64, 128]) {
          for (const roundZero of [false, true]) {
            const config = { ...quantConfig(bits, group), roundZero };
            const fast = wasm.quantize(weight, config);
            const slow = oracle.quantize(weight, config);
            const where = `${label} b${bits}g${group} roundZero=${roundZero}`;
            expect(Array.from(fast.scale), where).toEqual(Array.from(slow.scale));
            // + 0: a rounded zero of -0.3 is -0 in WebAssembly's f32.nearest and +0 in the oracle (same value)
            expect(Array.from(fast.zero, (z) => z + 0), where).toEqual(Array.from(slow.zero, (z) => z + 0));
            expect(Array.from(fast.packed), where).toEqual(Array.from(slow.packed));
            // and the words are packCodes of the codes, independently of both kernels' packing
            expect(Array.from(packCodes(unpackQuantizedCodes(slow), rows, columns, bits)), where).toEqual(Array.from(fast.packed));
          }
        }
      }
    }
  });
});
