import { spawn, type ChildProcess } from 'node:child_process';
import { binPath } from './run-cli.js';

/** A child process of the built CLI with its output collected as it comes. */
export interface Running {
  readonly child: ChildProcess;
  readonly output: { stdout: string; stderr: string };
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

const running: Running[] = [];

/** Starts the built `layerquant` with `argv` (and extra environment variables); stopped by stopAll. */
export function startWith(env: Readonly<Record<string, string>>, ...argv: string[]): Running {
  const child = spawn(process.execPath, [binPath, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d: Buffer) => (output.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output.stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const run: Running = {
    child,
    output,
    exited,
    async waitFor(pattern, timeoutMs = 60_000) {
      const until = Date.now() + timeoutMs;
      while (!pattern.test(output.stderr)) {
        if (Date.now() > until) throw new Error(`timed out waiting for ${pattern} in:\n${output.stderr}`);
        if (child.exitCode !== null) throw new Error(`exited (${child.exitCode}) before ${pattern}:\n${output.stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
  running.push(run);
  return run;
}

export function start(...argv: string[]): Running {
  return startWith({}, ...argv);
}

/** Kills every process started here that still runs (an afterEach). */
export async function stopAll(): Promise<void> {
  for (const r of running.splice(0)) {
    if (r.child.exitCode === null && r.child.signalCode === null) {
      r.child.kill('SIGKILL');
      await r.exited;
    }
  }
}
