import { loadDecoderModel } from '@layerquant/runtime';
import { randomDecoderSource, seededNormal, tinyConfig } from '@layerquant/runtime/testing';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { KldAccumulator, type Distribution, type Estimate } from './kl-divergence.js';

/**
 * The KL-divergence statistics against PyTorch (python3-torch through /usr/bin/python3, __fixtures__/kld_torch.py:
 * torch's log_softmax, kl_div, quantile and cov in float64) from the same logits: every statistic within 1e-6
 * relative. Skipped, with a warning on the console, only where python3-torch is missing.
 */
const PYTHON = '/usr/bin/python3';
const torchAvailable = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' }).status === 0;
if (!torchAvailable) {
  console.warn(`\n*** SKIPPED: KL-divergence statistics vs PyTorch — ${PYTHON} cannot import torch and numpy (Debian: apt-get install python3-torch) ***\n`);
}

describe('KL-divergence statistics vs PyTorch (float64, same logits)', () => {
  it.skipIf(!torchAvailable)('every statistic within 1e-6 relative', async () => {
    const config = tinyConfig({ numLayers: 2, vocabSize: 512, hiddenSize: 64, intermediateSize: 96 });
    const source = randomDecoderSource(config, 21);
    // Final norm scaled down (so are the logits): the random model's logits span ~70 nats, a softmax so peaked that
    // most tokens' KLD sits at float64 rounding; a trained model's spread is nearer this.
    const norm = Float32Array.from((await source.read('model.norm.weight')).data, (w) => 0.15 * w);
    const base = await loadDecoderModel(source, config, { overrides: new Map([['model.norm.weight', norm]]) });
    // The compared model: every linear matrix with small noise (as a quantization would move them all).
    const noise = seededNormal(4);
    const overrides = new Map<string, Float32Array>([['model.norm.weight', norm]]);
    for (const [name, data] of base.weights.tensors) {
      if (/layers\.\d+\.(self_attn|mlp)\..*weight$/.test(name)) overrides.set(name, Float32Array.from(data, (w) => w * (1 + 0.08 * noise())));
    }
    const model = await loadDecoderModel(source, config, { overrides });
    const windowLength = 64;
    const ids = Array.from({ length: windowLength * 6 }, (_, i) => (i * 131 + 17) % config.vocabSize);
    const accumulator = new KldAccumulator();
    const baseRows: Float32Array[] = [];
    const modelRows: Float32Array[] = [];
    const targets: number[] = [];
    for (let w = 0; w < 6; w++) {
      const window = ids.slice(w * windowLength, (w + 1) * windowLength);
      const rows = (windowLength - 1) * config.vocabSize;
      const b = (await base.logits({ ids: window })).slice(0, rows);
      const m = (await model.logits({ ids: window })).slice(0, rows);
      accumulator.addWindow(b, m, config.vocabSize, window.slice(1));
      baseRows.push(b);
      modelRows.push(m);
      targets.push(...window.slice(1));
    }
    await base.dispose();
    await model.dispose();
    const statistics = accumulator.statistics();

    const dir = mkdtempSync(join(tmpdir(), 'layerquant-kld-torch-'));
    try {
      const concat = (parts: Float32Array[]) => {
        const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of parts) {
          out.set(p, at);
          at += p.length;
        }
        return Buffer.from(out.buffer);
      };
      writeFileSync(join(dir, 'base.f32'), concat(baseRows));
      writeFileSync(join(dir, 'model.f32'), concat(modelRows));
      writeFileSync(join(dir, 'targets.i32'), Buffer.from(Int32Array.from(targets).buffer));
      const script = fileURLToPath(new URL('./__fixtures__/kld_torch.py', import.meta.url));
      const run = spawnSync(PYTHON, [script, join(dir, 'base.f32'), join(dir, 'model.f32'), join(dir, 'targets.i32'), String(config.vocabSize)], { encoding: 'utf8' });
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      const torch = JSON.parse(run.stdout) as Record<string, unknown>;

      const close = (actual: number, expected: number, what: string) => {
        expect(Math.abs(actual - expected), `${what}: ${actual} vs torch ${expected}`).toBeLessThanOrEqual(1e-6 * Math.abs(expected));
      };
      expect(torch.tokens).toBe(statistics.tokens);
      expect(statistics.kld.min).toBeGreaterThan(1e-6); // every token's KLD far above float64 rounding
      const pairs: [string, Estimate][] = [
        ['ppl', statistics.ppl],
        ['pplBase', statistics.pplBase],
        ['lnPplRatio', statistics.lnPplRatio],
        ['pplRatio', statistics.pplRatio],
        ['pplDifference', statistics.pplDifference],
        ['rmsDeltaP', statistics.rmsDeltaP],
        ['sameTop', statistics.sameTop],
      ];
      let checked = 0;
      for (const [name, estimate] of pairs) {
        const [value, error] = torch[name] as [number, number];
        close(estimate.value, value, `${name} value`);
        close(estimate.error, error, `${name} error`);
        checked += 2;
      }
      close(statistics.nllCorrelation, torch.nllCorrelation as number, 'nll correlation');
      for (const name of ['kld', 'deltaP'] as const) {
        const ours: Distribution = statistics[name];
        const theirs = torch[name] as { mean: number; error: number; median: number; min: number; max: number; quantiles: Record<string, number> };
        for (const k of ['mean', 'error', 'median', 'min', 'max'] as const) {
          close(ours[k], theirs[k], `${name} ${k}`);
          checked++;
        }
        expect(Object.keys(ours.quantiles).sort()).toEqual(Object.keys(theirs.quantiles).sort());
        for (const [fraction, value] of Object.entries(ours.quantiles)) {
          close(value, theirs.quantiles[fraction]!, `${name} quantile ${fraction}`);
          checked++;
        }
      }
      expect(checked).toBe(14 + 5 + 8 + 5 + 10);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
