import { LayerquantError, quantConfig, seededRandom } from '@layerquant/core';
import { rtnQuantizer } from '@layerquant/quantizers';
import { openQuantizedCheckpoint, quantizeModel } from '@layerquant/quantizers/node';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { readSafetensorsHeader } from '@layerquant/tensor-io';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportOnnx } from './export-onnx.js';
import { openOnnxExport, summarizeOnnxExport } from './onnx-model-dir.js';
import { readOnnxSummary } from './onnx-reader.js';

/**
 * Seeded fuzzing of quantized checkpoints and ONNX exports (issue 27), like the safetensors fuzz. A quantized
 * checkpoint with bytes changed anywhere reads back as finite weights or throws a LayerquantError, and an oracle here
 * (the scales and zeros decoded from the raw bytes) says which: a NaN, infinite or zero scale, or a non-finite zero,
 * must be refused. An ONNX file with bytes changed, cut or spliced is summarised or refused with a LayerquantError,
 * never read in a loop past its end; onnxruntime's own refusals are named too.
 */

const root = mkdtempSync(join(tmpdir(), 'layerquant-export-fuzz-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const modelDir = join(root, 'model');
const quantizedDir = join(root, 'quantized');
const exportDir = join(root, 'export');

beforeAll(async () => {
  await writeModelDirectory(modelDir, tinyConfig({ numLayers: 1 }), 9);
  await quantizeModel({ modelDir, outDir: quantizedDir, quantizer: rtnQuantizer, configFor: () => quantConfig(4, 16) });
  await exportOnnx({ modelDir: quantizedDir, outDir: exportDir, accuracyLevel: 0 });
});

describe('quantized checkpoint fuzz (150 seeded byte mutations)', () => {
  it('every mutation reads back finite or is refused with a LayerquantError; a damaged scale or zero is always refused', async () => {
    const file = join(quantizedDir, 'model.safetensors');
    const original = readFileSync(file);
    const header = await readSafetensorsHeader(file);
    const scaleZero = header.tensors.filter((t) => /\.(scale|zero)$/.test(t.name));
    const random = seededRandom(31);
    const dir = join(root, 'mutated');
    cpSync(quantizedDir, dir, { recursive: true });
    let refused = 0;
    let read = 0;
    for (let trial = 0; trial < 150; trial++) {
      const bytes = Buffer.from(original);
      // Mostly the scales and zeros (where a lie changes the numbers), sometimes anywhere (header included).
      const target = trial % 4 === 3 ? undefined : scaleZero[Math.floor(random() * scaleZero.length)]!;
      const offset = target ? target.byteOffset + 4 * Math.floor(random() * (target.byteLength / 4)) : Math.floor(random() * bytes.length);
      const special = [0x7fc00000, 0x7f800000, 0xff800000, 0, 0x80000000][Math.floor(random() * 5)]!;
      if (target && random() < 0.6) bytes.writeUInt32LE(special, offset);
      else bytes[offset] = Math.floor(random() * 256);
      writeFileSync(join(dir, 'model.safetensors'), bytes);
      // The oracle: decoded from the raw bytes, does any scale or zero make the matrix no number?
      const damaged = scaleZero.some((t) => {
        for (let i = 0; i < t.byteLength; i += 4) {
          const v = bytes.readFloatLE(t.byteOffset + i); // byteOffset: from the start of the file
          if (!Number.isFinite(v) || (t.name.endsWith('.scale') && v === 0)) return true;
        }
        return false;
      });
      const context = `trial ${trial} (offset ${offset}${target ? ` in ${target.name}` : ''})`;
      let error: unknown;
      try {
        const checkpoint = await openQuantizedCheckpoint(dir);
        try {
          for (const info of checkpoint.tensors) {
            if (checkpoint.isQuantized(info.name)) await checkpoint.readQuantized(info.name);
            const weight = await checkpoint.read(info.name);
            expect(weight.data.every((v) => Number.isFinite(v)), context).toBe(true);
          }
        } finally {
          await checkpoint.close();
        }
      } catch (e) {
        error = e;
      }
      if (error === undefined) {
        expect(damaged, context).toBe(false);
        read++;
      } else {
        expect(error, `${context}: ${String(error)}`).toBeInstanceOf(LayerquantError);
        refused++;
      }
      if (damaged) expect(error, context).toBeInstanceOf(LayerquantError);
    }
    expect(refused).toBeGreaterThan(30);
    expect(read).toBeGreaterThan(20);
  });
});

describe('ONNX export fuzz (600 seeded mutations of model_q4.onnx)', () => {
  it('the reader summarises or refuses every mutation with a LayerquantError, never past the buffer; onnxruntime\'s refusals are typed', async () => {
    const file = join(exportDir, 'onnx', 'model_q4.onnx');
    const original = readFileSync(file);
    const random = seededRandom(77);
    let summarised = 0;
    let refused = 0;
    const openable: Buffer[] = [];
    for (let trial = 0; trial < 600; trial++) {
      let bytes: Buffer;
      const kind = trial % 4;
      if (kind === 0) bytes = original.subarray(0, Math.floor(random() * original.length));
      else if (kind === 1) {
        bytes = Buffer.from(original);
        for (let k = 0; k < 1 + Math.floor(random() * 4); k++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      } else if (kind === 2) {
        // a length or tag byte of the first few hundred (where the message structure is) set to a large varint
        bytes = Buffer.from(original);
        bytes[Math.floor(random() * 400)] = 0xff;
      } else {
        const at = Math.floor(random() * original.length);
        bytes = Buffer.concat([original.subarray(0, at), Buffer.from(Array.from({ length: 1 + Math.floor(random() * 16) }, () => Math.floor(random() * 256))), original.subarray(at)]);
      }
      try {
        readOnnxSummary(bytes, 'fuzz.onnx');
        summarised++;
        if (openable.length < 12 && trial % 3 === 0) openable.push(bytes);
      } catch (error) {
        expect(error, `trial ${trial}: ${String(error)}`).toBeInstanceOf(LayerquantError);
        expect((error as Error).message.startsWith('fuzz.onnx: ')).toBe(true);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(100);
    expect(summarised).toBeGreaterThan(50);
    // Mutations the summary reader passes, opened as an export: evaluated, or refused with a typed error.
    const dir = join(root, 'opened');
    cpSync(exportDir, dir, { recursive: true });
    for (const bytes of openable) {
      writeFileSync(join(dir, 'onnx', 'model_q4.onnx'), bytes);
      const summary = await summarizeOnnxExport(dir).then(() => undefined, (e: unknown) => e);
      if (summary !== undefined) expect(summary).toBeInstanceOf(LayerquantError);
      const opened = await openOnnxExport(dir).then(async (m) => {
        try {
          await m.logits({ ids: [1, 2, 3] });
        } finally {
          await m.dispose();
        }
        return undefined;
      }, (e: unknown) => e);
      if (opened !== undefined) expect(opened, String(opened)).toBeInstanceOf(LayerquantError);
    }
  });
});
