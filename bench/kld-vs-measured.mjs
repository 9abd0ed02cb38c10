// The end-to-end `kld` allocator against `measured` (and MXQ) at equal shipped size: each method quantizes the model
// into an ONNX export (`quantize --format onnx --target-bpw`, the knapsack spending the file's bytes), and `compare
// --kld-base` evaluates the exports on the same windows of brown-test: perplexity and KL divergence from the float
// model, each with its paired bootstrap interval against `measured`.
// usage: pnpm build && nice node bench/kld-vs-measured.mjs [--model <dir>] [--targets 2.5,3.25,4.25] [--blocks 8]
//        [--max-tokens <n>] [--methods measured,kld,mxq] [--out <dir>]
// --targets are bits per linear weight of the shipped file (every byte of onnx/*, over the linear weights).
// The statistics are measured once per method (first target) and reused with --stats for the others.
import { shippedModelDir } from '@layerquant/fixtures';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: shippedModelDir },
    targets: { type: 'string', default: '2.5,3.25,4.25' },
    blocks: { type: 'string', default: '8' },
    'max-tokens': { type: 'string' },
    methods: { type: 'string', default: 'measured,kld,mxq' },
    out: { type: 'string' },
  },
});
const bin = fileURLToPath(new URL('../apps/cli/dist/bin.js', import.meta.url));
const modelDir = resolve(values.model);
const out = values.out ? resolve(values.out) : mkdtempSync(join(tmpdir(), 'layerquant-kld-vs-measured-'));
const methods = values.methods.split(',');
const targets = values.targets.split(',').map(Number);
const started = performance.now();
console.error(`load average at start: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

function layerquant(...argv) {
  return new Promise((done, fail) => {
    const t0 = performance.now();
    execFile(process.execPath, [bin, ...argv], { maxBuffer: 256 * 2 ** 20 }, (error, stdout, stderr) => {
      if (error) fail(new Error(`layerquant ${argv.join(' ')} failed:\n${stderr}`));
      else done({ json: JSON.parse(stdout), seconds: (performance.now() - t0) / 1000 });
    });
  });
}

const fixed = (v, d) => (Number.isFinite(v) ? v.toFixed(d) : '-');
const interval = (i, d) => (i ? `${fixed(i.difference, d)} [${fixed(i.low, d)}, ${fixed(i.high, d)}]${i.verdict === 'tie' ? '' : ` ${i.verdict}`}` : 'baseline');
const statsOf = new Map();
const lines = [`# kld vs ${methods[0]} at equal shipped size (${modelDir.split('/').at(-1)}, ONNX exports, brown-test${values['max-tokens'] ? ` first ${values['max-tokens']} tokens` : ''})`, ''];
lines.push(`| target bits/w | method | MiB shipped | bits/w shipped | perplexity | Δppl vs ${methods[0]} [95% CI] | mean KLD | 99.9% KLD | same top | ΔKLD vs ${methods[0]} [95% CI] | quantize (s) |`);
lines.push('| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const target of targets) {
  const dirs = [];
  const quantizeSeconds = [];
  for (const method of methods) {
    const dir = join(out, `${method}-${target}`);
    const stats = statsOf.get(method);
    const run = await layerquant('quantize', modelDir, '--method', method, '--format', 'onnx', '--target-bpw', String(target), '--blocks', values.blocks, '--out', dir, '--force', ...(stats ? ['--stats', stats] : []), '--json');
    if (!stats && existsSync(join(dir, 'stats'))) {
      const [key] = readdirSync(join(dir, 'stats')).filter((name) => /^[0-9a-f]{16}$/.test(name));
      if (key) statsOf.set(method, join(dir, 'stats', key));
    }
    console.error(`${method} @ ${target}: quantized in ${run.seconds.toFixed(1)} s`);
    dirs.push(dir);
    quantizeSeconds.push(run.seconds);
  }
  const compared = await layerquant('compare', ...dirs, '--dataset', 'brown-test', ...(values['max-tokens'] ? ['--max-tokens', values['max-tokens']] : []), '--kld-base', modelDir, '--kld-cache', join(out, 'kld'), '--json');
  compared.json.models.forEach((m, i) => {
    const k = m.kld;
    lines.push(
      `| ${target} | ${methods[i]} | ${fixed(m.sizes.shipped?.MiB, 3)} | ${fixed(m.sizes.shipped?.bitsPerWeight, 4)} | ${fixed(m.perplexity, 4)} | ${interval(m.versusFirst, 3)} | ${fixed(k.kld.mean, 5)} ± ${fixed(k.kld.error, 5)} | ${fixed(k.kld.quantiles['0.999'], 4)} | ${fixed(100 * k.sameTop.value, 2)}% | ${interval(m.kldVersusFirst, 5)} | ${fixed(quantizeSeconds[i], 1)} |`,
    );
  });
  console.error(`compared at ${target}: ${compared.seconds.toFixed(1)} s`);
}
lines.push('', `total ${((performance.now() - started) / 1000).toFixed(1)} s; load average at end ${loadavg().map((l) => l.toFixed(2)).join(' ')} (a shared machine: times are not performance figures)`);
console.log(lines.join('\n'));
if (!values.out) rmSync(out, { recursive: true, force: true });
