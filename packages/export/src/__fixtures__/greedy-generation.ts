// Test helpers: greedy generation by transformers.js (the real package, onnxruntime-node backend) from an ONNX
// directory, and by the float64 reference forward of a quantized checkpoint's dequantized weights (no cache).
import { openModelWeights } from '@layerquant/quantizers/node';
import { loadDecoderWeights, referenceForward } from '@layerquant/runtime';
import { loadDecoderConfig } from '@layerquant/tensor-io';

/** transformers.js' `generate()` (greedy) on `prompt`: the new tokens. */
export async function transformersGenerate(dir: string, dtype: 'q4' | 'q4f16' | 'fp32' | 'fp16', prompt: readonly number[], newTokens: number): Promise<number[]> {
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

/** transformers.js' forward (no cache) on `prompt`: the logits of its last position (float32, whatever the dtype). */
export async function transformersLastLogits(dir: string, dtype: 'q4' | 'q4f16' | 'fp32' | 'fp16', prompt: readonly number[]): Promise<Float32Array> {
  const { AutoModelForCausalLM, Tensor, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype, local_files_only: true });
  const { logits } = (await model({
    input_ids: new Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]),
    attention_mask: new Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [1, prompt.length]),
  })) as { logits: InstanceType<typeof Tensor> };
  await model.dispose();
  const vocab = logits.dims.at(-1)!;
  return Float32Array.from((logits.data as Float32Array).subarray(logits.data.length - vocab));
}

/** The float64 reference forward (no cache) of a quantized directory's dequantized weights, or a plain checkpoint's. */
async function referenceModel(dir: string): Promise<(sequence: readonly number[]) => Float64Array> {
  const weights = await openModelWeights(dir);
  const config = await loadDecoderConfig(dir);
  const dequantized = await loadDecoderWeights(weights, config);
  await weights.close();
  return (sequence) => referenceForward(dequantized, sequence).slice(-config.vocabSize);
}

/** The float64 reference's logits of the last position of `prompt`. */
export async function referenceLastLogits(dir: string, prompt: readonly number[]): Promise<Float64Array> {
  return (await referenceModel(dir))(prompt);
}

/** Greedy continuation of `prompt` from the float64 reference forward of a quantized directory's dequantized weights (or a plain checkpoint's). */
export async function referenceGreedy(quantizedDir: string, prompt: readonly number[], newTokens: number): Promise<number[]> {
  const lastLogits = await referenceModel(quantizedDir);
  const sequence = [...prompt];
  for (let i = 0; i < newTokens; i++) {
    const last = Array.from(lastLogits(sequence));
    sequence.push(last.indexOf(Math.max(...last)));
  }
  return sequence.slice(prompt.length);
}

/**
 * Perplexity of `ids` from transformers.js' own logits of an ONNX directory (one forward over the whole sequence,
 * no cache), summed in float64 here: the oracle `layerquant eval` of the same directory is held against.
 */
export async function transformersPerplexity(dir: string, dtype: 'q4' | 'q4f16', ids: readonly number[]): Promise<number> {
  const { AutoModelForCausalLM, Tensor, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype, local_files_only: true });
  try {
    const output = (await model({
      input_ids: new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
      attention_mask: new Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
    })) as { logits: InstanceType<typeof Tensor> };
    const logits = output.logits.data as Float32Array;
    const vocab = output.logits.dims.at(-1)!;
    if (output.logits.dims.at(-2) !== ids.length) throw new Error(`transformers.js returned logits for ${output.logits.dims.at(-2)} positions, not ${ids.length}`);
    let nll = 0;
    for (let t = 0; t + 1 < ids.length; t++) {
      const row = logits.subarray(t * vocab, (t + 1) * vocab);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let sum = 0;
      for (const v of row) sum += Math.exp(v - max);
      nll += Math.log(sum) + max - row[ids[t + 1]!]!;
    }
    return Math.exp(nll / (ids.length - 1));
  } finally {
    await model.dispose();
  }
}
