import { quantConfig } from '@layerquant/core';
import { brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { rtnQuantizer } from '@layerquant/quantizers';
import { quantizeModel } from '@layerquant/quantizers/node';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bin, cli } from './run-cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-eval-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('layerquant eval', () => {
  it('prints ppl, tokens, seconds as JSON (built binary); --dataset and --text on the same text agree', async () => {
    const fromDataset = await bin('eval', shippedModelDir, '--dataset', 'brown-test', '--max-tokens', '2048', '--seqlen', '256', '--json', '--threads', '2');
    expect(fromDataset.stderr).toBe('');
    expect(fromDataset.code).toBe(0);
    const a = JSON.parse(fromDataset.stdout) as { perplexity: number; tokens: number; seconds: number; windows: number; quantized: boolean };
    expect(a).toMatchObject({ tokens: 2048, windows: 8, quantized: false });
    expect(a.seconds).toBeGreaterThan(0);
    expect(a.perplexity).toBeGreaterThan(20);
    expect(a.perplexity).toBeLessThan(400);
    const fromText = await cli('eval', shippedModelDir, '--text', brownTestPath, '--max-tokens', '2048', '--seqlen', '256', '--json');
    expect((JSON.parse(fromText.stdout) as { perplexity: number }).perplexity).toBeCloseTo(a.perplexity, 3);
  });

  it('runs the sliding-window protocol and prints a human table', async () => {
    const { code, stdout } = await cli('eval', shippedModelDir, '--dataset', 'brown-test', '--protocol', 'sliding', '--seqlen', '256', '--stride', '128', '--max-tokens', '1024');
    expect(code).toBe(0);
    expect(stdout).toMatch(/sliding window, max_length 256, stride 128/);
    expect(stdout).toMatch(/perplexity\s+\d+\.\d{4}/);
  });

  it('evaluates a quantized directory directly (dequantized on load): close to, not equal to, the float model', async () => {
    const outDir = join(scratch, 'rtn-b4g64');
    await quantizeModel({ modelDir: shippedModelDir, outDir, quantizer: rtnQuantizer, configFor: () => quantConfig(4, 64), method: 'rtn' });
    const argv = ['--dataset', 'brown-test', '--max-tokens', '1024', '--seqlen', '256', '--json'];
    const quantized = JSON.parse((await cli('eval', outDir, ...argv)).stdout) as { perplexity: number; quantized: boolean };
    const float = JSON.parse((await cli('eval', shippedModelDir, ...argv)).stdout) as { perplexity: number; quantized: boolean };
    expect(quantized.quantized).toBe(true);
    expect(float.quantized).toBe(false);
    expect(quantized.perplexity).not.toBe(float.perplexity);
    expect(Math.abs(quantized.perplexity - float.perplexity) / float.perplexity).toBeLessThan(0.05);
  });

  it('exits 1 with one line naming the problem on bad input', async () => {
    const empty = join(scratch, 'empty.txt');
    writeFileSync(empty, '  \n');
    const cases: Array<[string[], RegExp]> = [
      [['eval', shippedModelDir], /--text/],
      [['eval', shippedModelDir, '--dataset', 'wikitext'], /"wikitext" is not a built-in dataset; available: brown-test, brown-calib/],
      [['eval', shippedModelDir, '--text', empty], /is empty/],
      [['eval', shippedModelDir, '--dataset', 'brown-test', '--protocol', 'strided'], /--protocol/],
      [['eval', shippedModelDir, '--dataset', 'brown-test', '--seqlen', '1'], /--seqlen/],
      [['eval', '/no/such/model', '--dataset', 'brown-test'], /\/no\/such\/model/],
      [['eval', shippedModelDir, '--dataset', 'brown-test', '--max-tokens', '100', '--seqlen', '512'], /fewer than one window of seqlen 512/],
    ];
    for (const [argv, message] of cases) {
      const { code, stderr, stdout } = await cli(...argv);
      expect(code, argv.join(' ')).toBe(1);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toMatch(message);
    }
  });
});
