// The experiment grid in process vs on the BullMQ queue with 1 and 2 `layerquant worker` processes, on this
// machine, with a redis-server started here on a loopback port. Reports wall time, the mean in-cell time (a row's
// `seconds`: allocation + quantization + perplexity inside computeCell) and the queue's overhead per cell, and
// checks that every run gives the same rows. With --statistics the statistics are computed too (in process, then
// as fnorm-per-layer and sensitivity jobs on 2 workers) and the tables compared byte for byte.
// usage: node bench/queue.mjs [--methods hqq,sensiboost-2-1,kurtboost-2-1] [--budgets 2.25,3.25] [--max-tokens 4096]
//                             [--statistics --blocks 2]     (after `pnpm build`; needs /usr/bin/redis-server)
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'apps/cli/dist/bin.js');
const model = join(root, 'packages/fixtures/models/llama-brown-26m');
const { values } = parseArgs({
  options: {
    methods: { type: 'string', default: 'hqq,sensiboost-2-1,kurtboost-2-1' },
    budgets: { type: 'string', default: '2.25,3.25' },
    'max-tokens': { type: 'string', default: '4096' },
    statistics: { type: 'boolean', default: false },
    blocks: { type: 'string', default: '2' },
  },
});

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A fresh, empty redis-server per queue run (the jobs of one run would otherwise be reused by the next). */
async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'bench-redis-'));
  const server = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  return { url: `redis://127.0.0.1:${port}/0`, stop: () => new Promise((r) => (server.on('exit', r), server.kill('SIGTERM'))) };
}

const grid = (out, extra = []) => [
  'experiment', model,
  ...(values.statistics ? ['--blocks', values.blocks] : ['--stats', join(model, 'oracles')]),
  '--methods', values.methods, '--budgets', values.budgets, '--max-tokens', values['max-tokens'], '--out', out, '--json', ...extra,
];

function timed(args) {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [cli, ...args], { maxBuffer: 64 * 2 ** 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${args.join(' ')} failed:\n${stderr}`));
      else resolve({ seconds: (performance.now() - started) / 1000, rows: JSON.parse(stdout).rows });
    });
  });
}

async function withWorkers(n, run) {
  const redis = await startRedis();
  const url = redis.url;
  const workers = [];
  for (let i = 0; i < n; i++) {
    const w = spawn(process.execPath, [cli, 'worker', '--queue', url, '--model', model, '--stall-interval', '30'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    w.stderr.on('data', (d) => (log += d));
    await new Promise((resolve) => {
      const t = setInterval(() => /waiting for jobs/.test(log) && (clearInterval(t), resolve()), 20);
    });
    workers.push(w);
  }
  try {
    return await run(url);
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map((w) => new Promise((r) => (w.exitCode !== null ? r() : w.on('exit', r)))));
    await redis.stop();
  }
}

const strip = (rows) => JSON.stringify(rows.map(({ seconds: _, ...r }) => r));
const meanCell = (rows) => rows.reduce((s, r) => s + r.seconds, 0) / rows.length;
const statsOf = (out) => {
  const dir = join(out, 'stats', readdirSync(join(out, 'stats'))[0]);
  return ['fnorm.csv', 'sensitivity.csv', 'kurtosis.csv'].map((f) => readFileSync(join(dir, f), 'utf8')).join('\n');
};

{
  process.stderr.write('in process...\n');
  const outLocal = mkdtempSync(join(tmpdir(), 'bench-queue-local-'));
  const local = await timed(grid(outLocal));
  process.stderr.write('queue, 1 worker...\n');
  const out1 = mkdtempSync(join(tmpdir(), 'bench-queue-1-'));
  const one = await withWorkers(1, (url) => timed(grid(out1, ['--queue', url])));
  process.stderr.write('queue, 2 workers...\n');
  const out2 = mkdtempSync(join(tmpdir(), 'bench-queue-2-'));
  const two = await withWorkers(2, (url) => timed(grid(out2, ['--queue', url])));
  const cells = local.rows.length;
  console.log(`Grid: ${values.methods} at ${values.budgets} + fp = ${cells} cells, first ${values['max-tokens']} tokens of brown-test, ${values.statistics ? `statistics computed (--blocks ${values.blocks})` : 'statistics from the shipped oracles'}.\n`);
  console.log('| run | wall s | per cell s (wall / cells) | mean in-cell s | speed-up vs in process | rows identical |');
  console.log('| --- | ---: | ---: | ---: | ---: | --- |');
  for (const [name, r] of [['in process', local], ['queue, 1 worker', one], ['queue, 2 workers', two]]) {
    console.log(`| ${name} | ${r.seconds.toFixed(1)} | ${(r.seconds / cells).toFixed(2)} | ${meanCell(r.rows).toFixed(2)} | ${(local.seconds / r.seconds).toFixed(2)}x | ${strip(r.rows) === strip(local.rows) ? 'yes' : 'NO'} |`);
  }
  console.log(`\nQueue overhead per cell (1 worker vs in process, wall): ${((one.seconds - local.seconds) / cells).toFixed(2)} s;` +
    ` of which in-cell slow-down (worker thread, fresh session): ${(meanCell(one.rows) - meanCell(local.rows)).toFixed(2)} s.`);
  if (values.statistics) console.log(`Statistics tables identical (in process vs 1 worker vs 2 workers): ${statsOf(outLocal) === statsOf(out1) && statsOf(out1) === statsOf(out2) ? 'yes' : 'NO'}`);
}
