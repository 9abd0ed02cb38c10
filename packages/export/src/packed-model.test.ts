// The packed-weight model (what eval and experiment cells run) on the shipped model, against an independent path:
// the dequantized float32 weights in the runtime's one-session float graph.
import { matrixOfTensorName, quantConfig } from '@layerquant/core';
import { brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { perplexity } from '@layerquant/perplexity';
import { hqqQuantizer } from '@layerquant/quantizers';
import { loadDecoderModel, tensorSourceFromMap } from '@layerquant/runtime';
import { relativeError } from '@layerquant/runtime/testing';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ModelGraphSource } from './export-onnx.js';
import { openPackedModel } from './packed-model.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-packed-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('packed-weight model', () => {
  it('b4g64 HQQ: perplexity of the dequantized weights within 1e-5; a graph through a temporary file gives the same NLL and leaves nothing', async () => {
    const config = await loadDecoderConfig(shippedModelDir);
    const checkpoint = await openCheckpoint(shippedModelDir);
    const b4g64 = quantConfig(4, 64);
    const quantized = new Map<string, ReturnType<typeof hqqQuantizer.quantize>>();
    const source: ModelGraphSource = {
      dir: checkpoint.dir,
      has: (name) => checkpoint.has(name),
      read: (name) => checkpoint.read(name),
      isQuantized: (name) => matrixOfTensorName(name) !== undefined,
      readQuantized: async (name) => {
        const q = hqqQuantizer.quantize(await checkpoint.read(name), b4g64);
        quantized.set(name, q);
        return q;
      },
    };
    const inMemory = await openPackedModel(source, config, { threads: 2 });
    expect(inMemory.quantized).toBe(true);
    expect(inMemory.matrices.filter((m) => m.config === 'b4g64')).toHaveLength(224);
    const viaFile = await openPackedModel(source, config, { threads: 2, inMemoryLimit: 0, tempDir: scratch });
    expect(readdirSync(scratch)).toEqual([]);

    const dequantized = new Map<string, { shape: readonly number[]; data: Float32Array }>();
    for (const info of checkpoint.tensors) {
      const q = quantized.get(info.name);
      dequantized.set(info.name, { shape: info.shape, data: q ? hqqQuantizer.dequantize(q) : (await checkpoint.read(info.name)).data });
    }
    await checkpoint.close();
    const float = await loadDecoderModel(tensorSourceFromMap(dequantized), config, { threads: 2 });

    const ids = (await loadTokenizer(shippedModelDir)).encode(readFileSync(brownTestPath, 'utf8')).slice(0, 1024);
    const window = ids.slice(0, 512);
    const targets = [...window.slice(1), 0];
    const a = await inMemory.tokenNll({ ids: window }, targets);
    const b = await viaFile.tokenNll({ ids: window }, targets);
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(relativeError(a.subarray(0, 511), (await float.tokenNll({ ids: window }, targets)).subarray(0, 511))).toBeLessThan(1e-4);
    // Logits and NLL from one run: the NLL tokenNll gives, logits as the dequantized float model's.
    const both = await inMemory.logitsAndNll({ ids: window }, targets);
    expect(both.nll).toEqual(a);
    expect(relativeError(both.logits, await float.logits({ ids: window }))).toBeLessThan(1e-4);

    const packed = await perplexity(inMemory, ids, { seqlen: 512 });
    const reference = await perplexity(float, ids, { seqlen: 512 });
    expect(Math.abs(packed.ppl - reference.ppl) / reference.ppl).toBeLessThan(1e-5);
    await expect(inMemory.tokenNll({ ids: [1, 2] }, [2])).rejects.toThrow(/1 targets for 2 token ids/);
    await inMemory.dispose();
    await viaFile.dispose();
    await float.dispose();
  });
});
