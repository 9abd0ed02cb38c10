// Child of decode.mjs: layerquant's own decode loop as a library user runs it (@layerquant/export's openKvDecoder on
// an export directory, @layerquant/runtime's greedyDecode with the shared KV cache), greedy, warmed up once as the
// transformers.js and llama.cpp children are. argv: <export-dir> <threads> <prompt ids> <new tokens>. Prints one JSON
// line as transformers-generate.mjs.
import { openKvDecoder } from '@layerquant/export';
import { greedyDecode } from '@layerquant/runtime';

const [dir, threads, promptText, newText] = process.argv.slice(2);
const prompt = promptText.split(',').map(Number);
const count = Number(newText);
const { decoder } = await openKvDecoder(dir, { threads: Number(threads) });
const run = async (maxNewTokens) => {
  const started = performance.now();
  let firstAt = started;
  const ids = await greedyDecode(decoder, prompt, {
    maxNewTokens,
    onToken: (_id, index) => {
      if (index === 0) firstAt = performance.now();
    },
  });
  return { prefillSeconds: (firstAt - started) / 1000, decodeSeconds: (performance.now() - firstAt) / 1000, ids };
};
await run(2); // warm-up: the first run of a session allocates its buffers
const result = await run(count);
await decoder.dispose();
console.log(JSON.stringify({ prefillSeconds: result.prefillSeconds, prefillTokensPerSecond: prompt.length / result.prefillSeconds, decodeTokensPerSecond: (count - 1) / result.decodeSeconds, cacheMode: decoder.cacheMode, ids: result.ids }));
