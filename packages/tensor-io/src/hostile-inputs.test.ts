import { InvalidDataError, LayerquantError, MissingFileError, OutputDirectoryError } from '@layerquant/core';
import { shippedModelDir } from '@layerquant/fixtures';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkInputFile, loadDecoderConfig, loadTokenizer, openCheckpoint, openOutputDirectory, readTextFile, writeSafetensors, writeTextAtomic } from './index.js';

/**
 * Paths and files a careful user or a hostile input hands over (issue 27): each is refused with a typed error naming
 * the path, before anything opens it (a FIFO would block the read forever; a binary file would be tokenized into a
 * number; a tokenizer of another model would read past the embedding).
 */

const root = mkdtempSync(join(tmpdir(), 'lq-hostile-'));
const fifo = join(root, 'fifo');
execFileSync('mkfifo', [fifo]);
const file = join(root, 'plain.txt');
writeFileSync(file, 'plain text\n');
symlinkSync(join(root, 'nowhere'), join(root, 'dangling'));
symlinkSync(join(root, 'loop-b'), join(root, 'loop-a'));
symlinkSync(join(root, 'loop-a'), join(root, 'loop-b'));

describe('checkInputFile and readTextFile', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['a missing path', join(root, 'absent'), /absent: does not exist/],
    ['a dangling link', join(root, 'dangling'), /dangling: is a dangling symbolic link to .*nowhere/],
    ['a link loop', join(root, 'loop-a'), /loop-a: is a symbolic link loop/],
    ['a directory', root, /: is a directory, not a file/],
    ['a FIFO', fifo, /fifo: is a FIFO \(named pipe\), not a regular file/],
    ['/dev/null', '/dev/null', /\/dev\/null: is a device, not a regular file/],
  ];
  for (const [label, path, message] of cases) {
    it(`refuses ${label}, naming it`, async () => {
      expect(() => checkInputFile(path, 'a text')).toThrow(LayerquantError);
      expect(() => checkInputFile(path, 'a text')).toThrow(message);
      await expect(readTextFile(path, 'a text')).rejects.toThrow(message);
    });
  }
  it('reads UTF-8 text and refuses binary files (NUL bytes, invalid UTF-8)', async () => {
    expect(await readTextFile(file, 'a text')).toBe('plain text\n');
    const binary = join(root, 'binary.bin');
    writeFileSync(binary, Buffer.from([0x41, 0x42, 0x00, 0x43]));
    await expect(readTextFile(binary, 'a text')).rejects.toThrow(/binary\.bin: holds a NUL byte at offset 2: it is a binary file/);
    const latin1 = join(root, 'latin1.txt');
    writeFileSync(latin1, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]));
    await expect(readTextFile(latin1, 'a text')).rejects.toThrow(/latin1\.txt: is not valid UTF-8/);
  });
});

describe('output files', () => {
  it('a directory, a FIFO, a missing or non-directory parent are refused before anything is written, naming the path', async () => {
    await expect(writeTextAtomic(root, 'x')).rejects.toThrow(OutputDirectoryError);
    await expect(writeTextAtomic(root, 'x')).rejects.toThrow(/: is a directory; give the path of a file to write/);
    await expect(writeTextAtomic(fifo, 'x')).rejects.toThrow(/fifo: is not a regular file/);
    await expect(writeTextAtomic(join(root, 'no-such-dir', 'a.json'), 'x')).rejects.toThrow(/a\.json: its directory .*no-such-dir does not exist/);
    await expect(writeTextAtomic(join(file, 'a.json'), 'x')).rejects.toThrow(/plain\.txt is not a directory/);
    await writeTextAtomic(join(root, 'written.json'), '{}');
    expect(readFileSync(join(root, 'written.json'), 'utf8')).toBe('{}');
  });

  it('an output directory under /proc or /sys is refused at once (Node\'s recursive mkdir would loop forever on /proc)', async () => {
    await expect(openOutputDirectory('/proc/layerquant-out', 'test')).rejects.toThrow(/layerquant-out: --out cannot be created/);
    await expect(openOutputDirectory('/sys/layerquant-out/sub', 'test')).rejects.toThrow(OutputDirectoryError);
  });
});

describe('model directories and their files', () => {
  const weights = [{ name: 'w', dtype: 'F32' as const, shape: [2], data: new Float32Array([1, 2]) }];

  it('a model.safetensors that is a directory, a dangling link or a link loop; a model path that is /dev/null', async () => {
    const asDirectory = join(root, 'dir-weights');
    mkdirSync(join(asDirectory, 'model.safetensors'), { recursive: true });
    await expect(openCheckpoint(asDirectory)).rejects.toThrow(/dir-weights\/model\.safetensors: is a directory, not a file/);
    const dangling = join(root, 'dangling-weights');
    mkdirSync(dangling);
    symlinkSync(join(root, 'gone.safetensors'), join(dangling, 'model.safetensors'));
    await expect(openCheckpoint(dangling)).rejects.toThrow(/model\.safetensors: is a dangling symbolic link/);
    const loop = join(root, 'loop-weights');
    mkdirSync(loop);
    symlinkSync(join(loop, 'model.safetensors'), join(loop, 'model.safetensors'));
    await expect(openCheckpoint(loop)).rejects.toThrow(/model\.safetensors: is a symbolic link loop/);
    await expect(openCheckpoint('/dev/null')).rejects.toThrow(/\/dev\/null: is a device, not a file or directory/);
    await expect(loadDecoderConfig(fifo)).rejects.toThrow(InvalidDataError);
    await expect(loadDecoderConfig(fifo)).rejects.toThrow(/fifo: is a FIFO \(named pipe\), not a file or directory/);
  });

  it('refuses a directory holding two models\' weights: model.safetensors beside an index, stale shards, or beside other shards', async () => {
    const both = join(root, 'two-sets');
    mkdirSync(both);
    await writeSafetensors(join(both, 'model-00001-of-00001.safetensors'), weights);
    writeFileSync(join(both, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { w: 'model-00001-of-00001.safetensors' } }));
    expect((await openCheckpoint(both)).files).toHaveLength(1);
    await writeSafetensors(join(both, 'model.safetensors'), weights);
    await expect(openCheckpoint(both)).rejects.toThrow(/two-sets\/model\.safetensors\.index\.json: does not name model\.safetensors beside it; the directory holds the weights of two models/);
    const single = join(root, 'single-and-shard');
    mkdirSync(single);
    await writeSafetensors(join(single, 'model.safetensors'), weights);
    await writeSafetensors(join(single, 'model-00002-of-00004.safetensors'), weights);
    await expect(openCheckpoint(single)).rejects.toThrow(/single-and-shard\/model\.safetensors: has other safetensors files beside it \(model-00002-of-00004\.safetensors\)/);
  });
});

describe('tokenizer files', () => {
  /** A directory with the shipped tokenizer files and config.json, then `edit` applied. */
  const tokenizerDir = (name: string, edit: (dir: string) => void): string => {
    const dir = join(root, name);
    mkdirSync(dir);
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'config.json']) copyFileSync(join(shippedModelDir, f), join(dir, f));
    edit(dir);
    return dir;
  };
  const tokenizerJson = () => JSON.parse(readFileSync(join(shippedModelDir, 'tokenizer.json'), 'utf8')) as { added_tokens: Array<Record<string, unknown>> };

  const cases: Array<[string, (dir: string) => void, RegExp]> = [
    ['tokenizer_config.json missing', (d) => execFileSync('rm', [join(d, 'tokenizer_config.json')]), /tokenizer_config\.json: not found/],
    ['tokenizer.json empty', (d) => writeFileSync(join(d, 'tokenizer.json'), ''), /tokenizer\.json: is empty/],
    ['tokenizer.json truncated', (d) => writeFileSync(join(d, 'tokenizer.json'), readFileSync(join(shippedModelDir, 'tokenizer.json')).subarray(0, 5000)), /tokenizer\.json: is not valid JSON/],
    ['tokenizer.json not an object', (d) => writeFileSync(join(d, 'tokenizer.json'), '[1, 2]'), /tokenizer\.json: is not a JSON object/],
    ['tokenizer.json without a vocabulary', (d) => writeFileSync(join(d, 'tokenizer.json'), '{"model": {"type": "BPE"}}'), /tokenizer\.json: has no "model\.vocab"/],
    ['tokenizer.json a FIFO', (d) => (execFileSync('rm', [join(d, 'tokenizer.json')]), execFileSync('mkfifo', [join(d, 'tokenizer.json')])), /tokenizer\.json: is a FIFO/],
    ['tokenizer.json a directory', (d) => (execFileSync('rm', [join(d, 'tokenizer.json')]), mkdirSync(join(d, 'tokenizer.json'))), /tokenizer\.json: is a directory/],
    ['an added token beyond the embedding rows', (d) => {
      const json = tokenizerJson();
      json.added_tokens.push({ id: 8192, content: '<|extra|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
      writeFileSync(join(d, 'tokenizer.json'), JSON.stringify(json));
    }, /tokenizer\.json: token "<\|extra\|>" has id 8192, but the model has 8192 embedding rows/],
    ['a token id that is not an integer', (d) => {
      const json = tokenizerJson();
      json.added_tokens[0]!.id = 'zero';
      writeFileSync(join(d, 'tokenizer.json'), JSON.stringify(json));
    }, /tokenizer\.json: token "<\|endoftext\|>" has id "zero"/],
  ];
  for (const [label, edit, message] of cases) {
    it(`refuses ${label}, naming the file`, async () => {
      const dir = tokenizerDir(label.replace(/\W+/g, '-'), edit);
      const error = await loadTokenizer(dir).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(LayerquantError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message.startsWith(dir)).toBe(true);
    });
  }

  it('a tokenizer whose vocabulary fits the model loads; an explicit vocabSize is checked too', async () => {
    const dir = tokenizerDir('fits', () => undefined);
    expect((await loadTokenizer(dir)).encode('The jury said').length).toBeGreaterThan(0);
    await expect(loadTokenizer(dir, { vocabSize: 4096 })).rejects.toThrow(/has id 8191, but the model has 4096 embedding rows/);
    await expect(loadTokenizer(join(root, 'absent-model'))).rejects.toThrow(MissingFileError);
  });
});
