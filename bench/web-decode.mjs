// Decode speed in the browser: onnxruntime-web (WebAssembly, one thread; WebGPU where Chromium offers an adapter)
// running the exported files of the shipped model in headless Chromium: q4 (HQQ b4g64 MatMulNBits, fused graph,
// accuracy level 0 and 4) against fp32 (fused graph), greedy with the KV cache. Says which dtype a browser user
// without WebGPU should ship.
//
//   node bench/web-decode.mjs [--new-tokens 32] [--out out/bench-web-decode] [--webgpu]
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { shippedModelDir } from '@layerquant/fixtures';
import { loadTokenizer } from '@layerquant/tensor-io';
import { chromium } from 'playwright-core';
import { argument, checkArguments } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { values: ['new-tokens', 'out'], flags: ['webgpu'] });

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const cli = join(root, 'apps/cli/dist/bin.js');
const out = resolve(argument('out', join(root, 'out/bench-web-decode')));
const newTokens = Number(argument('new-tokens', '32'));
const webgpu = process.argv.includes('--webgpu');
mkdirSync(out, { recursive: true });
const layerquant = (...args) => execFileSync(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
const q4 = join(out, 'b4g64');
const variants = { 'q4 level 0': join(out, 'q4-l0'), 'q4 level 4': join(out, 'q4-l4'), fp32: join(out, 'fp32') };
if (!existsSync(q4)) layerquant('quantize', shippedModelDir, '--method', 'hqq', '--config', 'b4g64', '--out', q4, '--json');
if (!existsSync(variants['q4 level 0'])) layerquant('export', q4, '--format', 'onnx', '--out', variants['q4 level 0'], '--accuracy-level', '0', '--json');
if (!existsSync(variants['q4 level 4'])) layerquant('export', q4, '--format', 'onnx', '--out', variants['q4 level 4'], '--json');
if (!existsSync(variants.fp32)) layerquant('export', shippedModelDir, '--format', 'onnx', '--out', variants.fp32, '--json');

const ortDist = dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
const server = createServer((request, response) => {
  const path = decodeURIComponent(new URL(request.url ?? '/', 'http://127.0.0.1').pathname);
  if (path === '/') return void response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><script src="/ort/ort.min.js"></script>');
  const [prefix, base] = path.startsWith('/ort/') ? ['/ort/', ortDist] : ['/files/', out];
  const file = normalize(join(base, path.slice(prefix.length)));
  if (!file.startsWith(base + sep) || !existsSync(file) || !statSync(file).isFile()) return void response.writeHead(404).end();
  response.writeHead(200, { 'content-type': file.endsWith('.wasm') ? 'application/wasm' : /\.m?js$/.test(file) ? 'text/javascript' : 'application/octet-stream' });
  createReadStream(file).pipe(response);
});
await new Promise((done) => server.listen(0, '127.0.0.1', done));
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu'] });
const prompt = (await loadTokenizer(shippedModelDir)).encode('The jury said it did find that the');
const rows = [];
try {
  for (const device of webgpu ? ['wasm', 'webgpu'] : ['wasm']) {
    for (const [name, dir] of Object.entries(variants)) {
      const file = `/files/${dir.slice(out.length + 1)}/onnx/${name === 'fp32' ? 'model.onnx' : 'model_q4.onnx'}`;
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${server.address().port}/`);
      const result = await page.evaluate(
        async ({ file, device, prompt, count }) => {
          const ort = globalThis.ort;
          if (device === 'webgpu' && !(await navigator.gpu?.requestAdapter())) return { error: 'no WebGPU adapter' };
          ort.env.wasm.wasmPaths = '/ort/';
          ort.env.wasm.numThreads = 1;
          try {
            const session = await ort.InferenceSession.create(new Uint8Array(await (await fetch(file)).arrayBuffer()), { executionProviders: [device], graphOptimizationLevel: 'all' });
            const int64 = (values, dims) => new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), dims);
            const layers = session.inputNames.filter((n) => n.endsWith('.key')).length;
            const meta = session.inputMetadata?.find?.((m) => m.name === 'past_key_values.0.key');
            const [kvHeads, headDim] = [meta.shape[1], meta.shape[3]];
            const decode = async (n) => {
              let past = {};
              for (let i = 0; i < layers; i++) for (const part of ['key', 'value']) past[`past_key_values.${i}.${part}`] = new ort.Tensor('float32', new Float32Array(0), [1, kvHeads, 0, headDim]);
              let input = prompt;
              let cached = 0;
              const times = [];
              const ids = [];
              while (ids.length < n) {
                const started = performance.now();
                const total = cached + input.length;
                const feeds = { ...past, input_ids: int64(input, [1, input.length]), attention_mask: int64(new Array(total).fill(1), [1, total]) };
                if (session.inputNames.includes('position_ids')) feeds.position_ids = int64(input.map((_, t) => cached + t), [1, input.length]);
                if (session.inputNames.includes('num_logits_to_keep')) feeds.num_logits_to_keep = new ort.Tensor('int64', BigInt64Array.of(1n), []);
                const result = await session.run(feeds);
                const logits = result.logits.data;
                const last = logits.subarray(logits.length - logits.length / result.logits.dims[1]);
                let best = 0;
                for (let j = 1; j < last.length; j++) if (last[j] > last[best]) best = j;
                ids.push(best);
                past = {};
                for (let i = 0; i < layers; i++) for (const part of ['key', 'value']) past[`past_key_values.${i}.${part}`] = result[`present.${i}.${part}`];
                cached = total;
                input = [best];
                times.push(performance.now() - started);
              }
              return { ids, times };
            };
            await decode(2);
            const { ids, times } = await decode(count);
            await session.release();
            const decodeMs = times.slice(1).reduce((a, b) => a + b, 0);
            return { prefillMs: times[0], decodeTokensPerSecond: ((count - 1) * 1000) / decodeMs, ids };
          } catch (error) {
            return { error: String(error.message ?? error).slice(0, 200) };
          }
        },
        { file, device, prompt, count: newTokens },
      );
      await page.close();
      rows.push({ device, weights: name, ...result });
      console.error(device, name, result.error ?? `prefill ${result.prefillMs.toFixed(0)} ms, decode ${result.decodeTokensPerSecond.toFixed(1)} tokens/s`);
    }
  }
} finally {
  await browser.close();
  server.close();
}
writeFileSync(join(out, 'web-decode.json'), `${JSON.stringify({ promptTokens: prompt.length, newTokens, rows: rows.map(({ ids, ...r }) => r) }, null, 1)}\n`);
console.log('| device | weights | prefill ms | decode tokens/s |');
console.log('| --- | --- | --- | --- |');
for (const r of rows) console.log(`| ${r.device} | ${r.weights} | ${r.error ? r.error : r.prefillMs.toFixed(0)} | ${r.error ? '-' : r.decodeTokensPerSecond.toFixed(1)} |`);
