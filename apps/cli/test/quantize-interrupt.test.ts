import { shippedModelDir } from '@layerquant/fixtures';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin, binPath, cli } from './run-cli.js';

/**
 * `layerquant quantize` interrupted by SIGINT or SIGKILL while it writes (worker threads running), then run again:
 * nothing stray is left, an earlier result in --out survives an interrupted run, and the rerun's files are
 * byte-identical to an uninterrupted run's. Two runs on one --out: the second stops with a clear error.
 */

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-interrupt-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const args = (out: string) => ['quantize', shippedModelDir, '--method', 'hqq', '--config', 'b4g64', '--out', out, '--json', '--force'];

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (sub: string) => {
    for (const name of readdirSync(join(dir, sub))) {
      const path = join(dir, sub, name);
      if (statSync(path).isDirectory()) walk(join(sub, name));
      else out[join(sub, name)] = createHash('sha256').update(readFileSync(path)).digest('hex');
    }
  };
  if (existsSync(dir)) walk('');
  return out;
}

/** quantization.json without what differs between any two runs: timings and the output path. */
function reportContent(dir: string): unknown {
  const report = JSON.parse(readFileSync(join(dir, 'quantization.json'), 'utf8')) as Record<string, unknown> & { perMatrix: Array<Record<string, unknown>> };
  const { seconds: _s, quantizeSeconds: _q, outDir: _o, perMatrix, ...rest } = report;
  return { ...rest, perMatrix: perMatrix.map(({ seconds: _m, ...m }) => m) };
}

/** Every file of a result but quantization.json, by hash; quantization.json by content. */
function result(dir: string): { files: Record<string, string>; report: unknown } {
  const files = snapshot(dir);
  delete files['quantization.json'];
  return { files, report: reportContent(dir) };
}

function start(argv: string[]): { child: ChildProcess; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const child = spawn(process.execPath, [binPath, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, exited };
}

/** Waits until the run is writing its weights: a staging directory in `out` holding a partial weights file. */
async function whileWriting(out: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error('the run ended before it could be interrupted');
    for (const staging of existsSync(out) ? readdirSync(out).filter((n) => /^\.output\.\d+\.[0-9a-f]{8}\.tmp$/.test(n)) : []) {
      try {
        const partial = readdirSync(join(out, staging)).find((n) => n.startsWith('.model.safetensors.'));
        if (partial && statSync(join(out, staging, partial)).size > 2 ** 20) return;
      } catch {
        // The staging directory moved on between the two reads: look again.
      }
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error('the run never started writing');
}

describe('quantize interrupted, then run again', () => {
  let reference: ReturnType<typeof result>;

  beforeAll(async () => {
    const out = join(scratch, 'reference');
    const run = await bin(...args(out));
    expect(run.code).toBe(0);
    reference = result(out);
    expect(Object.keys(reference.files).sort()).toEqual(
      ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'],
    );
  });

  it('SIGINT while writing leaves an earlier result and the user\'s files exactly as they were; the rerun equals an uninterrupted run', async () => {
    const out = join(scratch, 'sigint');
    expect((await cli('quantize', shippedModelDir, '--method', 'rtn', '--config', 'b3g64', '--out', out)).code).toBe(0);
    writeFileSync(join(out, 'notes.txt'), 'mine');
    mkdirSync(join(out, 'stats'));
    writeFileSync(join(out, 'stats', 'fnorm.csv'), 'cached');
    const before = snapshot(out);
    const run = start(args(out));
    await whileWriting(out, run.child);
    run.child.kill('SIGINT');
    const { code, stderr } = await run.exited;
    expect(code).toBe(130);
    expect(stderr).toMatch(/interrupted \(SIGINT\); temporary files removed/);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(snapshot(out)).toEqual(before);

    expect((await bin(...args(out))).code).toBe(0);
    const after = result(out);
    expect(after.report).toEqual(reference.report);
    const { 'notes.txt': notes, 'stats/fnorm.csv': cache, ...files } = after.files;
    expect(files).toEqual(reference.files);
    expect([notes, cache]).toEqual([before['notes.txt'], before['stats/fnorm.csv']]);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('SIGKILL while writing: the rerun removes the dead run\'s temporaries and lock, and equals an uninterrupted run', async () => {
    const out = join(scratch, 'sigkill');
    const run = start(args(out));
    await whileWriting(out, run.child);
    run.child.kill('SIGKILL');
    expect((await run.exited).signal).toBe('SIGKILL');
    // Nothing can clean up after SIGKILL: the staging directory and the lock stay, and no result file appears.
    expect(readdirSync(out).some((n) => /^\.output\..*\.tmp$/.test(n))).toBe(true);
    expect(existsSync(join(out, '.layerquant.lock'))).toBe(true);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);

    expect((await bin(...args(out))).code).toBe(0);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(result(out)).toEqual(reference);
  });

  it('SIGTERM while writing into a new --out: exit 143 and no --out left behind', async () => {
    const out = join(scratch, 'sigterm');
    const run = start(args(out));
    await whileWriting(out, run.child);
    run.child.kill('SIGTERM');
    const { code, stderr } = await run.exited;
    expect(code).toBe(143);
    expect(stderr).toMatch(/interrupted \(SIGTERM\)/);
    expect(existsSync(out)).toBe(false);
  });

  it('two runs writing the same --out: the second stops with an error naming the first, the first completes', async () => {
    const out = join(scratch, 'two-writers');
    const first = start(args(out));
    const deadline = Date.now() + 60_000;
    while (!existsSync(join(out, '.layerquant.lock')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    const second = await cli(...args(out));
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`^layerquant: error: .*two-writers: another layerquant process \\(pid ${first.child.pid}, "quantize"`));
    // --json: the error is also one JSON object on stdout, with the message stderr has.
    const error = (JSON.parse(second.stdout) as { error: { code: string; message: string } }).error;
    expect(`layerquant: error: ${error.message}\n`).toBe(second.stderr);
    expect((await first.exited).code).toBe(0);
    expect(result(out)).toEqual(reference);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('a copy of a finished result is left alone by a run that fails validation', async () => {
    const out = join(scratch, 'copy');
    cpSync(join(scratch, 'reference'), out, { recursive: true });
    const before = snapshot(out);
    const failed = await cli('quantize', shippedModelDir, '--method', 'hqq', '--config', 'b4g96', '--out', out);
    expect(failed.code).toBe(1);
    expect(snapshot(out)).toEqual(before);
  });
});
