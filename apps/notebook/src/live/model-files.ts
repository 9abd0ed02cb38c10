import { MissingFileError } from '@layerquant/core';
import type { ModelFiles } from '@layerquant/tensor-io/browser';

// The page's two ways to reach a model directory, as @layerquant/tensor-io's file-access port (ModelFiles): served
// over HTTP (the shipped model) or picked with a directory input (a reader's own model; nothing leaves the machine).

/** What a worker is given to open a model: a served directory, or the picked files (File objects clone into workers). */
export type ModelFilesSpec =
  | { readonly kind: 'url'; readonly base: string; readonly name: string }
  | { readonly kind: 'picked'; readonly name: string; readonly files: readonly { readonly path: string; readonly file: File }[] };

/** A directory served over HTTP: each file is fetched once, whole, and kept (the shipped model is 52 MB). */
export function servedModelFiles(base: string, name: string, files: readonly string[]): ModelFiles {
  const root = base.endsWith('/') ? base : `${base}/`;
  const cache = new Map<string, Promise<Uint8Array>>();
  const fetchBytes = (path: string) => {
    let bytes = cache.get(path);
    if (!bytes) {
      bytes = (async () => {
        const response = await fetch(`${root}${path}`);
        if (!response.ok) throw new MissingFileError(`${root}${path}`, `could not be loaded (HTTP ${response.status}); serve the model directory with the page`);
        return new Uint8Array(await response.arrayBuffer());
      })();
      cache.set(path, bytes);
    }
    return bytes;
  };
  return {
    name,
    list: () => files,
    has: (path) => files.includes(path),
    size: async (path) => (await fetchBytes(path)).byteLength,
    bytes: async (path, start = 0, end) => {
      const all = await fetchBytes(path);
      return all.subarray(start, end ?? all.byteLength);
    },
    text: async (path) => new TextDecoder().decode(await fetchBytes(path)),
  };
}

/**
 * Files picked with `<input type="file" webkitdirectory>`: `webkitRelativePath` is `<dir>/<path>`; the top folder
 * is dropped so paths are relative to the model directory. Reads slice the File, so a shard is never read whole
 * unless a tensor needs it.
 */
export function pickedModelFiles(name: string, files: readonly { readonly path: string; readonly file: File }[]): ModelFiles {
  const byPath = new Map(files.map((f) => [f.path, f.file]));
  const fileOf = (path: string) => {
    const file = byPath.get(path);
    if (!file) throw new MissingFileError(`${name}/${path}`, 'is not in the chosen directory; pick the folder that holds config.json and the safetensors files');
    return file;
  };
  return {
    name,
    list: () => [...byPath.keys()],
    has: (path) => byPath.has(path),
    size: async (path) => fileOf(path).size,
    bytes: async (path, start = 0, end) => {
      const file = fileOf(path);
      return new Uint8Array(await file.slice(start, end ?? file.size).arrayBuffer());
    },
    text: async (path) => fileOf(path).text(),
  };
}

/** Paths relative to the picked directory from a FileList of a directory input. */
export function pickedFilesOf(list: ArrayLike<File>): { name: string; files: { path: string; file: File }[] } {
  const files: { path: string; file: File }[] = [];
  let name = '';
  for (let i = 0; i < list.length; i++) {
    const file = list[i]!;
    const relative = file.webkitRelativePath || file.name;
    const slash = relative.indexOf('/');
    if (!name) name = slash > 0 ? relative.slice(0, slash) : 'model';
    files.push({ path: slash > 0 ? relative.slice(slash + 1) : relative, file });
  }
  return { name, files };
}

/** A served directory cannot be listed: it carries `manifest.json` (`{ "files": [...] }`, written by the page's build). */
async function servedManifest(base: string): Promise<string[]> {
  const url = `${base.endsWith('/') ? base : `${base}/`}manifest.json`;
  const response = await fetch(url);
  if (!response.ok) throw new MissingFileError(url, `could not be loaded (HTTP ${response.status}); serve the model directory with its manifest.json beside the page`);
  const json = (await response.json()) as { files?: unknown };
  if (!Array.isArray(json.files)) throw new MissingFileError(url, 'has no "files" list');
  return json.files.map(String);
}

/** The files a worker was given, as the port tensor-io reads models through. */
export async function modelFilesOf(spec: ModelFilesSpec): Promise<ModelFiles> {
  return spec.kind === 'url' ? servedModelFiles(spec.base, spec.name, await servedManifest(spec.base)) : pickedModelFiles(spec.name, spec.files);
}
