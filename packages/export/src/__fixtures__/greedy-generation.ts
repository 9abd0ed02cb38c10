// Test helpers: greedy generation by transformers.js (the real package, onnxruntime-node backend) from an ONNX
// directory, and by the float64 reference forward of a quantized checkpoint's dequantized weights (no cache).
import { openModelWeights } from '@layerquant/quantizers/node';
import { loadDecoderWeights, referenceForward } from '@layerquant/runtime';
import { loadDecoderConfig } from '@layerquant/tensor-io';

/** transformers.js' `generate()` (greedy) on `prompt`: the new tokens. */
export async function transformersGenerate(dir: string, dtype: 'q4' | 'q4f16', prompt: readonly number[], newTokens: number): Promise<number[]> {
  const { AutoModelForCausalLM, Tensor, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype, local_files_only: true });
  const output = (await model.generate({
    input_ids: new Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]),
    attention_mask: new Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [1, prompt.length]),
    max_new_tokens: newTokens,
    do_sample: false,
  })) as InstanceType<typeof Tensor>;
  await model.dispose();
  return Array.from(output.data as BigInt64Array, Number).slice(prompt.length);
}

/** Greedy continuation of `prompt` from the float64 reference forward of a quantized directory's dequantized weights. */
export async function referenceGreedy(quantizedDir: string, prompt: readonly number[], newTokens: number): Promise<number[]> {
  const weights = await openModelWeights(quantizedDir);
  const config = await loadDecoderConfig(quantizedDir);
  const dequantized = await loadDecoderWeights(weights, config);
  await weights.close();
  const sequence = [...prompt];
  for (let i = 0; i < newTokens; i++) {
    const last = Array.from(referenceForward(dequantized, sequence).slice(-config.vocabSize));
    sequence.push(last.indexOf(Math.max(...last)));
  }
  return sequence.slice(prompt.length);
}
