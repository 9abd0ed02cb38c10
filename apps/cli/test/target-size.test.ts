import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from './run-cli.js';

/**
 * quantize --format onnx --target-size: the allocation spends the bytes of the file a user ships. The oracle is the
 * file system: every byte under onnx/ (graph and external data) is summed here and held against the target.
 */
const scratch = mkdtempSync(join(tmpdir(), 'lq-target-size-'));
const model = join(scratch, 'model');

/** Every byte of the shipped files: everything under `<out>/onnx`. */
function onnxBytes(out: string): number {
  const dir = join(out, 'onnx');
  return readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
}

beforeAll(async () => {
  // Untied lm_head, GQA, two layers; K = 128 and 256 take every MatMulNBits block size.
  await writeModelDirectory(model, tinyConfig({ hiddenSize: 128, intermediateSize: 256, headDim: 32, numLayers: 2, tieWordEmbeddings: false }), { seed: 5 });
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('quantize --format onnx --target-size', () => {
  it('below the smallest file the ladder makes: one typed line naming that size, nothing written', async () => {
    const out = join(scratch, 'too-small');
    const { code, stdout, stderr } = await cli('quantize', model, '--method', 'mxq', '--format', 'onnx', '--target-size', '0.01', '--out', out);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/--target-size/);
    expect(stderr).toMatch(/smallest/);
    expect(() => readdirSync(join(out, 'onnx'))).toThrow();
    // Only the statistics cache stays in --out; a rerun with a feasible target needs no --force.
    const again = await cli('quantize', model, '--method', 'mxq', '--format', 'onnx', '--target-bpw', '12', '--out', out);
    expect(again.code, again.stderr).toBe(0);
  });

  it('writes an export of at most the target and within 1% of it; the report predicts the bytes on disk', async () => {
    // The smallest and the largest file of the ladder, from the error of an infeasible target and a uniform export.
    const small = await cli('quantize', model, '--method', 'mxq', '--format', 'onnx', '--target-size', '0.01', '--out', join(scratch, 'probe'));
    const smallest = Number(/([0-9.]+) MiB/.exec(small.stderr.slice(small.stderr.indexOf('smallest')))?.[1]);
    expect(smallest).toBeGreaterThan(0);
    const eight = join(scratch, 'b8');
    expect((await cli('quantize', model, '--method', 'rtn', '--config', 'b8g32-int', '--format', 'onnx', '--out', eight)).code).toBe(0);
    const largest = onnxBytes(eight) / 2 ** 20;
    expect(largest).toBeGreaterThan(smallest);
    for (const fraction of [0.3, 0.7]) {
      const targetMiB = Number((smallest + fraction * (largest - smallest)).toFixed(4));
      const out = join(scratch, `target-${fraction}`);
      const { code, stdout, stderr } = await cli('quantize', model, '--method', 'mxq', '--format', 'onnx', '--target-size', String(targetMiB), '--out', out, '--json');
      expect(code, stderr).toBe(0);
      const bytes = onnxBytes(out);
      expect(bytes).toBeLessThanOrEqual(targetMiB * 2 ** 20);
      expect(bytes).toBeGreaterThanOrEqual(0.99 * targetMiB * 2 ** 20);
      const shipped = (JSON.parse(stdout) as { sizes: { shipped: { MiB: number; bitsPerWeight: number; predictedMiB: number; targetMiB: number; format: string } } }).sizes.shipped;
      // inspect reads the same file: the same bytes and bits per linear weight (a quantized lm_head is not a linear matrix).
      const inspected = await cli('inspect', out, '--json');
      expect(inspected.code, inspected.stderr).toBe(0);
      const inspectedShipped = (JSON.parse(inspected.stdout) as { sizes: { shipped: { MiB: number; bitsPerWeight: number } } }).sizes.shipped;
      expect(inspectedShipped.MiB).toBeCloseTo(shipped.MiB, 9);
      expect(inspectedShipped.bitsPerWeight).toBeCloseTo(shipped.bitsPerWeight, 9);
      expect(shipped.format).toBe('onnx');
      expect(shipped.MiB * 2 ** 20).toBeCloseTo(bytes, 0);
      expect(Math.abs(shipped.predictedMiB - shipped.MiB) / shipped.MiB).toBeLessThan(0.005);
      expect(shipped.targetMiB).toBeCloseTo(targetMiB, 3);
      // allocate --target-format onnx on the statistics the run cached beside it: the same allocation and file size.
      const [key] = readdirSync(join(out, 'stats')).filter((name) => /^[0-9a-f]{16}$/.test(name));
      const allocated = await cli('allocate', '--stats', join(out, 'stats', key!), '--model', model, '--method', 'mxq', '--target-format', 'onnx', '--target-size', String(targetMiB), '--json');
      expect(allocated.code, allocated.stderr).toBe(0);
      const allocatedShipped = (JSON.parse(allocated.stdout) as { sizes: { shipped: { MiB: number } } }).sizes.shipped;
      expect(allocatedShipped.MiB).toBeCloseTo(shipped.predictedMiB, 9);
    }
  });

  it('refuses what the format cannot store, and a target without a format, before any work', async () => {
    const cases: [string[], RegExp][] = [
      [['--method', 'mxq', '--format', 'onnx', '--target-size', '1', '--configs', 'b3g64-int,b4g64-int'], /--configs.*b3g64-int.*3-bit/],
      [['--method', 'mxq', '--format', 'onnx', '--target-size', '1', '--configs', 'b4g48-int'], /--configs.*b4g48-int/],
      [['--method', 'mxq', '--target-size', '1'], /--target-size.*--format onnx/],
      [['--method', 'mxq', '--format', 'onnx', '--target-size', '1', '--budget', '3'], /--budget.*not both/],
    ];
    for (const [args, message] of cases) {
      const out = join(scratch, 'refused');
      const { code, stderr } = await cli('quantize', model, ...args, '--out', out);
      expect(code, args.join(' ')).toBe(1);
      expect(stderr).toMatch(message);
      expect(() => statSync(out)).toThrow();
    }
  });
});
