import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { shippedModelDir } from '@layerquant/fixtures';
import { loadDecoderConfig } from '@layerquant/tensor-io';
import { describe, expect, it } from 'vitest';
import { analyse } from './analysis.js';
import { validateNotebookData } from './data.js';
import { shippedSizes } from './shipped.js';

const appDir = fileURLToPath(new URL('..', import.meta.url));
const repoDir = join(appDir, '../..');

describe('shipped sizes of the notebook rows', () => {
  it('equal the bytes on disk of the same uniform exports (bench/results/shipped-size.json)', async () => {
    const data = validateNotebookData(JSON.parse(readFileSync(join(appDir, 'public/data/notebook.json'), 'utf8')), 'notebook.json');
    const analysis = analyse(data);
    const sizes = shippedSizes(await loadDecoderConfig(shippedModelDir), data.tensors.map((t) => t.name), analysis.stats);
    // The bench exported these with `quantize --method hqq --config <c> --format onnx` and counted every byte under onnx/.
    const bench = JSON.parse(readFileSync(join(repoDir, 'bench/results/shipped-size.json'), 'utf8')) as { rows: { name: string; shippedBytes: number }[] };
    const onDisk = (name: string) => bench.rows.find((r) => r.name === name)!.shippedBytes;
    const uniform = (budget: number) => data.results.find((r) => r.method === 'uniform' && r.budget === budget)!;
    let compared = 0;
    for (const [budget, name] of [[2.25, 'hqq-b2g64'], [2.51, 'hqq-b2g32'], [4.13, 'hqq-b4g128'], [4.25, 'hqq-b4g64']] as const) {
      if (!data.results.some((r) => r.method === 'uniform' && r.budget === budget)) continue;
      expect(sizes.bytesOf(uniform(budget)), name).toBe(onDisk(name));
      compared++;
    }
    expect(compared).toBeGreaterThanOrEqual(3);
    // One row of each method (the MILPs' allocations take a while) gets a size: its allocator re-run here gives the
    // row's bits per weight. More bits, a larger file.
    const firsts = [...new Set(data.results.map((r) => r.method))].map((m) => data.results.find((r) => r.method === m && r.budget === 3.25) ?? data.results.find((r) => r.method === m)!);
    expect(firsts.length).toBeGreaterThanOrEqual(4);
    expect(firsts.filter((r) => sizes.bytesOf(r) === undefined).map((r) => `${r.method} ${r.budget}`)).toEqual([]);
    const uniformBytes = data.results.filter((r) => r.method === 'uniform' && [2.25, 3.25, 4.25].includes(r.budget)).map((r) => sizes.bytesOf(r)!);
    expect(uniformBytes).toEqual([...uniformBytes].sort((a, b) => a - b));
  });
});
