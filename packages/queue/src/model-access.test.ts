import { InvalidOptionError, MissingFileError } from '@layerquant/core';
import { modelContentHash } from '@layerquant/tensor-io';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelMismatchError } from './jobs.js';
import { ModelNotServedError, resolveJobModel, servedModels, servedPath } from './model-access.js';

/** A directory holding a model's file set (the hash reads every byte of it; no tensor is parsed here). */
function modelDir(parent: string, name: string, weights: string): string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), '{"model_type":"llama"}');
  writeFileSync(join(dir, 'model.safetensors'), weights);
  return dir;
}

describe('the models a queue worker serves', () => {
  let base: string;
  let cache: string;
  let served: string;
  let root: string;
  let outside: string;
  const savedCache = process.env.LAYERQUANT_CACHE_DIR;
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'served-'));
    // The content-hash cache on disk records every file hashed: how the tests see what was read.
    cache = join(base, 'cache');
    process.env.LAYERQUANT_CACHE_DIR = cache;
    served = modelDir(base, 'served', 'weights A');
    root = join(base, 'root');
    modelDir(root, 'm1', 'weights B');
    modelDir(join(root, 'team'), 'm2', 'weights C');
    outside = modelDir(base, 'outside', 'weights D');
    symlinkSync(outside, join(root, 'escape'));
    symlinkSync(join(root, 'm1'), join(base, 'link-into-root'));
  });
  afterAll(() => {
    if (savedCache === undefined) delete process.env.LAYERQUANT_CACHE_DIR;
    else process.env.LAYERQUANT_CACHE_DIR = savedCache;
  });
  /** Paths whose digest the disk cache holds. */
  const hashedPaths = (): string[] => {
    try {
      return readdirSync(join(cache, 'content-hashes')).map((f) => (JSON.parse(readFileSync(join(cache, 'content-hashes', f), 'utf8')) as { path: string }).path);
    } catch {
      return [];
    }
  };

  it('needs --model or --model-root, each an existing directory', () => {
    expect(() => servedModels({})).toThrow(InvalidOptionError);
    expect(() => servedModels({})).toThrow(/a worker serves only the models it is started for: give --model <dir>/);
    expect(() => servedModels({ models: [join(base, 'nope')] })).toThrow(MissingFileError);
    expect(() => servedModels({ models: [join(base, 'nope')] })).toThrow(new RegExp(`${join(base, 'nope')}`));
    expect(() => servedModels({ roots: [join(served, 'config.json')] })).toThrow(/option "--model-root": .*config\.json is a file, not a directory/);
  });

  it('compares real paths: .. and links cannot leave a root, the root itself is not a model', () => {
    const s = servedModels({ models: [served], roots: [root] });
    expect(servedPath(s, served)).toBe(s.models[0]);
    expect(servedPath(s, join(root, 'm1'))).toBe(join(s.roots[0]!, 'm1'));
    expect(servedPath(s, join(root, 'team', 'm2'))).toBe(join(s.roots[0]!, 'team', 'm2'));
    expect(servedPath(s, join(base, 'link-into-root'))).toBe(join(s.roots[0]!, 'm1'));
    for (const path of [root, join(root, '..', 'outside'), join(root, 'escape'), join(root, 'm1', '..', '..', 'outside'), '/etc', 'served', join(root, 'missing'), `${root}-sibling`]) {
      expect(servedPath(s, path), path).toBeUndefined();
    }
  });

  it('refuses a job naming another path before any file of it is read; serves a copy by its content hash', async () => {
    const s = servedModels({ models: [served], roots: [root] });
    const outsideHash = 'f'.repeat(64);
    for (const path of ['/etc', outside, join(root, 'escape'), join(root, '..', 'outside')]) {
      const job = { modelDir: path, modelHash: outsideHash };
      await expect(resolveJobModel(s, 'cell-0123456789abcdef', job)).rejects.toThrow(ModelNotServedError);
      await expect(resolveJobModel(s, 'cell-0123456789abcdef', job)).rejects.toThrow(
        new RegExp(`^job cell-0123456789abcdef: the model directory "${path.replace(/[.]/g, '\\.')}" is not one this worker serves \\(--model ${s.models[0]} \\(content hash [0-9a-f]{16}\\), --model-root ${s.roots[0]}\\)`),
      );
    }
    expect(hashedPaths().filter((p) => p.startsWith(outside) || p.startsWith('/etc'))).toEqual([]);
    expect(hashedPaths().length).toBeGreaterThan(0);
    // The job planned on another machine's path of the same model: served by the copy with its hash.
    const hash = await modelContentHash(served);
    await expect(resolveJobModel(s, 'j', { modelDir: '/coordinator/llama', modelHash: hash })).resolves.toEqual({ dir: s.models[0], hash });
    // A served path with another hash than the job's.
    await expect(resolveJobModel(s, 'j', { modelDir: join(root, 'm1'), modelHash: hash })).rejects.toThrow(ModelMismatchError);
    const m2 = await modelContentHash(join(root, 'team', 'm2'));
    await expect(resolveJobModel(s, 'j', { modelDir: join(root, 'team', 'm2'), modelHash: m2 })).resolves.toEqual({ dir: join(s.roots[0]!, 'team', 'm2'), hash: m2 });
  });
});
