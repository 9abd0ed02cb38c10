import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { directorySnapshot, swapRenamesDone } from '@layerquant/tensor-io/testing';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binPath, cli } from './run-cli.js';

/**
 * The last step of quantize, sensitivity and export swaps the new file set for the old one by renames. Interrupted
 * there (the renames slowed by the test hook LAYERQUANT_TEST_SWAP_DELAY_MS, the signal sent after a given number of
 * them, as the sweep did with strace), --out holds the earlier result whole: never config.json alone, never a new
 * graph beside an old config (issue 27). Two exports to one --out: the second is refused while the first runs.
 */

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-swap-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const model = join(scratch, 'model');

function start(argv: string[], delayMs: number) {
  const child = spawn(process.execPath, [binPath, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LAYERQUANT_TEST_SWAP_DELAY_MS: String(delayMs) } });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.resume();
  const exited = new Promise<{ code: number | null; stderr: string }>((r) => child.on('exit', (code) => r({ code, stderr })));
  return { child, exited };
}

async function waitForRenames(out: string, incoming: number, renames: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (swapRenamesDone(out, incoming) < renames) {
    if (Date.now() > deadline) throw new Error(`the swap in ${out} never reached ${renames} renames`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

beforeAll(async () => {
  await writeModelDirectory(model, tinyConfig({ hiddenSize: 64, intermediateSize: 128, headDim: 16 }), { seed: 3 });
});

describe('an interrupt during the final swap leaves the earlier result whole', () => {
  it('quantize: SIGINT after the first staged rename (and after the fourth) restores every file of the earlier result, exit 130', async () => {
    for (const renames of [1, 4]) {
      const out = join(scratch, `quantize-${renames}`);
      expect((await cli('quantize', model, '--method', 'rtn', '--config', 'b4g64', '--out', out)).code).toBe(0);
      const before = directorySnapshot(out);
      // The new set: model.safetensors, quantization.json, config, generation config, two tokenizer files.
      const run = start(['quantize', model, '--method', 'rtn', '--config', 'b8g32', '--out', out, '--force'], 200);
      await waitForRenames(out, 6, renames);
      run.child.kill('SIGINT');
      const { code, stderr } = await run.exited;
      expect(code).toBe(130);
      expect(stderr).toMatch(/interrupted \(SIGINT\)/);
      expect(directorySnapshot(out)).toEqual(before);
    }
  });

  it('export: SIGINT in the middle of the swap keeps the earlier export; a second export to the same --out is refused while the first runs', async () => {
    const quantized = join(scratch, 'quantized');
    const out = join(scratch, 'exported');
    expect((await cli('quantize', model, '--method', 'rtn', '--config', 'b4g64', '--out', quantized)).code).toBe(0);
    expect((await cli('export', quantized, '--format', 'onnx', '--out', out, '--accuracy-level', '0')).code).toBe(0);
    const before = directorySnapshot(out);
    const run = start(['export', quantized, '--format', 'onnx', '--out', out, '--force'], 200);
    await waitForRenames(out, 6, 3);
    const second = await cli('export', quantized, '--format', 'onnx', '--out', out, '--force');
    expect(second.stderr).toMatch(new RegExp(`another layerquant process \\(pid ${run.child.pid}, "export"`));
    expect(second.code).toBe(1);
    run.child.kill('SIGINT');
    expect((await run.exited).code).toBe(130);
    expect(directorySnapshot(out)).toEqual(before);
    expect((await cli('inspect', out)).code).toBe(0);
  });
});
