// The exported file of the shipped model in onnxruntime-web (WebAssembly) in Debian's headless Chromium: the same
// argmax and logits within 1e-3 of onnxruntime-node on the same file. The wasm files are served from node_modules.
import { quantConfig } from '@layerquant/core';
import { shippedModelDir } from '@layerquant/fixtures';
import { hqqQuantizer } from '@layerquant/quantizers';
import { quantizeModel } from '@layerquant/quantizers/node';
import { argmaxRow } from '@layerquant/runtime';
import { relativeError } from '@layerquant/runtime/testing';
import { loadDecoderConfig, loadTokenizer } from '@layerquant/tensor-io';
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, normalize, sep } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportOnnx } from './export-onnx.js';
import { openOnnxExport } from './onnx-model-dir.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-ort-web-'));
const ortDist = dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
const PAGE = '<!doctype html><meta charset="utf-8"><script src="/ort/ort.wasm.min.js"></script><body>onnxruntime-web</body>';

function serve(routes: Record<string, string>): Promise<Server> {
  const server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://127.0.0.1').pathname);
    if (path === '/') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      return;
    }
    const prefix = Object.keys(routes).find((p) => path.startsWith(p));
    const base = prefix ? routes[prefix]! : '';
    const file = prefix ? normalize(join(base, path.slice(prefix.length))) : '';
    if (!prefix || !file.startsWith(base + sep) || !existsSync(file) || !statSync(file).isFile()) {
      response.writeHead(404).end('not found');
      return;
    }
    const type = file.endsWith('.wasm') ? 'application/wasm' : /\.m?js$/.test(file) ? 'text/javascript' : 'application/octet-stream';
    response.writeHead(200, { 'content-type': type });
    createReadStream(file).pipe(response);
  });
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done(server)));
}

let server: Server;
let browser: Browser;
const outDir = join(root, 'b4g64-onnx');

beforeAll(async () => {
  const quantizedDir = join(root, 'b4g64');
  await quantizeModel({ modelDir: shippedModelDir, outDir: quantizedDir, quantizer: hqqQuantizer, workers: 2, configFor: () => quantConfig(4, 64) });
  await exportOnnx({ modelDir: quantizedDir, outDir, accuracyLevel: 0 });
  server = await serve({ '/ort/': ortDist, '/model/': join(outDir, 'onnx') });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((done) => (server ? server.close(done) : done(undefined)));
  rmSync(root, { recursive: true, force: true });
});

describe('the exported file in onnxruntime-web', () => {
  it('gives the argmax and logits of onnxruntime-node on the same file', async () => {
    const config = await loadDecoderConfig(outDir);
    const ids = (await loadTokenizer(shippedModelDir)).encode('The jury said it did find that');
    const node = await openOnnxExport(outDir);
    const expected = (await node.logits({ ids })).slice(-config.vocabSize);
    await node.dispose();

    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    const result = await page.evaluate(
      async ({ ids, layers, kvHeads, headDim }) => {
        const ort = (globalThis as unknown as { ort: typeof import('onnxruntime-web') }).ort;
        ort.env.wasm.wasmPaths = '/ort/';
        ort.env.wasm.numThreads = 1;
        const bytes = new Uint8Array(await (await fetch('/model/model_q4.onnx')).arrayBuffer());
        // Graph optimizations triple the session's start-up in WebAssembly (9 s against 3 s here); with them the
        // comparison below passes too (measured), it only takes longer.
        const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'disabled' });
        const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
          input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
          attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
          position_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map((_, i) => BigInt(i))), [1, ids.length]),
        };
        for (let i = 0; i < layers; i++) {
          for (const part of ['key', 'value']) feeds[`past_key_values.${i}.${part}`] = new ort.Tensor('float32', new Float32Array(0), [1, kvHeads, 0, headDim]);
        }
        const out = await session.run(feeds, ['logits']);
        const logits = out.logits!.data as Float32Array;
        return { dims: out.logits!.dims as number[], last: Array.from(logits.slice(logits.length - logits.length / ids.length)) };
      },
      { ids, layers: config.numLayers, kvHeads: config.numKeyValueHeads, headDim: config.headDim },
    );
    expect(result.dims).toEqual([1, ids.length, config.vocabSize]);
    expect(argmaxRow(result.last, config.vocabSize, 0)).toBe(argmaxRow(expected, config.vocabSize, 0));
    expect(relativeError(result.last, expected)).toBeLessThan(1e-3);
    await page.close();
  });
});
