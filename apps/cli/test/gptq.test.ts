// The calibrated quantizers through the commands: quantize (uniform and allocated, statistics measured with the
// quantizer in use), export, eval, experiment and sensitivity, on a tiny random Llama with the shipped tokenizer.
import { quantConfig } from '@layerquant/core';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { brownCalibPath, shippedModelDir } from '@layerquant/fixtures';
import { gptqQuantizer } from '@layerquant/quantizers';
import { quantizeModel } from '@layerquant/quantizers/node';
import { openSequentialCalibration } from '@layerquant/sensitivity';
import { openCheckpoint } from '@layerquant/tensor-io';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseValid } from './json-schema.js';
import { cli } from './run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'layerquant-cli-gptq-'));
const model = join(dir, 'model');
const calib = join(dir, 'calib.txt');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(async () => {
  // 2 layers of width 64, the shipped tokenizer's 8192 ids
  await writeModelDirectory(model, tinyConfig({ hiddenSize: 64, headDim: 16, intermediateSize: 128, vocabSize: 8192, numLayers: 2, maxPositionEmbeddings: 1024 }), 5);
  for (const file of ['tokenizer.json', 'tokenizer_config.json']) if (existsSync(join(shippedModelDir, file))) copyFileSync(join(shippedModelDir, file), join(model, file));
  writeFileSync(calib, readFileSync(brownCalibPath, 'utf8').slice(0, 20_000));
});

const statsSettings = (out: string) => {
  const key = readdirSync(join(out, 'stats')).find((name) => existsSync(join(out, 'stats', name, 'settings.json')))!;
  return JSON.parse(readFileSync(join(out, 'stats', key, 'settings.json'), 'utf8')) as { quantizer: { id: string } };
};

/** Every stored tensor of a checkpoint, as its raw bytes (packed codes, scales, zeros, copied tensors). */
async function storedTensors(dir: string): Promise<Map<string, Uint8Array>> {
  const checkpoint = await openCheckpoint(dir);
  try {
    const out = new Map<string, Uint8Array>();
    for (const t of checkpoint.tensors) out.set(t.name, await checkpoint.readRaw(t.name));
    return out;
  } finally {
    await checkpoint.close();
  }
}

describe('quantize --quantizer gptq', () => {
  it('--config b4g64 --calib equals quantizeModel with the Hessians openSequentialCalibration collects on the same text', async () => {
    const out = join(dir, 'gptq-b4g64');
    const result = await cli('quantize', model, '--quantizer', 'gptq', '--config', 'b4g64', '--calib', calib, '--blocks', '2', '--out', out, '--json');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(parseValid<{ quantizer: string; config: string }>(result.stdout, 'quantize')).toMatchObject({ quantizer: 'gptq', config: 'b4g64' });

    // The library path, written independently of the CLI: the same text, 2 blocks, the same config.
    const reference = join(dir, 'gptq-b4g64-reference');
    const opened = await openSequentialCalibration(model, { text: readFileSync(calib, 'utf8'), name: 'calib.txt', blocks: 2 });
    try {
      await quantizeModel({ modelDir: model, outDir: reference, quantizer: gptqQuantizer, configFor: () => quantConfig(4, 64), method: 'gptq', calibration: opened.calibration });
    } finally {
      await opened.close();
    }
    const cliTensors = await storedTensors(out);
    const libTensors = await storedTensors(reference);
    expect([...cliTensors.keys()].sort()).toEqual([...libTensors.keys()].sort());
    for (const [name, bytes] of libTensors) expect(Buffer.from(cliTensors.get(name)!).equals(Buffer.from(bytes)), name).toBe(true);
    // GPTQ's codes differ from rounding's: a run that ignored the Hessians (RTN) would not match the reference.
    const rtn = join(dir, 'rtn-b4g64');
    expect((await cli('quantize', model, '--quantizer', 'rtn', '--config', 'b4g64', '--out', rtn)).code).toBe(0);
    const rtnTensors = await storedTensors(rtn);
    const differing = [...libTensors].filter(([name, bytes]) => rtnTensors.has(name) && !Buffer.from(rtnTensors.get(name)!).equals(Buffer.from(bytes)));
    expect(differing.length).toBeGreaterThan(0);
  });

  it('without --calib: a typed one-line error naming --calib, nothing written', async () => {
    for (const args of [['--config', 'b4g64'], ['--method', 'mxq', '--budget', '3.3']]) {
      const out = join(dir, `never-${args[0]!.slice(2)}`);
      const missing = await cli('quantize', model, '--quantizer', 'gptq', ...args, '--out', out, '--json');
      expect(missing.code).toBe(1);
      const error = (JSON.parse(missing.stdout) as { error: { code: string; message: string } }).error;
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toMatch(/--calib/);
      expect(error.message).toMatch(/gptq/);
      expect(existsSync(out)).toBe(false);
      const text = await cli('quantize', model, '--quantizer', 'gptq', ...args, '--out', out);
      expect(text.code).toBe(1);
      expect(text.stderr.trim().split('\n')).toHaveLength(1);
      expect(text.stderr).toMatch(/--calib/);
    }
  });

  it('--format onnx writes MatMulNBits with no zero correction', async () => {
    const out = join(dir, 'gptq-onnx-direct');
    const result = await cli('quantize', model, '--quantizer', 'gptq', '--config', 'b4g64', '--calib', calib, '--blocks', '2', '--format', 'onnx', '--out', out, '--json');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout) as { quantizer: string; export: { notes: string[] } };
    expect(json.quantizer).toBe('gptq');
    expect(json.export.notes.join(' ')).not.toMatch(/correction/);
    const onnx = readdirSync(join(out, 'onnx')).filter((f) => f.endsWith('.onnx'));
    expect(onnx.length).toBeGreaterThan(0);
    const graph = readFileSync(join(out, 'onnx', onnx[0]!));
    expect(graph.includes(Buffer.from('MatMulNBits'))).toBe(true);
  });

  it('quantizes layer by layer on the calibration text, reports the Hessians, and exports with no zero correction', async () => {
    const out = join(dir, 'gptq');
    const quantized = await cli('quantize', model, '--quantizer', 'gptq', '--config', 'b4g32', '--calib', calib, '--blocks', '2', '--out', out, '--json');
    expect(quantized.stderr).toBe('');
    expect(quantized.code).toBe(0);
    const json = parseValid<{ quantizer: string; quantizedMatrices: number; quantizerNotes: { deadColumns: number; dampened: number } }>(quantized.stdout, 'quantize');
    expect(json.quantizer).toBe('gptq');
    expect(json.quantizedMatrices).toBe(14);
    expect(json.quantizerNotes).toEqual({ deadColumns: 0, matricesWithDeadColumns: 0, dampened: 0, largestDampening: 0.01 });
    const record = JSON.parse(readFileSync(join(out, 'quantization.json'), 'utf8')) as { perMatrix: { report?: unknown }[] };
    expect(record.perMatrix.filter((m) => m.report)).toHaveLength(14);

    const exported = await cli('export', out, '--format', 'onnx', '--out', join(dir, 'gptq-onnx'), '--json');
    expect(exported.code).toBe(0);
    const notes = (JSON.parse(exported.stdout) as { notes: string[] }).notes.join(' ');
    expect(notes).not.toMatch(/correction/);
  });

  it('--act-order and --dampening reach the quantizer; a missing --calib file is a typed error', async () => {
    const out = join(dir, 'gptq-act');
    const result = await cli('quantize', model, '--quantizer', 'gptq', '--act-order', '--dampening', '0.05', '--config', 'b3g32', '--calib', calib, '--blocks', '1', '--out', out, '--json');
    expect(result.code).toBe(0);
    expect((JSON.parse(result.stdout) as { quantizerNotes: { largestDampening: number } }).quantizerNotes.largestDampening).toBe(0.05);
    const missing = await cli('quantize', model, '--quantizer', 'gptq', '--config', 'b4g32', '--calib', join(dir, 'nope.txt'), '--out', join(dir, 'never'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope\.txt.*calibration text not found.*--calib/);
  });

  it('allocates from statistics measured with gptq (or with --stats-quantizer hqq), then quantizes with gptq', async () => {
    const out = join(dir, 'mxq');
    const result = await cli('quantize', model, '--quantizer', 'gptq', '--method', 'mxq', '--budget', '3.3', '--configs', 'b2g32,b4g32', '--calib', calib, '--blocks', '2', '--out', out, '--json');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(parseValid<{ quantizer: string }>(result.stdout, 'quantize').quantizer).toBe('gptq');
    expect(statsSettings(out).quantizer.id).toBe('gptq');
    const hqqStats = join(dir, 'mxq-hqq-stats');
    const other = await cli('quantize', model, '--quantizer', 'gptq', '--stats-quantizer', 'hqq', '--method', 'mxq', '--budget', '3.3', '--configs', 'b2g32,b4g32', '--calib', calib, '--blocks', '2', '--out', hqqStats, '--json');
    expect(other.code).toBe(0);
    expect(statsSettings(hqqStats).quantizer.id).toBe('hqq');
  });

  it('--stats-blocks measures the statistics on their own blocks while GPTQ keeps --blocks', async () => {
    const args = ['--quantizer', 'gptq', '--stats-quantizer', 'hqq', '--method', 'mxq', '--budget', '3.3', '--configs', 'b2g32,b4g32', '--calib', calib];
    const split = join(dir, 'stats-blocks');
    const result = await cli('quantize', model, ...args, '--blocks', '2', '--stats-blocks', '1', '--out', split, '--json');
    expect(result.code, result.stderr).toBe(0);
    const settings = statsSettings(split) as unknown as { blocks: number };
    expect(settings.blocks).toBe(1);
    // The same tables, GPTQ on 2 blocks: the same bytes; on 1 block: other codes. So GPTQ ran on --blocks, not on 1.
    const tables = join(split, 'stats', readdirSync(join(split, 'stats')).find((name) => existsSync(join(split, 'stats', name, 'settings.json')))!);
    const onTwo = join(dir, 'stats-blocks-2');
    const onOne = join(dir, 'stats-blocks-1');
    expect((await cli('quantize', model, ...args, '--stats', tables, '--blocks', '2', '--out', onTwo)).code).toBe(0);
    expect((await cli('quantize', model, ...args, '--stats', tables, '--blocks', '1', '--out', onOne)).code).toBe(0);
    const [a, b, c] = await Promise.all([split, onTwo, onOne].map(storedTensors));
    expect([...a!.keys()].sort()).toEqual([...b!.keys()].sort());
    for (const [name, bytes] of a!) expect(Buffer.from(bytes).equals(Buffer.from(b!.get(name)!)), name).toBe(true);
    expect([...a!].some(([name, bytes]) => !Buffer.from(bytes).equals(Buffer.from(c!.get(name)!)))).toBe(true);
    // With --config nothing is allocated: the flag is refused, not ignored.
    const refused = await cli('quantize', model, '--quantizer', 'gptq', '--config', 'b4g32', '--calib', calib, '--blocks', '1', '--stats-blocks', '1', '--out', join(dir, 'never-stats-blocks'));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/--stats-blocks.*--config allocates nothing/);
  });
});

describe('quantize --quantizer gptq to a file size', () => {
  type Shipped = { sizes: { shipped: { MiB: number } }; allocation: Record<string, unknown>; matrices: number };
  it('--format onnx --target-size allocates the embeddings too (GPTQ on the identity), with its own tables or HQQ\'s', async () => {
    // HQQ's size allocation measures embed_tokens and lm_head: its table has rows for both.
    const hqqOut = join(dir, 'hqq-size');
    const hqq = await cli('quantize', model, '--method', 'mxq', '--format', 'onnx', '--target-bpw', '60', '--configs', 'b4g32-int,b8g32-int', '--calib', calib, '--blocks', '2', '--out', hqqOut, '--json');
    expect(hqq.code, hqq.stderr).toBe(0);
    expect(Object.keys(JSON.parse(hqq.stdout).allocation as object)).toEqual(expect.arrayContaining(['embed_tokens', 'lm_head']));
    const hqqStats = join(hqqOut, 'stats', readdirSync(join(hqqOut, 'stats')).find((n) => !n.startsWith('.'))!);
    // GPTQ's 4-bit file with float embeddings (the vocabulary of 8192 dominates this model): a target below it can
    // only be met by quantizing the embeddings.
    const uniform = await cli('quantize', model, '--quantizer', 'gptq', '--config', 'b4g32-int', '--calib', calib, '--blocks', '2', '--format', 'onnx', '--out', join(dir, 'gptq-b4g32-int'), '--json');
    expect(uniform.code, uniform.stderr).toBe(0);
    const target = 0.8 * (JSON.parse(uniform.stdout) as Shipped).sizes.shipped.MiB;
    for (const [i, stats] of [[], ['--stats-quantizer', 'hqq'], ['--stats', hqqStats]].entries()) {
      const out = join(dir, `gptq-size-${i}`);
      const r = await cli('quantize', model, '--quantizer', 'gptq', '--method', 'mxq', ...stats, '--format', 'onnx', '--target-size', String(target), '--configs', 'b4g32-int,b8g32-int', '--calib', calib, '--blocks', '2', '--out', out, '--json');
      expect(r.code, r.stderr).toBe(0);
      const json = JSON.parse(r.stdout) as Shipped;
      expect(Object.keys(json.allocation).filter((k) => k === 'embed_tokens' || k === 'lm_head').length).toBeGreaterThan(0);
      expect(json.sizes.shipped.MiB).toBeLessThanOrEqual(target);
    }
  });
});

describe('quantize --quantizer baq', () => {
  it('quantizes with per-column widths; eval reads it through the plug-in; export refuses it and says why', async () => {
    const out = join(dir, 'baq');
    expect((await cli('quantize', model, '--quantizer', 'baq', '--config', 'b3g32', '--calib', calib, '--blocks', '2', '--out', out)).code).toBe(0);
    const evaluated = await cli('eval', out, '--text', calib, '--max-tokens', '256', '--seqlen', '128', '--json');
    expect(evaluated.code).toBe(0);
    expect(Number.isFinite((JSON.parse(evaluated.stdout) as { perplexity: number }).perplexity)).toBe(true);
    const refused = await cli('export', out, '--format', 'onnx', '--out', join(dir, 'baq-onnx'));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/"baq".*different code widths/);
  });
});

describe('experiment and sensitivity with a calibrated quantizer', () => {
  it('experiment --quantizer gptq quantizes each cell on the calibration blocks', async () => {
    const out = join(dir, 'experiment');
    const result = await cli('experiment', model, '--quantizer', 'gptq', '--methods', 'uniform', '--configs', 'b4g32', '--budgets', '4.51', '--text', calib, '--seqlen', '128', '--max-tokens', '256', '--calib', calib, '--blocks', '1', '--no-fp', '--out', out, '--json');
    expect(result.code, result.stderr).toBe(0);
    // uniform reads no table: the only line on stderr says so
    expect(result.stderr.trim()).toBe('experiment: statistics: none needed (the methods read no table)');
    const rows = parseValid<{ rows: { quantizer?: string; perplexity: number }[] }>(result.stdout, 'experiment').rows;
    expect(rows).toHaveLength(1);
    expect(rows[0]!.quantizer, JSON.stringify(rows[0])).toBe('gptq');
    expect(rows[0]!.perplexity, JSON.stringify(rows[0])).toBeGreaterThan(1);
    // The cell depends on the calibration even where no table reads it: other blocks are another cell, not reused.
    const again = await cli('experiment', model, '--quantizer', 'gptq', '--methods', 'uniform', '--configs', 'b4g32', '--budgets', '4.51', '--text', calib, '--seqlen', '128', '--max-tokens', '256', '--calib', calib, '--blocks', '2', '--no-fp', '--out', out, '--json');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/results: not reusing \S+ @ 4\.51 .*other settings \(.*calibration/);
  });

  it('sensitivity --quantizer gptq measures the fnorm table with GPTQ (other errors than HQQ\'s)', async () => {
    const gptq = join(dir, 'sens-gptq');
    const hqq = join(dir, 'sens-hqq');
    const common = ['--calib', calib, '--blocks', '1', '--seqlen', '128', '--configs', 'b4g32'];
    const measured = await cli('sensitivity', model, ...common, '--quantizer', 'gptq', '--out', gptq);
    expect(measured.code, measured.stderr).toBe(0);
    expect((await cli('sensitivity', model, ...common, '--out', hqq)).code).toBe(0);
    const fnorm = (d: string) => readFileSync(join(d, 'fnorm.csv'), 'utf8');
    expect(fnorm(gptq).split('\n').length).toBe(fnorm(hqq).split('\n').length);
    expect(fnorm(gptq)).not.toBe(fnorm(hqq));
  });
});
