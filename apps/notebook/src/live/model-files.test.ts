import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { MissingFileError, SafetensorsFormatError } from '@layerquant/core';
import { shippedModelDir } from '@layerquant/fixtures';
import { inspectModel, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { findShards, openModelFiles, readTokenizer, summarizeModel, type ModelFiles } from '@layerquant/tensor-io/browser';
import { describe, expect, it } from 'vitest';
import { pickedFilesOf, pickedModelFiles } from './model-files.js';

/** The model of picked files, as the worker opens it: tensor-io's reader through the page's file-access port. */
async function openPicked(files: ModelFiles) {
  const shards = await findShards(files);
  const { config, checkpoint } = await openModelFiles(files, shards);
  return { ...checkpoint, summary: summarizeModel(files.name, config, checkpoint.tensors, shards.shards.length) };
}

/** The shipped model as a directory input hands it over: File objects with `<dir>/<name>` relative paths. */
function picked(dir: string, skip: (name: string) => boolean = () => false, change: (name: string, bytes: Uint8Array) => Uint8Array = (_, b) => b) {
  const files = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && !skip(e.name))
    .map((e) => {
      const file = new File([change(e.name, new Uint8Array(readFileSync(join(dir, e.name)))).slice()], e.name);
      Object.defineProperty(file, 'webkitRelativePath', { value: `llama-brown-26m/${e.name}` });
      return file;
    });
  const { name, files: list } = pickedFilesOf(files);
  return pickedModelFiles(name, list);
}

describe('a model directory read in the page (File API)', () => {
  it('has the facts `layerquant inspect` prints and the tensors tensor-io reads', async () => {
    const page = await openPicked(picked(shippedModelDir));
    const { dir: _dir, ...expected } = await inspectModel(shippedModelDir);
    const { dir, ...summary } = page.summary;
    expect(dir).toBe('llama-brown-26m');
    expect(summary).toEqual(expected);
    const node = await openCheckpoint(shippedModelDir);
    try {
      for (const name of ['model.embed_tokens.weight', 'model.layers.31.mlp.down_proj.weight', 'model.norm.weight']) {
        const [a, b] = [(await page.read(name)).data, (await node.read(name)).data];
        // Byte for byte (a deep equal of 2M floats is slow).
        expect(a.length).toBe(b.length);
        expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)), name).toBe(true);
      }
    } finally {
      await node.close();
    }
  });

  it('names the missing shard', async () => {
    const files = picked(shippedModelDir, (name) => name === 'model-00003-of-00004.safetensors');
    await expect(openPicked(files)).rejects.toThrow(MissingFileError);
    await expect(openPicked(files)).rejects.toThrow(/model-00003-of-00004\.safetensors/);
  });

  it('names a truncated shard', async () => {
    const files = picked(shippedModelDir, () => false, (name, bytes) => (name === 'model-00002-of-00004.safetensors' ? bytes.subarray(0, bytes.length - 1000) : bytes));
    await expect(openPicked(files)).rejects.toThrow(SafetensorsFormatError);
    await expect(openPicked(files)).rejects.toThrow(/model-00002-of-00004\.safetensors.*truncated/);
  });

  it('tokenizes the picked tokenizer.json as the CLI does', async () => {
    const text = 'Call me Ishmael. Some years ago -- never mind how long precisely -- having little or no money in my purse,\n\nI thought I would sail.';
    const tokenizer = await readTokenizer(picked(shippedModelDir));
    const node = await loadTokenizer(shippedModelDir);
    const ids = tokenizer.encode(text);
    expect(ids).toEqual(node.encode(text));
    expect(tokenizer.decode(ids)).toBe(node.decode(ids));
  });
});
