// The queue part of bench/hostile-sweep.mjs: tampered jobs and forged results written into a real redis-server on
// 127.0.0.1 with redis-cli (what anyone with write access to the Redis can do), against the built CLI's worker and
// coordinator. A job is `typed` when it fails with a `job <id>: ...` reason and the worker hashed nothing outside its
// models; `steerable` when the worker read outside them or completed it, or the coordinator recorded a forged row.
import { modelContentHash } from '@layerquant/tensor-io';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REDIS_SERVER = '/usr/bin/redis-server';
const QUEUE = 'layerquant-experiment';
const bin = fileURLToPath(new URL('../../apps/cli/dist/bin.js', import.meta.url));

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs the queue cases (needs /usr/bin/redis-server and redis-cli); returns without counting where there is none. */
export async function queueCases({ work, model, text, runCli, verdict, tally, counts }) {
  if (!existsSync(REDIS_SERVER)) {
    console.error(`queue: skipped (${REDIS_SERVER} is missing)`);
    return;
  }
  const password = 'sweep-Pw-4711';
  const port = await freePort();
  const dir = join(work, 'redis');
  mkdirSync(dir);
  const server = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--requirepass', password], { stdio: 'ignore' });
  const url = `redis://:${password}@127.0.0.1:${port}/0`;
  const cli = (...args) => execFileSync('redis-cli', ['-p', String(port), '-a', password, '--no-auth-warning', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  for (let i = 0; i < 100; i++) {
    try {
      if (cli('PING') === 'PONG') break;
    } catch {
      // not up yet
    }
    await sleep(50);
  }
  const count = (kind, label, detail = '') => {
    counts.queue ??= { runs: 0, typed: 0, silent: 0, untyped: 0, hang: 0, lost: 0, steerable: 0, kept: 0 };
    counts.queue.runs++;
    tally('queue', kind, label, detail);
  };
  const workers = [];
  try {
    // ---- tampered jobs against a worker serving `model` and the models under a root --------------------------
    const root = join(work, 'queue-root');
    const other = join(work, 'queue-other-model');
    cpSync(model, other, { recursive: true });
    writeFileSync(join(other, 'tokenizer_config.json'), `${readFileSync(join(other, 'tokenizer_config.json'), 'utf8')} `);
    mkdirSync(root);
    symlinkSync(other, join(root, 'escape'));
    const cache = join(work, 'queue-hash-cache');
    const worker = spawn(process.execPath, [bin, 'worker', '--queue', url, '--model', model, '--model-root', root, '--stall-interval', '1'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LAYERQUANT_CACHE_DIR: cache } });
    workers.push(worker);
    let log = '';
    worker.stderr.on('data', (d) => (log += d));
    for (let i = 0; i < 600 && !/waiting for jobs/.test(log); i++) await sleep(50);
    const otherHash = await modelContentHash(other);
    const b4g64 = { bits: 4, groupSize: 64, axis: 1, roundZero: false, symmetric: false };
    const statistics = (modelDir, modelHash) => ({ modelDir, modelHash, metrics: ['fnorm'], layers: [0], calibrationBlob: null, measure: { calibrationName: 'none', blocks: 1, seqlen: 64, configs: [b4g64], sensitivityConfigs: [b4g64] } });
    const jobs = [
      ['modelDir /etc', 'statistics', JSON.stringify(statistics('/etc', otherHash))],
      ["another model's directory with its hash", 'statistics', JSON.stringify(statistics(other, otherHash))],
      ['a link in a --model-root to another model', 'statistics', JSON.stringify(statistics(join(root, 'escape'), otherHash))],
      ['.. out of a --model-root', 'statistics', JSON.stringify(statistics(`${root}/../queue-other-model`, otherHash))],
      ['data that is not JSON', 'statistics', '{"modelDir": "/etc", '],
      ['an unknown field', 'statistics', JSON.stringify({ ...statistics(model, otherHash), shell: 'cat /etc/shadow' })],
      ['a mistyped field', 'statistics', JSON.stringify({ ...statistics(model, otherHash), layers: '0' })],
      ['an unknown job kind', 'exec', JSON.stringify(statistics(model, otherHash))],
      ['a cell whose key is not its id', 'cell', JSON.stringify({ modelDir: model, modelHash: otherHash, cell: { key: 'f'.repeat(16), kind: 'fp' } })],
    ];
    const now = Date.now();
    jobs.forEach(([, name, data], i) => {
      cli('HSET', `bull:${QUEUE}:sweep-${i}`, 'name', name, 'data', data, 'opts', '{"attempts":3}', 'timestamp', String(now));
      cli('LPUSH', `bull:${QUEUE}:wait`, `sweep-${i}`);
    });
    cli('ZADD', `bull:${QUEUE}:marker`, '0', '0');
    for (const [i, [label]] of jobs.entries()) {
      const key = `bull:${QUEUE}:sweep-${i}`;
      let reason = '';
      let finished = false;
      for (let t = 0; t < 600 && !finished; t++) {
        finished = cli('HGET', key, 'finishedOn') !== '';
        if (!finished) await sleep(50);
      }
      reason = cli('HGET', key, 'failedReason');
      const completed = cli('ZSCORE', `bull:${QUEUE}:completed`, `sweep-${i}`) !== '';
      if (!finished) count('hang', `job: ${label}`);
      else if (completed) count('steerable', `job: ${label}`, 'completed');
      else count(/^job sweep-\d+: /.test(reason) && !reason.includes(password) ? 'typed' : 'untyped', `job: ${label}`, reason);
    }
    const hashed = existsSync(join(cache, 'content-hashes')) ? readdirSync(join(cache, 'content-hashes')).map((f) => JSON.parse(readFileSync(join(cache, 'content-hashes', f), 'utf8')).path) : [];
    const outside = hashed.filter((p) => !p.startsWith(model));
    if (outside.length > 0) count('steerable', 'worker hashed files outside its models', outside.join(', '));
    worker.kill('SIGTERM');

    // ---- forged results: a coordinator with no worker; its cell jobs "completed" by redis-cli --------------------
    cli('FLUSHDB');
    const forged = [
      ['a result with another model hash', (key) => ({ key, modelHash: 'f'.repeat(64), row: {} })],
      ['a NaN row', (key, hash) => ({ key, modelHash: hash, row: { model: 'model', method: 'hqq', quantizer: 'hqq', options: '', budget: 4.25, bpp: 4.25, memoryMB: 1, packedBytes: 1, extraMemoryPercent: 0, ppl: null, seconds: 1, windowNll: [], windowWeights: [] } })],
      ['a result under another key', (_key, hash) => ({ key: '0'.repeat(16), modelHash: hash, row: {} })],
    ];
    const hash = await modelContentHash(model);
    for (const [label, forge] of forged) {
      cli('FLUSHDB');
      const out = join(work, `queue-forged-${forged.findIndex(([l]) => l === label)}`);
      const run = runCli(['experiment', model, '--methods', 'hqq', '--budgets', '4.25', '--no-fp', '--text', text, '--seqlen', '64', '--max-tokens', '256', '--out', out, '--queue', url, '--attempts', '1']);
      // The forger: each waiting cell job moved to completed with a forged result.
      let done = false;
      run.then(() => (done = true));
      while (!done) {
        const ids = cli('LRANGE', `bull:${QUEUE}:wait`, '0', '-1').split('\n').filter(Boolean);
        for (const id of ids) {
          const key = id.replace(/^cell-/, '');
          cli('LREM', `bull:${QUEUE}:wait`, '0', id);
          cli('HSET', `bull:${QUEUE}:${id}`, 'returnvalue', JSON.stringify(forge(key, hash)), 'finishedOn', String(Date.now()));
          cli('ZADD', `bull:${QUEUE}:completed`, String(Date.now()), id);
        }
        await sleep(100);
      }
      const result = await run;
      const recorded = existsSync(join(out, 'results.json')) && Object.keys(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).cells ?? {}).length > 0;
      const kind = recorded ? 'steerable' : verdict(result);
      count(kind === 'typed' && !/job cell-[0-9a-f]{16}: result /.test(result.stderr) ? 'untyped' : kind, `result: ${label}`, kind === 'silent' ? result.stdout : result.stderr);
    }
  } finally {
    for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
    server.kill('SIGTERM');
  }
  // ---- an unreachable Redis --------------------------------------------------------------------------------------
  const closed = await freePort();
  for (const argv of [
    ['worker', '--queue', `redis://:${password}@127.0.0.1:${closed}/0`, '--model', model, '--connect-timeout', '2'],
    ['experiment', model, '--methods', 'hqq', '--budgets', '4.25', '--text', text, '--seqlen', '64', '--max-tokens', '256', '--out', join(work, 'queue-unreachable'), '--queue', `redis://:${password}@127.0.0.1:${closed}/0`, '--connect-timeout', '2'],
  ]) {
    const result = await runCli(argv);
    const kind = verdict(result);
    count(kind === 'typed' && (result.stderr + result.stdout).includes(password) ? 'untyped' : kind, `unreachable Redis: ${argv[0]}`, result.stderr);
  }
}
