import { describe, expect, it } from 'vitest';
import { assembleKernel, generatedSource } from '../wasm/build-wasm.mjs';
import { readFileSync } from 'node:fs';

describe('generated WebAssembly module', () => {
  it('is the assembled wasm/hqq-kernel.wat (run build:wasm after editing the .wat)', async () => {
    const committed = readFileSync(new URL('./hqq-kernel-wasm.generated.ts', import.meta.url), 'utf8');
    expect(committed).toBe(generatedSource(await assembleKernel()));
  });
});
