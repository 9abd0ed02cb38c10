// GGUF export per type on the shipped model (or --model <dir>): file size, bits per weight of the file, encode
// time, and perplexity of the same windows in llama.cpp (node-llama-cpp, from its own logits) and in layerquant's
// runtime (the file's dequantized weights), with their relative difference. Side by side in one run.
//   node bench/gguf.mjs [--model <dir>] [--windows 32] [--types F32,F16,Q8_0,...] [--threads 1]
import { GGML_CODEC_TYPES } from '@layerquant/gguf';
import { exportGguf, openGgufModel, openLlamaCppModel } from '@layerquant/gguf/node';
import { brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { perplexity } from '@layerquant/perplexity';
import { loadDecoderModel } from '@layerquant/runtime';
import { loadTokenizer } from '@layerquant/tensor-io';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { timeIt } from './lib/anchor.mjs';
import { argument, checkArguments } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { values: ['model', 'windows', 'threads', 'types'] });

const modelDir = argument('model', shippedModelDir);
const windows = Number(argument('windows', '32'));
const threads = Number(argument('threads', '1'));
const types = argument('types', GGML_CODEC_TYPES.join(',')).split(',');
const seqlen = 512;

const work = mkdtempSync(join(tmpdir(), 'layerquant-bench-gguf-'));
const tokenizer = await loadTokenizer(modelDir);
const ids = tokenizer.encode(readFileSync(brownTestPath, 'utf8')).slice(0, windows * seqlen);
console.log(`model ${modelDir}, ${windows} windows of ${seqlen} of brown-test, llama.cpp on ${threads} thread(s)\n`);
console.log('| type | file MiB | bits/weight of the file | encode s | llama.cpp ppl | layerquant ppl | relative difference | llama.cpp s | layerquant s |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
try {
  for (const type of types) {
    const outFile = join(work, `${type}.gguf`);
    const { value: report, seconds: encodeSeconds } = await timeIt(() => exportGguf({ modelDir, outFile, types: { '.*': type } }));
    const params = report.tensors.reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0);
    const llama = await openLlamaCppModel(outFile, { contextSize: seqlen, threads });
    const { value: theirs, seconds: llamaSeconds } = await timeIt(() => perplexity(llama, ids, { seqlen }));
    await llama.dispose();
    const gguf = await openGgufModel(outFile);
    const model = await loadDecoderModel(gguf, gguf.config);
    const { value: ours, seconds: oursSeconds } = await timeIt(() => perplexity(model, ids, { seqlen }));
    await model.dispose();
    await gguf.close();
    rmSync(outFile);
    const relative = (theirs.ppl - ours.ppl) / ours.ppl;
    console.log(`| ${type} | ${(report.fileBytes / 2 ** 20).toFixed(2)} | ${((report.fileBytes * 8) / params).toFixed(3)} | ${encodeSeconds.toFixed(1)} | ${theirs.ppl.toFixed(4)} | ${ours.ppl.toFixed(4)} | ${relative.toExponential(2)} | ${llamaSeconds.toFixed(1)} | ${oursSeconds.toFixed(1)} |`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
