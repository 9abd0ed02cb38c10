// The exported files of the shipped model (fused and standard operators) in onnxruntime-web in Debian's headless
// Chromium, on WebAssembly and (where the browser offers an adapter, a software one here) WebGPU: the greedy tokens
// of onnxruntime-node on the same file, and the prompt's last logits within 1e-3 on WebAssembly. The wasm files are
// served from node_modules.
import { quantConfig } from '@layerquant/core';
import { shippedModelDir } from '@layerquant/fixtures';
import { hqqQuantizer } from '@layerquant/quantizers';
import { quantizeModel } from '@layerquant/quantizers/node';
import { argmaxRow, greedyDecode } from '@layerquant/runtime';
import { relativeError, tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
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
const PAGE = '<!doctype html><meta charset="utf-8"><script src="/ort/ort.min.js"></script><body>onnxruntime-web</body>';
const NEW_TOKENS = 8;
const TINY = tinyConfig({ hiddenSize: 64, headDim: 16, numLayers: 2, vocabSize: 96, eosTokenId: 95 });

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
const outDirs = { fused: join(root, 'b4g64-onnx'), standard: join(root, 'b4g64-onnx-standard'), float: join(root, 'float-onnx') };
const FILES = { fused: 'fused/model_q4.onnx', standard: 'standard/model_q4.onnx', float: 'float/model.onnx' };

beforeAll(async () => {
  const quantizedDir = join(root, 'b4g64');
  await quantizeModel({ modelDir: shippedModelDir, outDir: quantizedDir, quantizer: hqqQuantizer, workers: 2, configFor: () => quantConfig(4, 64) });
  await exportOnnx({ modelDir: quantizedDir, outDir: outDirs.fused, accuracyLevel: 0 });
  await exportOnnx({ modelDir: quantizedDir, outDir: outDirs.standard, accuracyLevel: 0, operators: 'standard' });
  // WebGPU (a software adapter: slow) runs the float export of a tiny fused model; onnxruntime-web's WebGPU
  // MatMulNBits fails on the shipped model's down_proj (K = 640, 10 blocks of 64: "cannot convert shape", fused or
  // standard graph alike; packages/runtime/README.md).
  await writeModelDirectory(join(root, 'tiny'), TINY, 3);
  await exportOnnx({ modelDir: join(root, 'tiny'), outDir: outDirs.float });
  server = await serve({ '/ort/': ortDist, '/fused/': join(outDirs.fused, 'onnx'), '/standard/': join(outDirs.standard, 'onnx'), '/float/': join(outDirs.float, 'onnx') });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((done) => (server ? server.close(done) : done(undefined)));
  rmSync(root, { recursive: true, force: true });
});

/** Greedy decoding with the KV cache in the page, feeding whatever inputs the file declares; the prompt's last logits. */
async function decodeInPage(file: string, device: 'wasm' | 'webgpu', ids: number[], layers: number, kvHeads: number, headDim: number) {
  const page = await browser.newPage();
  try {
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    return await page.evaluate(
      async ({ file, device, ids, layers, kvHeads, headDim, count }) => {
        const ort = (globalThis as unknown as { ort: typeof import('onnxruntime-web') }).ort;
        if (device === 'webgpu' && !(await (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu?.requestAdapter())) return undefined;
        ort.env.wasm.wasmPaths = '/ort/';
        ort.env.wasm.numThreads = 1;
        const bytes = new Uint8Array(await (await fetch(file)).arrayBuffer());
        const session = await ort.InferenceSession.create(bytes, { executionProviders: [device], graphOptimizationLevel: 'all' });
        const int64 = (values: number[], dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), dims);
        let past: Record<string, InstanceType<typeof ort.Tensor>> = {};
        for (let i = 0; i < layers; i++) {
          for (const part of ['key', 'value']) past[`past_key_values.${i}.${part}`] = new ort.Tensor('float32', new Float32Array(0), [1, kvHeads, 0, headDim]);
        }
        const tokens: number[] = [];
        let input = ids;
        let cached = 0;
        let promptLogits: number[] = [];
        while (tokens.length < count) {
          const total = cached + input.length;
          const feeds: Record<string, InstanceType<typeof ort.Tensor>> = { ...past, input_ids: int64(input, [1, input.length]), attention_mask: int64(new Array(total).fill(1), [1, total]) };
          if (session.inputNames.includes('position_ids')) feeds.position_ids = int64(input.map((_, t) => cached + t), [1, input.length]);
          if (session.inputNames.includes('num_logits_to_keep')) feeds.num_logits_to_keep = new ort.Tensor('int64', BigInt64Array.of(1n), []);
          const out = await session.run(feeds);
          const logits = out.logits!.data as Float32Array;
          const last = logits.subarray(logits.length - logits.length / out.logits!.dims[1]!);
          if (tokens.length === 0) promptLogits = Array.from(last);
          let best = 0;
          for (let j = 1; j < last.length; j++) if (last[j]! > last[best]!) best = j;
          tokens.push(best);
          past = {};
          for (let i = 0; i < layers; i++) for (const part of ['key', 'value']) past[`past_key_values.${i}.${part}`] = out[`present.${i}.${part}`]!;
          cached = total;
          input = [best];
        }
        await session.release();
        return { tokens, promptLogits };
      },
      { file, device, ids, layers, kvHeads, headDim, count: NEW_TOKENS },
    );
  } finally {
    await page.close();
  }
}

describe('the exported files in onnxruntime-web', () => {
  for (const [operators, device] of [['fused', 'wasm'], ['standard', 'wasm'], ['float', 'webgpu']] as const) {
    it(`${operators === 'float' ? 'fused operators, a tiny float model,' : `${operators} operators, b4g64,`} on ${device}: the greedy tokens of onnxruntime-node on the same file${device === 'wasm' ? ', logits within 1e-3' : ''}`, async () => {
      const dir = outDirs[operators];
      const config = await loadDecoderConfig(dir);
      const ids = operators === 'float' ? [5, 17, 42, 8, 63] : (await loadTokenizer(shippedModelDir)).encode('The jury said it did find that');
      const node = await openOnnxExport(dir);
      const expectedLogits = (await node.logits({ ids })).slice(-config.vocabSize);
      const expected = await greedyDecode(node.decoder, ids, { maxNewTokens: NEW_TOKENS });
      await node.dispose();
      const result = await decodeInPage(`/${FILES[operators]}`, device, ids, config.numLayers, config.numKeyValueHeads, config.headDim);
      if (!result) {
        // No WebGPU adapter in this browser: nothing to compare (EXPORT.md says how Chromium offers one).
        console.warn('onnxruntime-web: no WebGPU adapter in this Chromium; the WebGPU comparison did not run');
        return;
      }
      expect(result.tokens).toEqual(expected);
      expect(argmaxRow(result.promptLogits, config.vocabSize, 0)).toBe(argmaxRow(expectedLogits, config.vocabSize, 0));
      if (device === 'wasm') expect(relativeError(result.promptLogits, expectedLogits)).toBeLessThan(1e-3);
    }, 300_000);
  }
});
