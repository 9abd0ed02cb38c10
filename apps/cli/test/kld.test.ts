import { quantConfig } from '@layerquant/core';
import { rtnQuantizer } from '@layerquant/quantizers';
import { openModelWeights, quantizeModel } from '@layerquant/quantizers/node';
import { loadDecoderModel } from '@layerquant/runtime';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { loadDecoderConfig, loadTokenizer } from '@layerquant/tensor-io';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, expectRefused } from './run-cli.js';
import { parseValid } from './json-schema.js';
import { start, stopAll } from './cli-process.js';
import { haveRedis, startRedis } from './redis-server.js';

/**
 * KL divergence against the float model in the commands. The oracle is computed here in float64 from the logits of
 * the float and the dequantized model run independently (runtime's one-session float graph), window by window, with
 * the definitions written out: KLD = sum p_base (log p_base - log p), the same top token, p(target) - p_base(target).
 */
const scratch = mkdtempSync(join(tmpdir(), 'lq-kld-'));
const model = join(scratch, 'model');
const quantized = join(scratch, 'rtn-b3g32');
const cache = join(scratch, 'kld-cache');
const text = join(scratch, 'text.txt');
const seqlen = 48;

beforeAll(async () => {
  await writeModelDirectory(model, tinyConfig({ hiddenSize: 64, intermediateSize: 128, headDim: 16, numLayers: 2, tieWordEmbeddings: false, maxPositionEmbeddings: 512 }), { seed: 3 });
  writeFileSync(text, 'the quick brown fox jumps over the lazy dog. A stitch in time saves nine, and all that glitters is not gold. '.repeat(3));
  await quantizeModel({ modelDir: model, outDir: quantized, quantizer: rtnQuantizer, configFor: () => quantConfig(3, 32), method: 'rtn' });
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (v) => v - lse);
}

/** Per scored token: KLD, same top, Δp; full non-overlapping windows of `seqlen`, every position but the last scored. */
async function oracle(): Promise<{ kld: number[]; sameTop: number[]; deltaP: number[]; nll: number[]; nllBase: number[] }> {
  const config = await loadDecoderConfig(model);
  const ids = (await loadTokenizer(model)).encode(readFileSync(text, 'utf8'));
  const floatWeights = await openModelWeights(model);
  const float = await loadDecoderModel(floatWeights, config);
  await floatWeights.close();
  const qWeights = await openModelWeights(quantized);
  const dequantized = await loadDecoderModel(qWeights, config);
  await qWeights.close();
  const out = { kld: [] as number[], sameTop: [] as number[], deltaP: [] as number[], nll: [] as number[], nllBase: [] as number[] };
  const V = config.vocabSize;
  // The tail that does not fill a window is dropped.
  for (let begin = 0; begin + seqlen <= ids.length; begin += seqlen) {
    const window = ids.slice(begin, begin + seqlen);
    const targets = [...window.slice(1), 0];
    const a = await float.logitsAndNll({ ids: window }, targets);
    const b = await dequantized.logitsAndNll({ ids: window }, targets);
    for (let t = 0; t + 1 < window.length; t++) {
      const lb = logSoftmax(a.logits.subarray(t * V, (t + 1) * V));
      const lq = logSoftmax(b.logits.subarray(t * V, (t + 1) * V));
      let kld = 0;
      let topB = 0;
      let topQ = 0;
      for (let i = 0; i < V; i++) {
        kld += Math.exp(lb[i]!) * (lb[i]! - lq[i]!);
        if (lb[i]! > lb[topB]!) topB = i;
        if (lq[i]! > lq[topQ]!) topQ = i;
      }
      out.kld.push(kld);
      out.sameTop.push(topB === topQ ? 1 : 0);
      out.deltaP.push(Math.exp(lq[targets[t]!]!) - Math.exp(lb[targets[t]!]!));
      out.nll.push(-lq[targets[t]!]!);
      out.nllBase.push(-lb[targets[t]!]!);
    }
  }
  await float.dispose();
  await dequantized.dispose();
  return out;
}

const mean = (x: number[]) => x.reduce((s, v) => s + v, 0) / x.length;
const median = (x: number[]) => {
  const s = [...x].sort((p, q) => p - q);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const close = (actual: number, expected: number, rel = 1e-5) => expect(Math.abs(actual - expected)).toBeLessThanOrEqual(rel * Math.abs(expected) + 1e-9);

interface KldJson {
  tokens: number;
  ppl: { value: number };
  pplBase: { value: number };
  kld: { mean: number; median: number; max: number; min: number };
  sameTop: { value: number };
  rmsDeltaP: { value: number };
  base: { file: string; computed: boolean; bytes: number };
}

describe('eval --kld-base', () => {
  it('reports the KL divergence from the float model on the same tokens, equal to a float64 computation from independently computed logits; the base is cached and reused', async () => {
    const first = await cli('eval', quantized, '--text', text, '--seqlen', String(seqlen), '--kld-base', model, '--kld-cache', cache, '--json');
    expect(first.code, first.stderr).toBe(0);
    const a = parseValid<{ perplexity: number; kld: KldJson }>(first.stdout, 'eval');
    const o = await oracle();
    expect(a.kld.tokens).toBe(o.kld.length);
    close(a.kld.kld.mean, mean(o.kld));
    close(a.kld.kld.median, median(o.kld));
    close(a.kld.kld.max, Math.max(...o.kld));
    expect(a.kld.sameTop.value).toBeCloseTo(mean(o.sameTop), 12);
    close(a.kld.rmsDeltaP.value, Math.sqrt(mean(o.deltaP.map((d) => d * d))));
    close(a.kld.ppl.value, Math.exp(mean(o.nll)));
    close(a.kld.pplBase.value, Math.exp(mean(o.nllBase)));
    // The perplexity eval prints is the quantized model's own from the same run (its float32 NLL; KLD's is float64 from the logits).
    close(a.perplexity, a.kld.ppl.value, 1e-7);
    expect(a.kld.kld.mean).toBeGreaterThan(0);
    expect(a.kld.base.computed).toBe(true);
    // Scored tokens x vocab float32 logits, plus its header.
    expect(a.kld.base.bytes).toBeGreaterThan(o.kld.length * 64 * 4);
    expect(readdirSync(cache)).toHaveLength(1);

    const second = await cli('eval', quantized, '--text', text, '--seqlen', String(seqlen), '--kld-base', model, '--kld-cache', cache, '--json');
    const b = JSON.parse(second.stdout) as { kld: KldJson };
    expect(b.kld.base.computed).toBe(false);
    expect(b.kld.kld).toEqual(a.kld.kld);

    // The human table prints llama.cpp's lines, and says what the base cost.
    const human = await cli('eval', quantized, '--text', text, '--seqlen', String(seqlen), '--kld-base', model, '--kld-cache', join(scratch, 'other-cache'));
    expect(human.code, human.stderr).toBe(0);
    expect(human.stderr).toMatch(/KLD base: computing the logits of .* \(one float pass\) into .*kld-base-[0-9a-f]{16}\.bin, /);
    expect(human.stdout).toMatch(/mean KLD\s+\d+\.\d{6} ± \d+\.\d{6}/);
    expect(human.stdout).toMatch(/99\.9% KLD/);
    expect(human.stdout).toMatch(/same top p\s+\d+\.\d{3}% ± /);
  });

  it('refuses a quantized base, and --kld-cache without --kld-base', async () => {
    expectRefused(await cli('eval', model, '--text', text, '--seqlen', String(seqlen), '--kld-base', quantized, '--kld-cache', cache), /--kld-base.*quantized checkpoint.*float model/);
    expectRefused(await cli('eval', model, '--text', text, '--kld-cache', cache), /--kld-cache.*--kld-base/);
  });
});

interface CellKldJson {
  mean: number;
  p999: number;
  sameTop: number;
}
interface ExperimentJson {
  metric: string;
  rows: { method: string; perplexity: number; kld?: CellKldJson; kldVersusHqq: { difference: number; low: number; high: number } | null }[];
}

describe('compare --kld-base and experiment --kld', () => {
  it('compare prints each model\'s KLD from the float model: the float model itself 0, the quantized one as eval gives it', async () => {
    const argv = ['--text', text, '--seqlen', String(seqlen), '--kld-base', model, '--kld-cache', cache];
    const compared = await cli('compare', model, quantized, ...argv, '--json');
    expect(compared.code, compared.stderr).toBe(0);
    const c = parseValid<{ models: { kld: KldJson; kldVersusFirst: { difference: number } | null }[] }>(compared.stdout, 'compare');
    const evaluated = parseValid<{ kld: KldJson }>((await cli('eval', quantized, ...argv, '--json')).stdout, 'eval');
    expect(c.models[0]!.kld.kld.mean).toBe(0);
    expect(c.models[0]!.kld.sameTop.value).toBe(1);
    expect(c.models[1]!.kld.kld).toEqual(evaluated.kld.kld);
    expect(c.models[1]!.kldVersusFirst!.difference).toBeCloseTo(evaluated.kld.kld.mean, 12);
    const human = await cli('compare', model, quantized, ...argv);
    expect(human.stdout).toMatch(/mean KLD/);
    expect(human.stdout).toMatch(/ΔKLD vs 1/);
  });

  it('experiment --kld records each cell\'s KLD (the unquantized cell 0, HQQ uniform as eval measures its checkpoint), reads the report by --metric kld, and keys cells by it', async () => {
    const out = join(scratch, 'experiment');
    const argv = ['--methods', 'hqq,mxq', '--budgets', '3.51', '--configs', 'b2g32,b3g32,b4g32', '--text', text, '--calib', text, '--blocks', '1', '--seqlen', String(seqlen), '--out', out, '--json'];
    const run = await cli('experiment', model, ...argv, '--kld', '--metric', 'kld');
    expect(run.code, run.stderr).toBe(0);
    const result = parseValid<ExperimentJson>(run.stdout, 'experiment');
    expect(result.metric).toBe('kld');
    const [fp, hqq, mxq] = result.rows;
    expect(fp!.kld!.mean).toBe(0);
    expect(fp!.kld!.sameTop).toBe(1);
    // HQQ uniform b3g32 written by quantize and measured by eval --kld-base: the same mean KLD.
    const uniform = join(scratch, 'hqq-b3g32');
    expect((await cli('quantize', model, '--config', 'b3g32', '--out', uniform)).code).toBe(0);
    const evaluated = parseValid<{ kld: KldJson }>((await cli('eval', uniform, '--text', text, '--seqlen', String(seqlen), '--kld-base', model, '--kld-cache', cache, '--json')).stdout, 'eval');
    close(hqq!.kld!.mean, evaluated.kld.kld.mean, 1e-6);
    expect(hqq!.kld!.mean).toBeGreaterThan(0);
    expect(mxq!.kldVersusHqq!.difference).toBeCloseTo(mxq!.kld!.mean - hqq!.kld!.mean, 12);
    expect(mxq!.kldVersusHqq!.low).toBeLessThanOrEqual(mxq!.kldVersusHqq!.high);
    const md = readFileSync(join(out, 'results.md'), 'utf8');
    expect(md).toMatch(/Read by mean KLD/);
    expect(md).toMatch(/ΔKLD vs HQQ \(95% CI\)/);
    expect(md).toMatch(/No method beat HQQ uniform with a 95% interval of the mean-KLD difference/);
    expect(readFileSync(join(out, 'results.csv'), 'utf8').split('\n')[0]).toMatch(/,mean_kld,mean_kld_error,median_kld,kld_99,kld_99_9,/);
    // The same grid without --kld: other keys (cells never claim a KLD they did not measure), no KLD columns.
    const plain = await cli('experiment', model, ...argv);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stderr).toMatch(/not reusing .*kld "float-model" -> \(none\)/);
    const rows = parseValid<ExperimentJson>(plain.stdout, 'experiment').rows;
    expect(rows.every((r) => r.kld === undefined)).toBe(true);
    expect(rows.map((r) => r.perplexity)).toEqual(result.rows.map((r) => r.perplexity));
    expect(readFileSync(join(out, 'results.csv'), 'utf8')).not.toMatch(/mean_kld/);
    // And --kld again: every cell reused.
    const again = await cli('experiment', model, ...argv, '--kld');
    expect(again.stderr).toMatch(/reusing 3 of 3 cells/);
    expectRefused(await cli('experiment', model, ...argv.filter((a) => a !== '--json'), '--metric', 'kld'), /--metric.*--kld/);
  });
});

describe('sensitivity --metrics kld', () => {
  it('says its cost in layer runs, timed after its setup, and writes kld.csv for every unit at every config', async () => {
    const calib = join(scratch, 'calib-sensitivity.txt');
    writeFileSync(calib, 'Many hands make light work, and the early bird catches the worm; still waters run deep. '.repeat(14));
    const out = join(scratch, 'kld-sensitivity');
    const run = await cli('sensitivity', model, '--metrics', 'kld', '--configs', 'b2g32,b4g32', '--calib', calib, '--blocks', '1', '--seqlen', String(seqlen), '--out', out);
    expect(run.code, run.stderr).toBe(0);
    // 2 layers, untied: a matrix of layer 0 runs the rest of it, layer 1 and the head (3), one of layer 1 two,
    // embed_tokens both layers and the head (3), lm_head the head (1): (7 x 3 + 7 x 2 + 3 + 1) x 2 configs = 78.
    const estimate = /kld: first (\d+) layer runs took \S+ after \S+ of setup; estimated \S+ for all (\d+) layer runs/.exec(run.stderr);
    expect(estimate, run.stderr).not.toBeNull();
    expect(Number(estimate![1])).toBe(3); // the first measurement: embed_tokens
    expect(Number(estimate![2])).toBe(78);
    const rows = readFileSync(join(out, 'kld.csv'), 'utf8').trim().split('\n');
    expect(rows.length - 1).toBe((14 + 2) * 2);
  });
});

describe('the kld allocator on a real model', () => {
  it('quantize --method kld --format onnx --target-size: the end-to-end ΔKLD table measured, the file within the target, and its KLD measured by eval', async () => {
    const calib = join(scratch, 'calib.txt');
    writeFileSync(calib, 'Many hands make light work, and the early bird catches the worm; still waters run deep. '.repeat(14));
    const out = join(scratch, 'kld-onnx');
    const targetMiB = 0.085;
    const quantizedRun = await cli('quantize', model, '--method', 'kld', '--format', 'onnx', '--target-size', String(targetMiB), '--configs', 'b2g32,b4g32,b4g64', '--calib', calib, '--blocks', '1', '--out', out, '--json');
    expect(quantizedRun.code, quantizedRun.stderr).toBe(0);
    const shipped = (JSON.parse(quantizedRun.stdout) as { sizes: { shipped: { MiB: number } } }).sizes.shipped;
    const onnxDir = join(out, 'onnx');
    const bytes = readdirSync(onnxDir).reduce((sum, name) => sum + statSync(join(onnxDir, name)).size, 0);
    expect(bytes).toBeLessThanOrEqual(targetMiB * 2 ** 20);
    expect(shipped.MiB * 2 ** 20).toBeCloseTo(bytes, 0);
    // The statistic it allocated on: every unit at every config of the format's ladder, ΔKLD >= 0 up to rounding.
    const [key] = readdirSync(join(out, 'stats')).filter((name) => /^[0-9a-f]{16}$/.test(name));
    const kldCsv = readFileSync(join(out, 'stats', key!, 'kld.csv'), 'utf8').trim().split('\n');
    expect(kldCsv.length).toBeGreaterThan(14 * 3);
    // embed_tokens at its own ladder: the ONNX lookup stores integer zero points only.
    const header = kldCsv[0]!.split(',');
    const embedRows = kldCsv.slice(1).map((line) => line.split(',')).filter((cells) => cells[header.indexOf('module')] === 'embed_tokens');
    expect(embedRows.length).toBeGreaterThan(0);
    expect(embedRows.every((cells) => cells[header.indexOf('zero')] !== 'fractional')).toBe(true);
    const evaluated = parseValid<{ kld: KldJson; evaluation: string }>((await cli('eval', out, '--text', text, '--seqlen', String(seqlen), '--kld-base', model, '--kld-cache', cache, '--json')).stdout, 'eval');
    expect(evaluated.evaluation).toBe('onnx');
    expect(evaluated.kld.kld.mean).toBeGreaterThan(0);
    expect(Number.isFinite(evaluated.kld.kld.mean)).toBe(true);
  });
});

describe('the kld allocator with a calibrated quantizer (gptq)', () => {
  it('quantize --method kld --quantizer gptq: the table measured with GPTQ itself (not HQQ\'s numbers), the file within the target; the correction still refused', async () => {
    const calib = join(scratch, 'calib-gptq.txt');
    writeFileSync(calib, 'Many hands make light work, and the early bird catches the worm; still waters run deep. '.repeat(28));
    const targetMiB = 0.085;
    const common = ['--method', 'kld', '--format', 'onnx', '--target-size', String(targetMiB), '--configs', 'b2g32-int,b4g32-int,b4g64-int', '--calib', calib, '--blocks', '2', '--stats-blocks', '1', '--json'];
    const out = join(scratch, 'kld-gptq');
    const run = await cli('quantize', model, '--quantizer', 'gptq', ...common, '--no-refine', '--out', out);
    expect(run.code, run.stderr).toBe(0);
    const onnxDir = join(out, 'onnx');
    expect(readdirSync(onnxDir).reduce((sum, name) => sum + statSync(join(onnxDir, name)).size, 0)).toBeLessThanOrEqual(targetMiB * 2 ** 20);
    const table = (dir: string) => {
      const [key] = readdirSync(join(dir, 'stats')).filter((name) => /^[0-9a-f]{16}$/.test(name));
      const settings = JSON.parse(readFileSync(join(dir, 'stats', key!, 'settings.json'), 'utf8')) as { quantizer?: { id: string } };
      const rows = readFileSync(join(dir, 'stats', key!, 'kld.csv'), 'utf8').trim().split('\n');
      return { settings, rows };
    };
    const gptq = table(out);
    expect(gptq.settings.quantizer?.id).toBe('gptq');
    // The same table measured with HQQ (--stats-quantizer hqq): the same units and configs, other numbers.
    const hqqOut = join(scratch, 'kld-gptq-hqq-stats');
    expect((await cli('quantize', model, '--quantizer', 'gptq', ...common, '--no-refine', '--stats-quantizer', 'hqq', '--out', hqqOut)).code).toBe(0);
    const hqq = table(hqqOut);
    expect(hqq.rows.length).toBe(gptq.rows.length);
    const deltaOf = (rows: string[]) => {
      const header = rows[0]!.split(',');
      return new Map(rows.slice(1).map((line) => line.split(',')).map((cells) => [`${cells[0]}.${cells[1]} ${cells[2]}g${cells[3]}`, Number(cells[header.indexOf('delta_kld')])]));
    };
    const [a, b] = [deltaOf(gptq.rows), deltaOf(hqq.rows)];
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    const linear = [...a.keys()].filter((k) => /^\d+\./.test(k));
    expect(linear.filter((k) => Math.abs(a.get(k)! - b.get(k)!) > 1e-3 * b.get(k)!).length).toBeGreaterThan(linear.length / 2);
    // The correction by measurement runs no layer pass per allocation: refused with a calibrated statistics quantizer.
    const refined = await cli('quantize', model, '--quantizer', 'gptq', ...common, '--out', join(scratch, 'kld-gptq-refine'));
    expect(refined.code).toBe(1);
    expect(refined.stderr).toMatch(/--refine.*"gptq" is calibrated/);
  });
});

interface RefinementJson {
  additiveKld: number;
  refinedKld: number;
  kept: 'refined' | 'additive';
  heldOut: { blocks: number; tokens: number; additiveKld: number; refinedKld: number } | null;
  changed: number;
  calibration: { blocks: number; seqlen: number; tokens: number; heldOutBlocks: number };
  rounds: { round: number; kld: number }[];
}

describe('the kld allocator\'s correction by measurement (quantize by default, experiment --refine)', () => {
  const calib = join(scratch, 'refine-calib.txt');
  const configs = 'b2g32,b3g32,b4g32';
  /** quantize's correction, which experiment's kld cell must repeat (the same statistics and calibration). */
  let quantizeRefinement: RefinementJson | undefined;
  /** The kld table quantize measured (<out>/stats/<key>), reused by the runs after it. */
  let statsDir = '';

  /**
   * Mean KLD from the float model of a quantized checkpoint on one block of the calibration text (the first, or the one
   * starting at token `from`), float64 from independently computed logits.
   */
  async function calibrationKld(checkpoint: string, blockTokens: number, from = 0): Promise<number> {
    const config = await loadDecoderConfig(model);
    const ids = (await loadTokenizer(model)).encode(readFileSync(calib, 'utf8')).slice(from, from + blockTokens);
    expect(ids).toHaveLength(blockTokens);
    const open = async (dir: string) => {
      const weights = await openModelWeights(dir);
      const decoder = await loadDecoderModel(weights, config);
      await weights.close();
      return decoder;
    };
    const float = await open(model);
    const quantizedModel = await open(checkpoint);
    const targets = [...ids.slice(1), 0];
    const a = await float.logitsAndNll({ ids }, targets);
    const b = await quantizedModel.logitsAndNll({ ids }, targets);
    const V = config.vocabSize;
    let sum = 0;
    for (let t = 0; t + 1 < ids.length; t++) {
      const lb = logSoftmax(a.logits.subarray(t * V, (t + 1) * V));
      const lq = logSoftmax(b.logits.subarray(t * V, (t + 1) * V));
      for (let i = 0; i < V; i++) sum += Math.exp(lb[i]!) * (lb[i]! - lq[i]!);
    }
    await float.dispose();
    await quantizedModel.dispose();
    return sum / (ids.length - 1);
  }

  it('quantize --method kld keeps the corrected allocation only when its measured KLD is not higher; both KLDs equal whole-model runs of the checkpoints', async () => {
    writeFileSync(calib, 'Many hands make light work, and the early bird catches the worm; still waters run deep. '.repeat(14));
    const argv = ['--method', 'kld', '--budget', '3', '--configs', configs, '--calib', calib, '--blocks', '1', '--json'];
    const refinedOut = join(scratch, 'kld-refined');
    const run = await cli('quantize', model, ...argv, '--out', refinedOut);
    expect(run.code, run.stderr).toBe(0);
    const refined = parseValid<{ refinement: RefinementJson; allocation: Record<string, string | null> }>(run.stdout, 'quantize');
    const r = refined.refinement;
    // Its plan and cost before it starts, then each measured allocation.
    expect(run.stderr).toMatch(/refine: kld's correction by measurement on 1 calibration block of \d+ tokens .*up to 2 rounds of \d+ single-unit measurements/);
    expect(run.stderr).toMatch(/refine: additive allocation: measured KLD /);
    expect(run.stderr).toMatch(/refine: kept the (corrected|additive) allocation/);
    expect(r.rounds[0]!.round).toBe(0);
    expect(r.rounds[0]!.kld).toBe(r.additiveKld);
    expect(r.refinedKld).toBeLessThanOrEqual(r.additiveKld);
    expect(r.kept).toBe('refined');
    // The additive allocation, nothing measured: the same statistics and knapsack without the correction.
    statsDir = join(refinedOut, 'stats', readdirSync(join(refinedOut, 'stats')).find((name) => /^[0-9a-f]{16}$/.test(name))!);
    const additiveOut = join(scratch, 'kld-additive');
    const plain = await cli('quantize', model, ...argv, '--stats', statsDir, '--out', additiveOut, '--no-refine');
    expect(plain.code, plain.stderr).toBe(0);
    const additive = parseValid<{ refinement?: unknown; allocation: Record<string, string | null> }>(plain.stdout, 'quantize');
    expect(additive.refinement).toBeUndefined();
    expect(plain.stderr).not.toMatch(/refine:/);
    const changed = Object.keys(additive.allocation).filter((key) => additive.allocation[key] !== refined.allocation[key]).length;
    expect(changed).toBe(r.changed);
    // The independent oracle: each checkpoint's whole model against the float model on the same calibration block.
    const tokens = r.calibration.seqlen * r.calibration.blocks;
    const refinedKld = await calibrationKld(refinedOut, tokens);
    const additiveKld = await calibrationKld(additiveOut, tokens);
    console.log(`kld refine on a tiny random model at 3 bits: additive ${additiveKld} (reported ${r.additiveKld}), corrected ${refinedKld} (reported ${r.refinedKld}), ${r.changed} units changed, ${r.rounds.length} allocations measured`);
    // The measurer runs layer blocks, the oracle one graph of the whole model: the same float32 logits up to rounding.
    close(r.refinedKld, refinedKld, 1e-9);
    close(r.additiveKld, additiveKld, 1e-9);
    expect(refinedKld).toBeLessThanOrEqual(additiveKld);
    // The held-out check: the block after the calibration's, where the correction was not fitted. Both allocations
    // measured there equal the checkpoints' whole-model KLD on that block, and the corrected one is kept only if it is
    // not worse there.
    // (Up to 4 blocks: as many as the text has after the calibration block.)
    const heldOutBlocks = r.calibration.heldOutBlocks;
    expect(heldOutBlocks).toBeGreaterThanOrEqual(1);
    expect(heldOutBlocks).toBeLessThanOrEqual(4);
    expect(r.heldOut).not.toBeNull();
    const held = r.heldOut!;
    expect(held.blocks).toBe(heldOutBlocks);
    const perBlock = async (checkpoint: string) => {
      let sum = 0;
      for (let b = 1; b <= heldOutBlocks; b++) sum += await calibrationKld(checkpoint, r.calibration.seqlen, b * r.calibration.seqlen);
      return sum / heldOutBlocks; // every block scores the same number of positions
    };
    close(held.refinedKld, await perBlock(refinedOut), 1e-9);
    close(held.additiveKld, await perBlock(additiveOut), 1e-9);
    expect(held.refinedKld).toBeLessThanOrEqual(held.additiveKld);
    const blocksText = `${heldOutBlocks} held-out block${heldOutBlocks === 1 ? '' : 's'}`;
    expect(run.stderr).toContain(`on ${blocksText} (the next ones of the text)`);
    expect(run.stderr).toMatch(new RegExp(`refine: kept the corrected allocation .*on ${blocksText} [\\d.e-]+ additive, [\\d.e-]+ corrected`));
    quantizeRefinement = r;
    // allocate with the model measures the same correction on the same calibration, and prints what quantize quantized.
    const allocated = await cli('allocate', '--stats', statsDir, '--model', model, '--method', 'kld', '--budget', '3', '--configs', configs, '--calib', calib, '--blocks', '1', '--json');
    expect(allocated.code, allocated.stderr).toBe(0);
    const a = parseValid<{ refinement: RefinementJson; allocation: Record<string, string | null> }>(allocated.stdout, 'allocate');
    expect(a.refinement.additiveKld).toBe(r.additiveKld);
    expect(a.refinement.refinedKld).toBe(r.refinedKld);
    expect(a.allocation).toEqual(refined.allocation);
    expect(allocated.stderr).toMatch(/refine: kld's correction by measurement/);
  });

  /** The rows of the in-process `experiment --refine`, which the queue's must repeat. */
  let refinedRows: { method: string; seconds?: number }[] | undefined;
  const refineArgs = (out: string) => ['--methods', 'hqq,kld', '--budgets', '3', '--configs', configs, '--text', text, '--calib', calib, '--blocks', '1', '--stats', statsDir, '--seqlen', String(seqlen), '--out', out];

  it('experiment --refine: the kld cell is corrected (its key changes, no other cell\'s does); without it every key is as before', async () => {
    const out = join(scratch, 'refine-experiment');
    const argv = refineArgs(out);
    const plain = await cli('experiment', model, ...argv, '--json');
    expect(plain.code, plain.stderr).toBe(0);
    const keysBefore = Object.keys((JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { cells: Record<string, unknown> }).cells);
    const before = parseValid<{ rows: { method: string; perplexity: number; refinement?: unknown }[] }>(plain.stdout, 'experiment').rows;
    expect(before.every((row) => row.refinement === undefined)).toBe(true);
    const run = await cli('experiment', model, ...argv, '--refine', '--json');
    expect(run.code, run.stderr).toBe(0);
    // fp and hqq reused under their keys; kld computed under a new one.
    expect(run.stderr).toMatch(/reusing 2 of 3 cells/);
    expect(run.stderr).toMatch(/refine kld @ 3: kld's correction by measurement/);
    const rows = parseValid<{ rows: { method: string; perplexity: number; refinement?: { additiveKld: number; refinedKld: number; kept: string } }[] }>(run.stdout, 'experiment').rows;
    const kld = rows.find((row) => row.method === 'kld')!;
    // quantize's statistics and calibration (the test above): the same two measured KLDs.
    expect(quantizeRefinement, 'the quantize test runs first').toBeDefined();
    expect(kld.refinement!.additiveKld).toBe(quantizeRefinement!.additiveKld);
    expect(kld.refinement!.refinedKld).toBe(quantizeRefinement!.refinedKld);
    expect(kld.refinement!.refinedKld).toBeLessThanOrEqual(kld.refinement!.additiveKld);
    const keysAfter = Object.keys((JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { cells: Record<string, unknown> }).cells);
    expect(keysAfter.slice(0, keysBefore.length)).toEqual(keysBefore);
    expect(keysAfter).toHaveLength(keysBefore.length + 1);
    // Without --refine again: every cell reused under its old key.
    const again = await cli('experiment', model, ...argv, '--json');
    expect(again.stderr).toMatch(/reusing 3 of 3 cells/);
    refinedRows = rows;
  });

  it.skipIf(!haveRedis)('experiment --refine --queue: a worker corrects the kld cell on its own model as the process does (the same rows, measured KLDs included)', async () => {
    expect(refinedRows, 'the in-process test runs first').toBeDefined();
    const redis = await startRedis();
    try {
      const worker = start('worker', '--queue', redis.url, '--model', model);
      const coordinator = start('experiment', model, ...refineArgs(join(scratch, 'refine-queue')), '--refine', '--queue', redis.url, '--json');
      expect((await coordinator.exited).code, coordinator.output.stderr).toBe(0);
      const rows = parseValid<{ rows: { method: string; seconds?: number; refinement?: unknown }[] }>(coordinator.output.stdout, 'experiment').rows;
      const withoutTime = (r: { seconds?: number }[]) => r.map(({ seconds: _, ...rest }) => rest);
      expect(withoutTime(rows)).toEqual(withoutTime(refinedRows!));
      expect(rows.find((row) => row.method === 'kld')!.refinement).toBeDefined();
      expect(rows.find((row) => row.method === 'hqq')!.refinement).toBeUndefined();
      expect(worker.output.stderr).toMatch(/refine kld @ 3: kept the (refined|additive) allocation \(measured KLD /);
    } finally {
      await stopAll();
      await redis.stop();
    }
  });
});
