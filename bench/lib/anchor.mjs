// Helpers shared by the benchmarks: find Debian's Python with torch/scipy (the anchors), time things, print ratios.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const PYTHON = '/usr/bin/python3';

/** True when /usr/bin/python3 can import every module named. */
export function pythonHas(...modules) {
  if (!existsSync(PYTHON)) return false;
  const result = spawnSync(PYTHON, ['-c', modules.map((m) => `import ${m}`).join(';')], { stdio: 'ignore' });
  return result.status === 0;
}

/** Runs a Python anchor script and returns its stdout (JSON lines are the convention). */
export function runPython(args, options = {}) {
  return execFileSync(PYTHON, args, { encoding: 'utf8', maxBuffer: 256 * 2 ** 20, ...options });
}

/** Last JSON object printed on stdout. */
export function lastJson(stdout) {
  const lines = stdout.trim().split('\n').filter((l) => l.startsWith('{'));
  return lines.length ? JSON.parse(lines[lines.length - 1]) : undefined;
}

export async function timeIt(fn) {
  const start = performance.now();
  const value = await fn();
  return { value, seconds: (performance.now() - start) / 1000 };
}

/** One row of a side-by-side table: ours, the anchor, and anchor/ours (>1 means we are faster). */
export function ratioRow(label, oursSeconds, anchorSeconds) {
  const ratio = anchorSeconds === undefined ? 'n/a (no anchor)' : `${(anchorSeconds / oursSeconds).toFixed(2)}x`;
  const anchor = anchorSeconds === undefined ? '-' : `${anchorSeconds.toFixed(3)} s`;
  return `| ${label} | ${oursSeconds.toFixed(3)} s | ${anchor} | ${ratio} |`;
}

export const TABLE_HEADER = '| what | layerquant | PyTorch/scipy anchor | speed-up |\n| --- | --- | --- | --- |';
