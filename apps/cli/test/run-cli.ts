import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { runCli } from '../src/cli.js';

/** Runs the CLI in-process and captures its output. */
export async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

export const binPath = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

/** Runs the built `layerquant` binary as a user would. */
export function bin(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [binPath, ...argv], { maxBuffer: 64 * 2 ** 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A refusal as every command must give it: exit 1, nothing on stdout, one `layerquant: error:` line (the last) matching `message`. */
export function expectRefused(result: { code: number; stdout: string; stderr: string }, message: RegExp): void {
  expect(result.stderr).toMatch(message);
  expect(result.code).toBe(1);
  expect(result.stdout).toBe('');
  const lines = result.stderr.trim().split('\n');
  expect(lines.at(-1)).toMatch(/^layerquant: error: /);
  expect(lines.filter((l) => l.startsWith('layerquant: '))).toHaveLength(1);
}
