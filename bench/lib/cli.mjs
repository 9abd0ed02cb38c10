// The built CLI as the benches drive it (apps/cli/dist/bin.js, as a user runs it), and what its outputs leave behind.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../apps/cli/dist/bin.js', import.meta.url));

/** Runs the CLI with --json: its last JSON line as { json }, or its one-line typed error (exit 1) as { error }. */
export function layerquant(args) {
  try {
    const stdout = execFileSync(process.execPath, [CLI, ...args, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 2 ** 20 });
    return { json: JSON.parse(stdout.trim().split('\n').pop()) };
  } catch (error) {
    const stderr = String(error.stderr ?? '');
    const line = stderr.split('\n').find((l) => l.startsWith('layerquant: error:'));
    if (error.status === 1 && line) return { error: line.slice('layerquant: error: '.length) };
    throw new Error(`layerquant ${args.join(' ')} failed (exit ${error.status}):\n${stderr}`);
  }
}

/** Every byte under <dir>/onnx (graph and external data; tokenizer and config files are not shipped bytes). */
export function onnxBytes(dir) {
  const onnx = join(dir, 'onnx');
  return readdirSync(onnx).reduce((sum, name) => sum + statSync(join(onnx, name)).size, 0);
}

/** The cached statistics an allocation left in <dir>/stats (one hashed folder holding settings.json). */
export function statsOf(dir) {
  const root = join(dir, 'stats');
  if (!existsSync(root)) return undefined;
  const found = readdirSync(root).map((d) => join(root, d)).filter((d) => existsSync(join(d, 'settings.json')));
  return found.length === 1 ? found[0] : undefined;
}

/** Where exportedIn keeps an export's record (its --json) or its typed refusal. */
function exportRecords(work, name) {
  const dir = join(work, name);
  return { dir, record: join(dir, 'bench-quantize.json'), refused: join(dir, 'bench-error.json') };
}

/** Whether exportedIn already made (or was refused) the export <work>/<name>: it would read it, not run the CLI. */
export function exportRecorded(work, name) {
  const { record, refused } = exportRecords(work, name);
  return existsSync(record) || existsSync(refused);
}

/**
 * The CLI's output directory <work>/<name>, made by `args` (given --out) unless a finished one is there: { dir,
 * quantize (its --json), seconds (the CLI's wall clock when it ran) }. A typed refusal comes back as { dir, error } and
 * is kept too (beside the statistics a refused allocation may have cached), so a resumed run reuses both.
 */
export function exportedIn(work, name, args, log) {
  const { dir, record, refused } = exportRecords(work, name);
  if (existsSync(record)) return { dir, ...JSON.parse(readFileSync(record, 'utf8')) };
  if (existsSync(refused)) return { dir, error: JSON.parse(readFileSync(refused, 'utf8')).error };
  rmSync(dir, { recursive: true, force: true });
  log(`${name}: layerquant ${args.join(' ')}`);
  const started = performance.now();
  const result = layerquant([...args, '--out', dir]);
  if (result.error) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(refused, JSON.stringify({ error: result.error }));
    return { dir, error: result.error };
  }
  const saved = { quantize: result.json, seconds: (performance.now() - started) / 1000 };
  writeFileSync(record, JSON.stringify(saved));
  return { dir, ...saved };
}
