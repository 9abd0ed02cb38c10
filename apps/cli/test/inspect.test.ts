import { shippedModelDir } from '@layerquant/fixtures';
import { describe, expect, it } from 'vitest';
import { bin, cli } from './run-cli.js';

describe('layerquant inspect', () => {
  it('prints the shipped model as one JSON object (built binary)', async () => {
    const { code, stdout, stderr } = await bin('inspect', shippedModelDir, '--json');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const json = JSON.parse(stdout) as Record<string, unknown>;
    expect(json).toMatchObject({ architecture: 'LlamaForCausalLM', numLayers: 32, params: 26_231_040, linearParams: 22_020_096, tensors: 291, dtypes: { BF16: 291 } });
  });
  it('prints a human summary', async () => {
    const { code, stdout } = await cli('inspect', shippedModelDir);
    expect(code).toBe(0);
    expect(stdout).toMatch(/linear params\s+22,020,096 in 224 matrices/);
  });
  it('exits 1 with one line naming the problem on bad input', async () => {
    for (const argv of [['inspect', '/no/such/model'], ['inspect'], ['inspect', shippedModelDir, '--bogus'], ['frobnicate']]) {
      const { code, stderr, stdout } = await bin(...argv);
      expect(code, argv.join(' ')).toBe(1);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toMatch(/^layerquant: error: /);
    }
    expect((await cli('inspect', '/no/such/model')).stderr).toContain('/no/such/model: does not exist');
  });
});
