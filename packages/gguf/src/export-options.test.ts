import { InvalidOptionError } from '@layerquant/core';
import { tinyConfig } from '@layerquant/runtime/testing';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyModel } from './__fixtures__/tiny-models.js';
import { exportGguf } from './export-gguf.js';
import { ggmlFallbackType } from './ggml-types.js';
import { openGgufFile } from './gguf-file.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-gguf-options-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
// ffn rows of 288 values: whole blocks of 32, not of 256.
const config = tinyConfig({ hiddenSize: 256, intermediateSize: 288, numHeads: 4, numKeyValueHeads: 2, headDim: 64, vocabSize: 300, numLayers: 1 });
const modelDir = join(root, 'model');
beforeAll(() => writeTinyModel(modelDir, config, 2));

describe('exportGguf options', () => {
  it('falls back as llama-quantize does where rows are not whole blocks of a k-quant, and says so', async () => {
    expect(['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q4_0'].map((t) => ggmlFallbackType(t as never, 288))).toEqual(['Q4_0', 'Q4_0', 'Q5_0', 'Q5_1', 'Q8_0', 'Q4_0']);
    expect(ggmlFallbackType('Q4_K', 100)).toBe('F16');
    const outFile = join(root, 'q4k.gguf');
    const report = await exportGguf({ modelDir, outFile, types: { '.*': 'Q4_K', 'output\\.weight': 'Q6_K' } });
    const byName = new Map(report.tensors.map((t) => [t.name, t.type]));
    expect(byName.get('blk.0.ffn_down.weight')).toBe('Q5_0');
    expect(byName.get('blk.0.ffn_up.weight')).toBe('Q4_K');
    expect(byName.get('output.weight')).toBe('Q6_K');
    expect(report.notes.join(' ')).toMatch(/1 matrices .* fell back .*blk\.0\.ffn_down\.weight Q4_K -> Q5_0/);
    const file = await openGgufFile(outFile);
    expect(file.info('blk.0.ffn_down.weight').type.name).toBe('Q5_0');
    await file.close();
  });

  it('refuses types that match nothing, bad regular expressions and types it does not write, before writing', async () => {
    const outFile = join(root, 'refused.gguf');
    await expect(exportGguf({ modelDir, outFile, types: { 'blk\\.0\\.attn_qq\\.weight': 'Q8_0' } })).rejects.toThrow(/attn_qq.*match no matrix/);
    await expect(exportGguf({ modelDir, outFile, types: { '(': 'Q8_0' } })).rejects.toThrow(InvalidOptionError);
    await expect(exportGguf({ modelDir, outFile, types: { '.*': 'IQ4_XS' as never } })).rejects.toThrow(/IQ4_XS/);
    await expect(exportGguf({ modelDir, outFile: join(root, 'model.bin') })).rejects.toThrow(/\.gguf/);
    await expect(exportGguf({ modelDir, outFile: join(root, 'missing', 'x.gguf') })).rejects.toThrow(/does not exist/);
    expect(readdirSync(root).filter((f) => f.includes('refused'))).toEqual([]);
  });
});
