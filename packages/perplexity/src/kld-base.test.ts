import { loadDecoderModel, loadLayerStreamedModel, type DecoderModel } from '@layerquant/runtime';
import { randomDecoderSource, relativeError, seededNormal, tinyConfig } from '@layerquant/runtime/testing';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KldBaseMismatchError, cachedKldBase, kldBaseKey, openKldBase, tokensHash, writeKldBase } from './kld-base.js';
import { klDivergence, kldBaseInMemory, type LogitsModel } from './kld-evaluation.js';

const config = tinyConfig({ numLayers: 3 });
const ids = Array.from({ length: 40 * 5 + 7 }, (_, i) => (i * 37 + 5) % config.vocabSize);
const hashes = { model: 'a'.repeat(64), tokenizer: 'b'.repeat(64) };
const options = { seqlen: 40 };

describe('KL-divergence base file', () => {
  let dir: string;
  let base: DecoderModel;
  let model: DecoderModel;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'layerquant-kld-base-'));
    base = await loadDecoderModel(randomDecoderSource(config, 8), config);
    const name = 'model.layers.0.self_attn.v_proj.weight';
    const noise = seededNormal(2);
    model = await loadDecoderModel(randomDecoderSource(config, 8), config, {
      overrides: new Map([[name, Float32Array.from(base.weights.tensors.get(name)!, (w) => w + 0.1 * noise())]]),
    });
  });
  afterAll(async () => {
    await base.dispose();
    await model.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores the float32 logits exactly: the statistics equal those from an in-memory base, bit for bit', async () => {
    const path = join(dir, 'base.bin');
    const written = await writeKldBase(path, base, config.vocabSize, ids, hashes, options);
    const key = kldBaseKey(hashes, ids, options);
    const file = await openKldBase(path, key);
    expect(file.windows).toHaveLength(5);
    // 12-byte prefix + header + 5 windows x 39 scored rows x vocab float32.
    expect(written.bytes).toBe(file.bytes);
    expect(file.bytes - 5 * 39 * config.vocabSize * 4).toBeGreaterThan(12);
    const memory = await kldBaseInMemory(base, config.vocabSize, ids, options);
    expect(written.perplexity.ppl).toBe(memory.perplexity.ppl);
    for (let w = 0; w < 5; w++) expect(await file.window(w)).toEqual(await memory.window(w));
    const fromFile = await klDivergence(model, file, ids, options);
    const fromMemory = await klDivergence(model, memory, ids, options);
    expect(fromFile.statistics).toEqual(fromMemory.statistics);
    expect(fromFile.statistics.kld.mean).toBeGreaterThan(0);
    await file.close();
  });

  it('a layer-streamed float model writes the same base, one window at a time', async () => {
    const path = join(dir, 'streamed.bin');
    const streamed = await loadLayerStreamedModel(randomDecoderSource(config, 8), config);
    await writeKldBase(path, streamed, config.vocabSize, ids, hashes, options);
    await streamed.dispose();
    const file = await openKldBase(path, kldBaseKey(hashes, ids, options));
    const memory = await kldBaseInMemory(base, config.vocabSize, ids, options);
    for (let w = 0; w < 5; w++) expect(relativeError(await file.window(w), await memory.window(w))).toBeLessThan(1e-5);
    await file.close();
  });

  it('refuses a base of another model, tokenizer, text or window setting, naming what differs', async () => {
    const path = join(dir, 'keyed.bin');
    await writeKldBase(path, base, config.vocabSize, ids, hashes, options);
    const cases: [Parameters<typeof kldBaseKey>, RegExp][] = [
      [[{ ...hashes, model: 'c'.repeat(64) }, ids, options], /computed for model \(content hash\) a{64}, not c{64}/],
      [[{ ...hashes, tokenizer: 'd'.repeat(64) }, ids, options], /tokenizer \(content hash\)/],
      [[hashes, [...ids.slice(0, -1), (ids.at(-1)! + 1) % config.vocabSize], options], /text \(hash of the token ids\)/],
      [[hashes, ids, { seqlen: 20 }], /window length \(--seqlen\) 40, not 20/],
      [[hashes, ids, { seqlen: 40, maxTokens: 160 }], /--max-tokens none, not 160/],
      [[hashes, ids, { protocol: 'sliding', maxLength: 40, stride: 20 }], /window protocol windows, not sliding/],
    ];
    for (const [args, message] of cases) {
      const error = await openKldBase(path, kldBaseKey(...args)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KldBaseMismatchError);
      expect((error as Error).message).toMatch(message);
      expect((error as KldBaseMismatchError).code).toBe('KLD_BASE_MISMATCH');
    }
  });

  it('refuses a truncated file, a file that is not a base, and a missing one, with typed errors', async () => {
    const path = join(dir, 'truncated.bin');
    await writeKldBase(path, base, config.vocabSize, ids, hashes, options);
    const key = kldBaseKey(hashes, ids, options);
    truncateSync(path, readFileSync(path).length - 4);
    await expect(openKldBase(path, key)).rejects.toThrow(/truncated or corrupt, compute the base again/);
    writeFileSync(join(dir, 'other.bin'), 'not a base at all');
    await expect(openKldBase(join(dir, 'other.bin'), key)).rejects.toThrow(/is not a layerquant KL-divergence base/);
    await expect(openKldBase(join(dir, 'missing.bin'), key)).rejects.toThrow(/no KL-divergence base here/);
  });

  it('an interrupted write leaves nothing behind', async () => {
    const failing: LogitsModel = {
      async logitsAndNll(input, targets) {
        if (input.ids[0] === ids[80]) throw new Error('interrupted at window 2');
        return base.logitsAndNll(input, targets);
      },
    };
    const before = readdirSync(dir).length;
    await expect(writeKldBase(join(dir, 'partial.bin'), failing, config.vocabSize, ids, hashes, options)).rejects.toThrow(/interrupted at window 2/);
    expect(existsSync(join(dir, 'partial.bin'))).toBe(false);
    expect(readdirSync(dir)).toHaveLength(before);
  });

  it('the cache computes a base once per key and reuses it', async () => {
    const cache = join(dir, 'cache');
    let opened = 0;
    const open = async () => {
      opened++;
      return { model: base as LogitsModel, vocab: config.vocabSize, dispose: async () => undefined };
    };
    const first = await cachedKldBase(cache, ids, hashes, options, open);
    expect(first.computed).toBe(true);
    expect(first.perplexity?.windows).toBe(5);
    await first.base.close();
    const again = await cachedKldBase(cache, ids, hashes, options, open);
    expect(again.computed).toBe(false);
    expect(opened).toBe(1);
    await again.base.close();
    const other = await cachedKldBase(cache, ids, hashes, { seqlen: 50 }, open);
    expect(other.computed).toBe(true);
    expect(opened).toBe(2);
    await other.base.close();
    expect(readdirSync(cache).filter((f) => f.endsWith('.bin'))).toHaveLength(2);
  });

  it('streams: a 32000-token vocabulary base never holds more than a few windows of logits', async () => {
    // A model that makes up its logits (a 32000-entry vocabulary, as Llama 2's): 8 windows of 128 tokens are 131 MB
    // of float32 logits, the writer must hold about one window (16 MB) at a time. arrayBuffers also counts windows
    // already dropped and not yet collected: V8 collects external memory once about 64 MB more of it is allocated
    // (64 MB above the start measured on one CI run), so the bound is 6 windows (98 MB), below the 8 a
    // writer holding every window would keep alive.
    const vocab = 32000;
    const length = 128;
    const fakeIds = Array.from({ length: 8 * length }, (_, i) => (i * 7919) % vocab);
    let peak = 0;
    const fake: LogitsModel = {
      async logitsAndNll(input) {
        peak = Math.max(peak, process.memoryUsage().arrayBuffers);
        const logits = new Float32Array(input.ids.length * vocab);
        for (let i = 0; i < logits.length; i += 97) logits[i] = (i % 13) / 13;
        return { logits, nll: new Float32Array(input.ids.length).fill(1) };
      },
    };
    const start = process.memoryUsage().arrayBuffers;
    const written = await writeKldBase(join(dir, 'wide.bin'), fake, vocab, fakeIds, hashes, { seqlen: length });
    expect(written.bytes).toBeGreaterThan(8 * (length - 1) * vocab * 4);
    expect(peak - start).toBeLessThan(6 * length * vocab * 4);
    rmSync(join(dir, 'wide.bin'));
  });

  it('tokensHash depends on every id and its position', () => {
    expect(tokensHash([1, 2, 3])).not.toBe(tokensHash([1, 3, 2]));
    expect(tokensHash([1, 2, 3])).toBe(tokensHash([1, 2, 3]));
    expect(tokensHash([1, 2, 3])).toMatch(/^[0-9a-f]{64}$/);
  });
});
