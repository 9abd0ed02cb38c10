import { GgufFormatError, MissingTensorError, validateCheckpoint, type DecoderConfig, type DecoderLayout, type WeightTensor } from '@layerquant/core';
import { openGgufFile, type GgufFile } from './gguf-file.js';
import { decoderConfigOfGguf, ggufArchitecture, hfTensorName, permuteRotaryRows, rotaryHeads } from './llama-names.js';

/**
 * A GGUF model file read back as a Hugging Face checkpoint: its DecoderConfig from the metadata, and its tensors
 * under their Hugging Face names, dequantized to float32 with the q/k permutation undone. layerquant's runtime
 * evaluates these weights, which are exactly the ones llama.cpp computes with (up to its own float arithmetic).
 */
export interface GgufModel {
  readonly file: GgufFile;
  readonly config: DecoderConfig;
  readonly layout: DecoderLayout;
  readonly dir: string;
  readonly tensors: readonly { readonly name: string; readonly shape: readonly number[] }[];
  has(name: string): boolean;
  read(name: string): Promise<WeightTensor>;
  close(): Promise<void>;
}

export async function openGgufModel(path: string): Promise<GgufModel> {
  const file = await openGgufFile(path);
  try {
    const config = decoderConfigOfGguf(file.header);
    const permute = ggufArchitecture(config, file.path).permuteQK;
    const byHfName = new Map<string, string>();
    for (const t of file.header.tensors) {
      const hf = hfTensorName(t.name);
      if (!hf) throw new GgufFormatError(file.path, 'is not a tensor of the llama / qwen2 architecture layerquant evaluates', t.name);
      byHfName.set(hf, t.name);
    }
    const tensors = [...byHfName].map(([name, gguf]) => Object.freeze({ name, shape: file.info(gguf).shape }));
    const layout = validateCheckpoint(config, { tensors, dir: file.path }, file.path);
    return {
      file,
      config,
      layout,
      dir: file.path,
      tensors,
      has: (name) => byHfName.has(name),
      async read(name) {
        const gguf = byHfName.get(name);
        if (!gguf) throw new MissingTensorError(name, file.path);
        const { shape, data } = await file.read(gguf);
        const heads = permute ? rotaryHeads(name, config) : 0;
        const columns = shape.length === 2 ? shape[1]! : 1;
        return { name, dtype: 'F32', shape, data: heads ? permuteRotaryRows(data, heads, columns, true) : data };
      },
      close: () => file.close(),
    };
  } catch (error) {
    await file.close();
    throw error;
  }
}
