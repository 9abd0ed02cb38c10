import { quantConfig } from '@layerquant/core';
import { brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { rtnQuantizer } from '@layerquant/quantizers';
import { openModelWeights, quantizeModel } from '@layerquant/quantizers/node';
import { perplexity } from '@layerquant/perplexity';
import { loadDecoderModel } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer } from '@layerquant/tensor-io';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

  it('evaluates a quantized directory on its packed weights (MatMulNBits): the perplexity of its dequantized weights, close to, not equal to, the float model', async () => {
    const outDir = join(scratch, 'rtn-b4g64');
    await quantizeModel({ modelDir: shippedModelDir, outDir, quantizer: rtnQuantizer, configFor: () => quantConfig(4, 64), method: 'rtn' });
    const argv = ['--dataset', 'brown-test', '--max-tokens', '1024', '--seqlen', '256', '--json'];
    const quantized = JSON.parse((await cli('eval', outDir, ...argv)).stdout) as { perplexity: number; quantized: boolean; evaluation: string };
    const float = JSON.parse((await cli('eval', shippedModelDir, ...argv)).stdout) as { perplexity: number; quantized: boolean };
    expect(quantized.quantized).toBe(true);
    expect(quantized.evaluation).toBe('packed');
    // Independent path: the dequantized float32 weights in the one-session float graph.
    const weights = await openModelWeights(outDir);
    const dequantized = await loadDecoderModel(weights, await loadDecoderConfig(outDir));
    await weights.close();
    const ids = (await loadTokenizer(outDir)).encode(readFileSync(brownTestPath, 'utf8'));
    const reference = await perplexity(dequantized, ids, { seqlen: 256, maxTokens: 1024 });
    await dequantized.dispose();
    expect(Math.abs(quantized.perplexity - reference.ppl) / reference.ppl).toBeLessThan(1e-4);
    expect(float.quantized).toBe(false);
    expect(quantized.perplexity).not.toBe(float.perplexity);
    expect(Math.abs(quantized.perplexity - float.perplexity) / float.perplexity).toBeLessThan(0.05);
  });

  it('streams a float model layer by layer when its weights exceed --max-memory: the same perplexity within 1e-6', async () => {
    const argv = ['--dataset', 'brown-test', '--max-tokens', '2048', '--seqlen', '512'];
    const session = JSON.parse((await cli('eval', shippedModelDir, ...argv, '--json')).stdout) as { perplexity: number; evaluation: string };
    const streamed = JSON.parse((await cli('eval', shippedModelDir, ...argv, '--max-memory', '0.01', '--json')).stdout) as { perplexity: number; evaluation: string; windows: number };
    expect(session.evaluation).toBe('float');
    expect(streamed).toMatchObject({ evaluation: 'float-streamed', windows: 4 });
    expect(Math.abs(streamed.perplexity - session.perplexity) / session.perplexity).toBeLessThan(1e-6);
    // Without --json the cost is said up front, then estimated from the first layer.
    const human = await cli('eval', shippedModelDir, '--dataset', 'brown-test', '--max-tokens', '1024', '--max-memory', '0.01');
    expect(human.stderr).toMatch(/eval: 2 windows of up to 512 tokens, 32 layers; float32, layer by layer/);
    expect(human.stderr).toMatch(/eval: first layer took .*; estimated .* for all 33 layers/);
    expect(human.stdout).toMatch(/perplexity\s+\d+\.\d{4}/);
    expect((await cli('eval', shippedModelDir, ...argv, '--max-memory', '-1')).stderr).toMatch(/--max-memory/);
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
