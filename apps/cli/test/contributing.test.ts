import { bitsPerWeight, matrixTensorName, parseConfigName, quantConfig } from '@layerquant/core';
import { runAllocatorConformance } from '@layerquant/allocators/testing';
import { runQuantizerConformance } from '@layerquant/quantizers/testing';
import { openCheckpoint } from '@layerquant/tensor-io';
import { shippedModelDir } from '@layerquant/fixtures';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { absmaxQuantizer } from '../../../examples/plugin-files/absmax-quantizer.mjs';
import { edgesAllocator } from '../../../examples/plugin-files/edges-allocator.mjs';
import { binPath } from './run-cli.js';

// CONTRIBUTING.md's "One file, no package" section, run as written: its plug-in files copied into a directory outside
// the repository (no package.json or node_modules on the way up), its command lines run there by the built CLI.
const repo = fileURLToPath(new URL('../../../', import.meta.url));
const filesDir = join(repo, 'examples/plugin-files');
const work = mkdtempSync(join(tmpdir(), 'layerquant-one-file-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
for (const file of readdirSync(filesDir)) copyFileSync(join(filesDir, file), join(work, file));

const section = readFileSync(join(repo, 'CONTRIBUTING.md'), 'utf8').split('## One file, no package')[1]!.split('\n## ')[0]!;
const commands = /```sh\n([\s\S]*?)```/.exec(section)![1]!.trim().split('\n');

/** One documented line, its words as a shell splits them ("$MODEL" is the shipped model), run in `work`. */
function runLine(line: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const words = line.split(/\s+/).map((w) => (w === '"$MODEL"' ? shippedModelDir : w));
  expect(words[0]).toBe('layerquant');
  return new Promise((resolve) => {
    execFile(process.execPath, [binPath, ...words.slice(1), '--json'], { cwd: work, maxBuffer: 64 * 2 ** 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
const line = (pattern: RegExp) => commands.find((c) => pattern.test(c))!;

// The files pass the suites every plug-in of their kind passes.
runQuantizerConformance(absmaxQuantizer);
runAllocatorConformance(edgesAllocator);

describe('CONTRIBUTING.md: one plug-in file per kind, no package.json', () => {
  it('documents four commands, each naming one of the files', () => {
    expect(commands).toHaveLength(4);
    for (const file of readdirSync(filesDir).filter((f) => f.endsWith('.mjs'))) expect(commands.some((c) => c.includes(`--plugin ./${file}`)), file).toBe(true);
  });

  it('the quantizer: quantize writes its codes (checked against the plug-in on the original weights), eval reads them', async () => {
    const quantized = await runLine(line(/quantize .*--quantizer absmax-rtn/));
    expect(quantized.stderr).toBe('');
    expect(quantized.code).toBe(0);
    const out = join(work, 'absmax-b4g64');
    expect(JSON.parse(readFileSync(join(out, 'quantization.json'), 'utf8')).quantizer).toBe('absmax-rtn');
    // Every value of one matrix as the checkpoint holds it: on the grid the file defines, a step of 2 max|w| / 15.
    const name = matrixTensorName(1, 'self_attn.v_proj');
    const checkpoint = await openCheckpoint(shippedModelDir);
    const weight = await checkpoint.read(name);
    await checkpoint.close();
    const { openModelWeights } = await import('@layerquant/quantizers/node');
    const weights = await openModelWeights(out, { quantizers: [absmaxQuantizer] });
    const read = await weights.read(name);
    await weights.close();
    // float64 here, float32 scales in the file: a value within float32 rounding of a half step may round the other way.
    let worst = 0;
    let flipped = 0;
    for (let g = 0; g < weight.data.length / 64; g++) {
      const group = weight.data.subarray(g * 64, g * 64 + 64);
      const absMax = group.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const step = (2 * absMax) / 15;
      for (let j = 0; j < 64; j++) {
        const exact = group[j]! / step + 7.5;
        const expected = (Math.min(15, Math.max(0, Math.round(exact))) - 7.5) * step;
        const off = Math.abs(read.data[g * 64 + j]! - expected) / step;
        if (off > 1e-4) {
          flipped++;
          expect(Math.abs(exact - Math.floor(exact) - 0.5), 'only a value at a half step rounds the other way').toBeLessThan(1e-4);
          expect(off).toBeLessThan(1 + 1e-4);
        } else worst = Math.max(worst, off);
      }
    }
    expect(worst).toBeLessThan(1e-4);
    expect(flipped).toBeLessThan(weight.data.length / 1000);
    const evaluated = await runLine(line(/^layerquant eval/));
    expect(evaluated.code).toBe(0);
    const float = await runLine(line(/^layerquant eval/).replace('absmax-b4g64', shippedModelDir).replace(/ --plugin \S+/, ''));
    const ppl = (r: { stdout: string }) => (JSON.parse(r.stdout) as { perplexity: number }).perplexity;
    // 4 bits cost some perplexity, and not much (RTN b4g64 costs this model a few percent).
    expect(ppl(evaluated)).toBeGreaterThan(ppl(float));
    expect(ppl(evaluated)).toBeLessThan(1.25 * ppl(float));
  });

  it('the allocator: quantize --method edges gives the first and last layer one stop more, within the budget', async () => {
    const result = await runLine(line(/--method edges/));
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { sizes: { paperBitsPerWeight: number }; allocation: Record<string, string> };
    expect(report.sizes.paperBitsPerWeight).toBeLessThanOrEqual(3.3);
    const byLayer = new Map<number, Set<string>>();
    for (const [key, config] of Object.entries(report.allocation)) {
      const layer = Number(key.split('.')[0]);
      byLayer.set(layer, (byLayer.get(layer) ?? new Set()).add(config));
    }
    expect(byLayer.size).toBe(32);
    const configOf = (layer: number) => [...byLayer.get(layer)!];
    for (const layer of [0, 31]) expect(configOf(layer)).toHaveLength(1);
    for (let layer = 1; layer < 31; layer++) expect(configOf(layer)).toEqual(configOf(1));
    expect(configOf(31)).toEqual(configOf(0));
    expect(bitsPerWeight(parseConfigName(configOf(0)[0]!))).toBeGreaterThan(bitsPerWeight(parseConfigName(configOf(1)[0]!)));
    // the middle config is the richest of the ladder whose uniform allocation fits 3.3 bits per weight
    expect(configOf(1)[0]).toBe('b3g64');
    expect(bitsPerWeight(quantConfig(3, 32))).toBeGreaterThan(3.3);
  });

  it('the metric: sensitivity writes max-abs.csv through the file\'s format, each value the largest |w|', async () => {
    const result = await runLine(line(/sensitivity .*max-abs/));
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = readFileSync(join(work, 'stats', 'max-abs.csv'), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1 + 32 * 7);
    const checkpoint = await openCheckpoint(shippedModelDir);
    for (const row of [lines[1]!, lines.find((l) => l.startsWith('17,mlp.up_proj,'))!]) {
      const [layer, module, value] = row.split(',');
      const weight = await checkpoint.read(matrixTensorName(Number(layer), module as 'mlp.up_proj'));
      expect(Number(value), row).toBe(weight.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
    }
    await checkpoint.close();
  });

  it('a .ts plug-in file loads where Node strips types, and is refused with a message saying what to do where it does not', async () => {
    copyFileSync(join(work, 'edges-allocator.mjs'), join(work, 'edges.ts'));
    const result = await runLine('layerquant allocate --help --plugin ./edges.ts');
    if ((process.features as { typescript?: unknown }).typescript) {
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/edges/);
    } else {
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/--plugin \.\/edges\.ts: is TypeScript, which this Node \(v\d+.*\) does not load; write the plug-in as \.mjs/);
      expect(existsSync(join(work, 'edges.ts'))).toBe(true);
    }
  });
});
