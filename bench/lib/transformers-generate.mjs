// Child of decode.mjs: transformers.js' own generate() loop on an export directory (onnxruntime-node backend), greedy.
// argv: <export-dir> <dtype> <threads> <prompt ids, comma separated> <new tokens>. Prints one JSON line: prefill
// seconds (generate with one new token, after a warm-up), decode tokens/s of the further tokens, the tokens.
import { AutoModelForCausalLM, Tensor, env } from '@huggingface/transformers';

const [dir, dtype, threads, promptText, newText] = process.argv.slice(2);
const prompt = promptText.split(',').map(Number);
const count = Number(newText);
env.allowRemoteModels = false;
const model = await AutoModelForCausalLM.from_pretrained(dir, {
  dtype,
  local_files_only: true,
  session_options: { intraOpNumThreads: Number(threads), interOpNumThreads: 1 },
});
const run = async (maxNewTokens) => {
  const started = performance.now();
  const output = await model.generate({
    input_ids: new Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]),
    attention_mask: new Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [1, prompt.length]),
    max_new_tokens: maxNewTokens,
    min_new_tokens: maxNewTokens,
    do_sample: false,
  });
  return { seconds: (performance.now() - started) / 1000, ids: Array.from(output.data, Number).slice(prompt.length) };
};
await run(2); // warm-up: the first run of a session allocates its buffers
const first = await run(1);
const all = await run(count);
await model.dispose();
console.log(JSON.stringify({ prefillSeconds: first.seconds, prefillTokensPerSecond: prompt.length / first.seconds, decodeTokensPerSecond: (count - 1) / (all.seconds - first.seconds), ids: all.ids }));
