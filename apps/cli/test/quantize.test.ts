import { referenceHqqPath, shippedModelDir } from '@layerquant/fixtures';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseValid } from './json-schema.js';
import { bin, cli } from './run-cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-cli-quantize-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const reference = JSON.parse(readFileSync(referenceHqqPath, 'utf8')) as Record<string, number>;

describe('layerquant quantize', () => {
  it('quantizes the shipped model with HQQ b4g64 and prints one JSON object (built binary)', async () => {
    const out = join(scratch, 'hqq-b4g64');
    const { code, stdout, stderr } = await bin('quantize', shippedModelDir, '--method', 'hqq', '--config', 'b4g64', '--out', out, '--json');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const json = JSON.parse(stdout) as { sizes: { paperBitsPerWeight: number; diskMiB: number }; sqErr: number; seconds: number; matrices: number };
    expect(json.matrices).toBe(224);
    expect(json.sizes.paperBitsPerWeight.toFixed(4)).toBe('4.2539');
    expect(json.sizes.diskMiB * 2 ** 20).toBe((22_020_096 / 8) * 4 + (22_020_096 / 64) * 8);
    expect(Math.abs(json.sqErr - reference.hqq_b4g64_sq_err!) / reference.hqq_b4g64_sq_err!).toBeLessThan(1e-4);
    expect(json.seconds).toBeGreaterThan(0);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
    expect(existsSync(join(out, 'tokenizer.json'))).toBe(true);
  });

  it('prints a human table, RTN error above HQQ', async () => {
    const { code, stdout } = await cli('quantize', shippedModelDir, '--method', 'rtn', '--config', 'b4g64', '--out', join(scratch, 'rtn'));
    expect(code).toBe(0);
    expect(stdout).toMatch(/paper size\s+11\.17 MiB, 4\.2539 bits\/weight \(paper accounting/);
    expect(stdout).toMatch(/on disk\s+13\.13 MiB, 5\.0000 bits\/weight/);
    expect(stdout).toMatch(/time\s+\S+ wall clock \(\S+ quantizing, summed over \d+ workers? running in parallel\)/);
    const error = Number(/sq\. error\s+(\S+)/.exec(stdout)?.[1]);
    expect(error).toBeGreaterThan(reference.hqq_b4g64_sq_err!);
  });

  it('--scale-dtype u8: 8-bit scales and zeros, on disk the paper accounting (+ one fp16 pair per matrix); eval and the export read it', async () => {
    const out = join(scratch, 'hqq-b4g64-u8');
    const q = await cli('quantize', shippedModelDir, '--method', 'hqq', '--config', 'b4g64', '--scale-dtype', 'u8', '--out', out, '--json');
    expect(q.code, q.stderr).toBe(0);
    const json = parseValid<{ scaleDtype: string; sizes: { paperMiB: number; diskMiB: number }; sqErr: number }>(q.stdout, 'quantize');
    expect(json.scaleDtype).toBe('uint8');
    expect(json.sizes.diskMiB * 2 ** 20).toBe(json.sizes.paperMiB * 2 ** 20 + 4 * 224);
    // the 8-bit scales add error to HQQ's, little at 4 bits (bench/scale-storage.mjs measures it)
    expect(json.sqErr).toBeGreaterThan(reference.hqq_b4g64_sq_err!);
    expect(json.sqErr / reference.hqq_b4g64_sq_err!).toBeLessThan(1.01);
    expect((await cli('quantize', shippedModelDir, '--scale-dtype', 'u4', '--out', join(scratch, 'u4'))).stderr).toMatch(/"--scale-dtype": "u4" must be f32, f16 or u8/);
    const onnx = join(scratch, 'hqq-b4g64-u8-onnx');
    // f32: the exact expansion (the export's default, f16, rounds the expanded scales to half).
    const e = await cli('export', out, '--format', 'onnx', '--out', onnx, '--accuracy-level', '0', '--scale-dtype', 'f32');
    expect(e.code, e.stderr).toBe(0);
    expect(e.stdout).toMatch(/224 matrices store 8-bit scales and zeros \(scale-dtype U8\); MatMulNBits takes float scales, so each is expanded to float32 exactly/);
    expect((await cli('export', out, '--format', 'onnx', '--out', onnx, '--scale-dtype', 'u8', '--force')).stderr).toMatch(/u8 is how `quantize` stores/);
    const window = ['--dataset', 'brown-test', '--max-tokens', '512', '--seqlen', '256', '--json'];
    const checkpoint = parseValid<{ perplexity: number }>((await cli('eval', out, ...window)).stdout, 'eval').perplexity;
    const exported = parseValid<{ perplexity: number }>((await cli('eval', onnx, ...window)).stdout, 'eval').perplexity;
    expect(Math.abs(exported - checkpoint) / checkpoint).toBeLessThan(1e-5);
  }, 120_000);

  it('refuses to replace a non-empty --out without --force, and says so; replaces it with --force', async () => {
    const out = join(scratch, 'rtn');
    const again = await cli('quantize', shippedModelDir, '--method', 'rtn', '--config', 'b2g64', '--out', out);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/option "--out": .*rtn exists and is not empty .*pass --force/);
    expect(readFileSync(join(out, 'quantization.json'), 'utf8')).toMatch(/"b4g64"/);
    expect((await cli('quantize', shippedModelDir, '--method', 'rtn', '--config', 'b2g64', '--out', out, '--force')).code).toBe(0);
    expect(readFileSync(join(out, 'quantization.json'), 'utf8')).toMatch(/"b2g64"/);
  });

  it('exits 1 with one line naming the problem on bad input', async () => {
    const cases = [
      ['quantize', shippedModelDir, '--config', 'b4g64'],
      ['quantize', shippedModelDir, '--config', 'b7g64', '--out', join(scratch, 'x')],
      ['quantize', shippedModelDir, '--method', 'awq', '--out', join(scratch, 'x')],
      ['quantize', shippedModelDir, '--config', 'b4g96', '--out', join(scratch, 'x')],
      ['quantize', shippedModelDir, '--method', 'rtn', '--kappa', '1.01', '--out', join(scratch, 'x')],
      ['quantize', '/no/such/model', '--out', join(scratch, 'x')],
    ];
    const expected = [/option "--out"/, /option "bits"/, /option "--method"/, /option "groupSize": 96/, /option "--kappa"/, /\/no\/such\/model/];
    for (const [i, argv] of cases.entries()) {
      const { code, stderr, stdout } = await cli(...argv);
      expect(code, argv.join(' ')).toBe(1);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toMatch(expected[i]!);
    }
    expect(existsSync(join(scratch, 'x', 'model.safetensors'))).toBe(false);
  });
});
