import { shippedModelDir } from '@layerquant/fixtures';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { binPath } from './run-cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-cli-interrupt-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('Ctrl-C', () => {
  it('quantize interrupted once the first layer\'s 7 matrices are done: exit 130, no partial or temporary file left', async () => {
    const out = join(scratch, 'q');
    const child = spawn(process.execPath, [binPath, 'quantize', shippedModelDir, '--method', 'hqq', '--config', 'b4g64', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (d) => {
      stderr += d;
      // The estimate line comes once the first layer's matrices are quantized: the output file is being written then.
      if (!sent && /first 7 matrices took/.test(stderr)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(stderr).toMatch(/quantize: hqq b4g64 on 224 matrices \([\d,]+ weights\), one matrix at a time/);
    expect(sent).toBe(true);
    expect(code).toBe(130);
    expect(stderr).toMatch(/interrupted \(SIGINT\); temporary files removed/);
    const left = existsSync(out) ? readdirSync(out) : [];
    expect(left.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(left.filter((f) => f.endsWith('.safetensors'))).toEqual([]);
  });
});
