// One model file in its own process: prefill and decode speed with the KV cache, then the peak resident memory
// (VmHWM) after the session was created and at the end. THREADS (default 1), PREFILL (window length, default 512).
// Usage: node export-speed-child.mjs <model.onnx | -> <config-dir> <ids.json> <windows> <decode>
import { readFileSync } from 'node:fs';
import { GraphBuilder, OnnxDataType, argmaxRow, createKvDecoder, createSession } from '@layerquant/runtime';
import { loadDecoderConfig } from '@layerquant/tensor-io';

const [file, configDir, idsPath, windowsText, decodeText] = process.argv.slice(2);
const peakKiB = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
const config = await loadDecoderConfig(configDir);
if (file === '-') {
  // baseline: the runtime loaded and one session of a one-node graph (onnxruntime's fixed cost), no weights
  const g = new GraphBuilder('baseline');
  g.op('Relu', [g.input('x', OnnxDataType.FLOAT, [4])], {}, 'y');
  g.output('y', OnnxDataType.FLOAT, [4]);
  const session = await createSession(g.encode(), { threads: Number(process.env.THREADS ?? 1) });
  console.log(JSON.stringify({ peakKiB: peakKiB() }));
  await session.release();
  process.exit(0);
}
const ids = JSON.parse(readFileSync(idsPath, 'utf8'));
const windows = Number(windowsText);
const decodeTokens = Number(decodeText);
const t0 = performance.now();
const decoder = await createKvDecoder(file, config, { threads: Number(process.env.THREADS ?? 1) });
const sessionSeconds = (performance.now() - t0) / 1000;
const sessionPeakKiB = peakKiB();
const prefill = [];
const length = Number(process.env.PREFILL ?? 512);
for (let w = 0; w < windows; w++) {
  decoder.reset();
  const start = performance.now();
  await decoder.forward(ids.slice(w * length, (w + 1) * length));
  prefill.push((performance.now() - start) / 1000);
}
decoder.reset();
let logits = await decoder.forward(ids.slice(0, 16));
let next = argmaxRow(logits, config.vocabSize, 15);
const start = performance.now();
for (let t = 0; t < decodeTokens; t++) {
  logits = await decoder.forward([next]);
  next = argmaxRow(logits, config.vocabSize, 0);
}
const decodeSeconds = (performance.now() - start) / 1000;
const best = Math.min(...prefill);
console.log(JSON.stringify({
  sessionSeconds,
  prefillTokensPerSecond: length / best,
  prefillMeanTokensPerSecond: (length * windows) / prefill.reduce((a, b) => a + b, 0),
  decodeTokensPerSecond: decodeTokens / decodeSeconds,
  sessionPeakKiB,
  peakKiB: peakKiB(),
}));
await decoder.dispose();
