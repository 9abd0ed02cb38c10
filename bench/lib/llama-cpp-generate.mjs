// Child of decode.mjs: llama.cpp through node-llama-cpp 3.21.1 (its prebuilt CPU binaries, nothing downloaded or
// built), greedy. argv: <gguf> <threads> <prompt ids> <new tokens>. Prints one JSON line as transformers-generate.mjs.
import { getLlama } from 'node-llama-cpp';

const [file, threads, promptText, newText] = process.argv.slice(2);
const prompt = promptText.split(',').map(Number);
const count = Number(newText);
const llama = await getLlama({ gpu: false, build: 'never' });
const model = await llama.loadModel({ modelPath: file });
const context = await model.createContext({ contextSize: prompt.length + count + 16, batchSize: prompt.length, threads: Number(threads) });
const run = async (maxNewTokens) => {
  const sequence = context.getSequence();
  const started = performance.now();
  let firstAt = started;
  const ids = [];
  for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
    if (ids.length === 0) firstAt = performance.now();
    ids.push(token);
    if (ids.length >= maxNewTokens) break;
  }
  const finished = performance.now();
  sequence.dispose();
  return { prefillSeconds: (firstAt - started) / 1000, decodeSeconds: (finished - firstAt) / 1000, ids };
};
await run(2); // warm-up
const result = await run(count);
await context.dispose();
await model.dispose();
console.log(JSON.stringify({ prefillSeconds: result.prefillSeconds, prefillTokensPerSecond: prompt.length / result.prefillSeconds, decodeTokensPerSecond: (count - 1) / result.decodeSeconds, ids: result.ids }));
