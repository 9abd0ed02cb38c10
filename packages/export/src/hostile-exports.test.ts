import { InvalidDataError, LayerquantError, MissingFileError, NonFiniteWeightError, SafetensorsFormatError, quantConfig } from '@layerquant/core';
import { hqqQuantizer } from '@layerquant/quantizers';
import { openQuantizedCheckpoint, quantizeModel } from '@layerquant/quantizers/node';
import { tinyConfig } from '@layerquant/runtime/testing';
import { loadDecoderConfig, readSafetensorsHeader } from '@layerquant/tensor-io';
import { directorySnapshot, swapRenamesDone } from '@layerquant/tensor-io/testing';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeModelDirectory } from '@layerquant/runtime/testing';
import { exportOnnx } from './export-onnx.js';
import { openOnnxExport, summarizeOnnxExport } from './onnx-model-dir.js';
import { readOnnxSummary } from './onnx-reader.js';
import { openPackedModel } from './packed-model.js';

/**
 * Damaged quantized checkpoints and ONNX exports (issue 27): each is refused on every read with a typed error naming
 * the file and the tensor or field, instead of evaluating to a number or looping forever; an export is staged and
 * locked, so an interrupt or a second export never leaves a new graph beside an old config.
 */

const root = mkdtempSync(join(tmpdir(), 'layerquant-hostile-export-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const distIndex = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const config = tinyConfig({ tieWordEmbeddings: true, attentionBias: true });
const modelDir = join(root, 'model');
const quantizedDir = join(root, 'quantized');
const exportDir = join(root, 'export');
const target = 'model.layers.1.mlp.down_proj.weight';

const snapshot = (dir: string) => directorySnapshot(dir);

/** A copy of the quantized checkpoint with float32 `value` written into group `group` of `tensor`'s stored bytes. */
async function damagedCheckpoint(name: string, tensor: string, group: number, value: number): Promise<string> {
  const dir = join(root, name);
  cpSync(quantizedDir, dir, { recursive: true });
  const file = join(dir, 'model.safetensors');
  const header = await readSafetensorsHeader(file);
  const info = header.tensors.find((t) => t.name === tensor)!;
  const bytes = readFileSync(file);
  bytes.writeFloatLE(value, info.byteOffset + 4 * group);
  writeFileSync(file, bytes);
  return dir;
}

/** A copy of the export with `edit` applied. */
function damagedExport(name: string, edit: (dir: string) => void): string {
  const dir = join(root, name);
  cpSync(exportDir, dir, { recursive: true });
  edit(dir);
  return dir;
}

beforeAll(async () => {
  await writeModelDirectory(modelDir, config, 3);
  await quantizeModel({ modelDir, outDir: quantizedDir, quantizer: hqqQuantizer, configFor: () => quantConfig(4, 16) });
  await exportOnnx({ modelDir: quantizedDir, outDir: exportDir, accuracyLevel: 0 });
});

describe('quantized checkpoints are checked like weights', () => {
  const cases: Array<[string, string, number, RegExp]> = [
    ['a NaN scale', `${target}.scale`, 3, /\(tensor "model\.layers\.1\.mlp\.down_proj\.weight\.scale"\): value NaN at flat index 3/],
    ['an infinite scale', `${target}.scale`, 0, /\(tensor "model\.layers\.1\.mlp\.down_proj\.weight\.scale"\): value Infinity at flat index 0/],
    ['a zero scale', `${target}.scale`, 5, /\(tensor "model\.layers\.1\.mlp\.down_proj\.weight\.scale"\): scale 0 at group 5/],
    ['a NaN zero', `${target}.zero`, 7, /\(tensor "model\.layers\.1\.mlp\.down_proj\.weight\.zero"\): value NaN at flat index 7/],
  ];
  const values = [Number.NaN, Number.POSITIVE_INFINITY, 0, Number.NaN];
  cases.forEach(([label, tensor, group, message], i) => {
    it(`${label}: reading, the packed graph and the export refuse it, naming the tensor; no --out is made`, async () => {
      const dir = await damagedCheckpoint(label.replace(/\W+/g, '-'), tensor, group, values[i]!);
      const checkpoint = await openQuantizedCheckpoint(dir);
      try {
        await expect(checkpoint.readQuantized(target)).rejects.toThrow(message);
        await expect(checkpoint.read(target)).rejects.toThrow(LayerquantError);
        await expect(openPackedModel(checkpoint, await loadDecoderConfig(dir))).rejects.toThrow(message);
      } finally {
        await checkpoint.close();
      }
      const out = join(root, `${label.replace(/\W+/g, '-')}-onnx`);
      const error = await exportOnnx({ modelDir: dir, outDir: out }).catch((e: unknown) => e);
      expect(error instanceof NonFiniteWeightError || error instanceof SafetensorsFormatError).toBe(true);
      expect((error as Error).message).toMatch(message);
      expect(existsSync(out)).toBe(false);
    });
  });
});

describe('ONNX exports are checked against their config.json on every read', () => {
  const editConfig = (edit: (c: Record<string, unknown>) => void) => (dir: string) => {
    const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    edit(c);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
  };
  const graphBytes = () => readFileSync(join(exportDir, 'onnx', 'model_q4.onnx'));
  const cases: Array<[string, (dir: string) => void, RegExp, RegExp]> = [
    ['vocab_size one short', editConfig((c) => (c.vocab_size = 63)), /model_q4\.onnx: the graph's logits have 64 columns but vocab_size is 63; .*config\.json does not describe this graph/, /logits have 64 columns but vocab_size is 63/],
    ['num_hidden_layers one more', editConfig((c) => (c.num_hidden_layers = 3)), /model_q4\.onnx: the graph has 2 layers of key\/value cache but num_hidden_layers is 3/, /2 layers of key\/value cache but num_hidden_layers is 3/],
    ['num_key_value_heads changed', editConfig((c) => ((c.num_key_value_heads = 4), (c.head_dim = 8))), /has 2 key\/value heads but num_key_value_heads is 4/, /has 2 key\/value heads but num_key_value_heads is 4/],
    ['an empty model_q4.onnx', (dir) => writeFileSync(join(dir, 'onnx', 'model_q4.onnx'), ''), /model_q4\.onnx: is not a complete ONNX model \(it has no graph\)/, /model_q4\.onnx: onnxruntime cannot load this file/],
    ['a model_q4.onnx cut in half', (dir) => writeFileSync(join(dir, 'onnx', 'model_q4.onnx'), graphBytes().subarray(0, graphBytes().length >> 1)), /model_q4\.onnx: is not a complete ONNX model \(.*runs past the end/, /model_q4\.onnx: onnxruntime cannot load this file/],
    ['a model_q4.onnx of random bytes', (dir) => writeFileSync(join(dir, 'onnx', 'model_q4.onnx'), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24))), /model_q4\.onnx: is not a complete ONNX model/, /model_q4\.onnx: onnxruntime cannot load this file/],
  ];
  for (const [label, edit, inspectMessage, openMessage] of cases) {
    it(`${label}: inspect's summary and the evaluation both refuse it, naming the file`, async () => {
      const dir = damagedExport(label.replace(/\W+/g, '-'), edit);
      await expect(summarizeOnnxExport(dir)).rejects.toThrow(InvalidDataError);
      await expect(summarizeOnnxExport(dir)).rejects.toThrow(inspectMessage);
      await expect(openOnnxExport(dir)).rejects.toThrow(openMessage);
    });
  }

  it('the protobuf reader stops at the end of the buffer at every cut of a real graph (no hang, always a typed error)', () => {
    const bytes = graphBytes();
    expect(readOnnxSummary(bytes).nodes.length).toBeGreaterThan(0);
    let refused = 0;
    for (let cut = 0; cut < bytes.length; cut += Math.max(1, Math.floor(bytes.length / 997))) {
      try {
        readOnnxSummary(bytes.subarray(0, cut), 'cut.onnx');
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidDataError);
        expect((error as Error).message).toMatch(/^cut\.onnx: is not a complete ONNX model/);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(900);
  });
});

describe('export: its inputs, its staging and its lock', () => {
  it('refuses a source without tokenizer.json (transformers.js could not load the export), writing nothing', async () => {
    const dir = join(root, 'no-tokenizer');
    cpSync(quantizedDir, dir, { recursive: true });
    rmSync(join(dir, 'tokenizer.json'));
    const out = join(root, 'no-tokenizer-onnx');
    await expect(exportOnnx({ modelDir: dir, outDir: out })).rejects.toThrow(MissingFileError);
    await expect(exportOnnx({ modelDir: dir, outDir: out })).rejects.toThrow(/no-tokenizer\/tokenizer\.json: not found/);
    expect(existsSync(out)).toBe(false);
  });

  it('replaces the whole model file set of --out (another model\'s weights and index go), keeping other files', async () => {
    const out = join(root, 'over-a-model');
    cpSync(modelDir, out, { recursive: true });
    writeFileSync(join(out, 'model.safetensors.index.json'), '{"weight_map": {}}');
    writeFileSync(join(out, 'notes.txt'), 'mine');
    await exportOnnx({ modelDir: quantizedDir, outDir: out, accuracyLevel: 0 });
    expect(readdirSync(out).sort()).toEqual(['config.json', 'generation_config.json', 'notes.txt', 'onnx', 'quantization.json', 'tokenizer.json', 'tokenizer_config.json']);
  });

  /** An export in a child process (the built package), every rename of its swap slowed by the test hook. */
  const slowExport = (out: string, delayMs: number) => {
    const script = `
      const { exportOnnx } = await import(${JSON.stringify(distIndex)});
      await exportOnnx({ modelDir: ${JSON.stringify(quantizedDir)}, outDir: ${JSON.stringify(out)}, accuracyLevel: 4 });
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LAYERQUANT_TEST_SWAP_DELAY_MS: String(delayMs) } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<{ code: number | null; stderr: string }>((r) => child.on('exit', (code) => r({ code, stderr })));
    return { child, exited };
  };
  it('SIGINT in the middle of its swap (renames slowed) leaves the previous export whole; a second export meanwhile is refused', async () => {
    const out = join(root, 'interrupted');
    cpSync(exportDir, out, { recursive: true });
    const before = snapshot(out);
    const run = slowExport(out, 150);
    const deadline = Date.now() + 60_000;
    // The new set: config.json, generation_config.json, onnx/, quantization.json, two tokenizer files.
    while (swapRenamesDone(out, 6) < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(swapRenamesDone(out, 6)).toBeGreaterThanOrEqual(3);
    // The first export holds --out's lock: a second one is refused, naming it.
    await expect(exportOnnx({ modelDir: quantizedDir, outDir: out })).rejects.toThrow(new RegExp(`another layerquant process \\(pid ${run.child.pid}, "export"`));
    run.child.kill('SIGINT');
    expect((await run.exited).code).toBe(130);
    expect(snapshot(out)).toEqual(before);
    const summary = await summarizeOnnxExport(out);
    expect(summary.linearMatrices).toBe(7 * config.numLayers);
  });
});
