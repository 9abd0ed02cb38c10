import { shippedModelDir } from '@layerquant/fixtures';
import { matrixTensorName, quantConfig } from '@layerquant/core';
import { rtnPlugin } from '@layerquant/quantizers';
import { openModelWeights } from '@layerquant/quantizers/node';
import { openCheckpoint, writeSafetensors } from '@layerquant/tensor-io';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { compandedQuantizer } from './fixtures/companded-quantizer.mjs';
import { cli } from './run-cli.js';

const plugin = fileURLToPath(new URL('./fixtures/companded-quantizer.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'layerquant-quantizer-plugin-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a quantizer plug-in end to end (--plugin with a quantizer whose codes are not affine)', () => {
  const model = join(dir, 'companded');

  it('quantize --quantizer records it; its checkpoint is read back through its dequantize', async () => {
    const result = await cli('quantize', shippedModelDir, '--quantizer', 'companded-rtn', '--config', 'b4g64', '--out', model, '--json', '--plugin', plugin);
    expect(result.stderr).toBe('');
    expect((JSON.parse(result.stdout) as { quantizer: string }).quantizer).toBe('companded-rtn');
    expect((JSON.parse(readFileSync(join(model, 'quantization.json'), 'utf8')) as { quantizer?: string; method?: string }).quantizer ?? '').toMatch(/companded-rtn/);
    // One matrix as the checkpoint reader gives it, against RTN on the companded weights squared back, computed here.
    const name = matrixTensorName(2, 'mlp.down_proj');
    const original = await openCheckpoint(shippedModelDir);
    const weight = await original.read(name);
    await original.close();
    const companded = weight.data.map((v) => Math.sign(v) * Math.sqrt(Math.abs(v)));
    const expected = rtnPlugin.dequantize(rtnPlugin.quantize({ ...weight, data: companded }, quantConfig(4, 64))).map((v) => Math.sign(v) * v * v);
    const weights = await openModelWeights(model, { quantizers: [compandedQuantizer] });
    const read = await weights.read(name);
    await weights.close();
    expect(read.data).toEqual(expected);
  });

  it('eval reads it with the plug-in loaded and names the plug-in without it', async () => {
    const evaluated = await cli('eval', model, '--dataset', 'brown-test', '--max-tokens', '1024', '--json', '--plugin', plugin);
    expect(evaluated.code).toBe(0);
    // The oracle: a float model whose every linear matrix is the companded RTN computed here (the other tensors
    // as they are), evaluated alike: the plug-in's checkpoint must give its perplexity, so eval read every matrix
    // through the plug-in's dequantize.
    const floatDir = join(dir, 'companded-float');
    mkdirSync(floatDir);
    for (const file of readdirSync(shippedModelDir)) if (/^(config|generation_config|tokenizer|tokenizer_config)\.json$/.test(file)) copyFileSync(join(shippedModelDir, file), join(floatDir, file));
    const original = await openCheckpoint(shippedModelDir);
    const tensors = [];
    for (const { name } of original.tensors) {
      const tensor = await original.read(name);
      const matrix = /^model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/.test(name);
      const data = matrix ? rtnPlugin.dequantize(rtnPlugin.quantize({ ...tensor, data: tensor.data.map((v) => Math.sign(v) * Math.sqrt(Math.abs(v))) }, quantConfig(4, 64))).map((v) => Math.sign(v) * v * v) : tensor.data;
      tensors.push({ name, dtype: 'F32' as const, shape: tensor.shape, data });
    }
    await original.close();
    expect(tensors.filter((t) => /_proj\.weight$/.test(t.name))).toHaveLength(32 * 7);
    await writeSafetensors(join(floatDir, 'model.safetensors'), tensors, { format: 'pt' });
    const oracle = await cli('eval', floatDir, '--dataset', 'brown-test', '--max-tokens', '1024', '--json');
    expect(oracle.code).toBe(0);
    const ppl = (r: { stdout: string }) => (JSON.parse(r.stdout) as { perplexity: number }).perplexity;
    expect(Math.abs(ppl(evaluated) - ppl(oracle)) / ppl(oracle)).toBeLessThan(1e-6);
    const without = await cli('eval', model, '--dataset', 'brown-test', '--max-tokens', '1024', '--json');
    expect(without.code).toBe(1);
    expect((JSON.parse(without.stdout) as { error: { code: string } }).error.code).toBe('UNKNOWN_QUANTIZER');
    expect(without.stderr).toMatch(/quantized by "companded-rtn", which is not registered .*--plugin/);
  });

  it('export refuses it with a typed error naming the quantizer, and writes nothing', async () => {
    const out = join(dir, 'onnx');
    const result = await cli('export', model, '--format', 'onnx', '--out', out, '--json', '--plugin', plugin);
    expect(result.code).toBe(1);
    expect((JSON.parse(result.stdout) as { error: { code: string } }).error.code).toBe('UNSUPPORTED_EXPORT');
    expect(result.stderr).toMatch(/quantized by "companded-rtn", whose stored codes are not the affine/);
    expect(existsSync(join(out, 'onnx'))).toBe(false);
  });
});
