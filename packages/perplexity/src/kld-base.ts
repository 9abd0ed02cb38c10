import { InvalidDataError, LayerquantError, MissingFileError } from '@layerquant/core';
import { writeFileAtomic } from '@layerquant/tensor-io';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join, resolve } from 'node:path';
import { checkSameWindows, forEachWindowLogits, scoredRows, type KldBaseReader, type LogitsModel } from './kld-evaluation.js';
import { PerplexitySums, windowInputs, type PerplexityOptions, type PerplexityResult } from './perplexity.js';

/**
 * The base model's logits stored once and reused (llama.cpp's `--kl-divergence-base`): every scored position of
 * every window, float32 exactly as the model gave them, written window by window (never the whole text in memory)
 * to a temporary name and renamed when complete. The header records what the base was computed for (content hashes
 * of the model, its tokenizer and the token ids, and the window settings); a base is only read for the same key,
 * and any other is refused with a KldBaseMismatchError naming what differs.
 *
 * Layout: 8 bytes magic `LQKLDB01`, u32 little-endian header length, the header (UTF-8 JSON), then the rows of
 * window 0, window 1, ... each [scored positions, vocab] float32 little-endian.
 */

const MAGIC = 'LQKLDB01';
const FORMAT = 'layerquant-kld-base';
const ENCODING = 'f32-logits';

/** The window settings a base was computed with (what changes which tokens are scored with which context). */
export interface KldWindowSettings {
  readonly protocol: 'windows' | 'sliding';
  /** windows: seqlen; sliding: max_length. */
  readonly seqlen: number;
  /** sliding: stride; windows: seqlen. */
  readonly stride: number;
  /** The text was cut to this many tokens first (null: the whole text). */
  readonly maxTokens: number | null;
}

/** What a base is keyed by: content hashes and the window settings. */
export interface KldBaseKey {
  /** Content hash of the base (float) model's directory. */
  readonly model: string;
  /** Content hash of the tokenizer that produced the token ids. */
  readonly tokenizer: string;
  /** sha256 of the token ids (int32 little-endian), the whole text's (`tokensHash`). */
  readonly tokens: string;
  readonly window: KldWindowSettings;
}

interface KldBaseHeader {
  readonly format: typeof FORMAT;
  readonly version: 1;
  readonly encoding: typeof ENCODING;
  readonly vocab: number;
  readonly key: KldBaseKey;
  /** [begin, end, scoreFrom] of every window. */
  readonly windows: readonly (readonly [number, number, number])[];
  /** Stored rows (scored positions) in all. */
  readonly rows: number;
}

/** A base whose key differs from the evaluation's: another model, tokenizer, text or window setting. */
export class KldBaseMismatchError extends LayerquantError {
  constructor(
    readonly file: string,
    readonly field: string,
    expected: string,
    found: string,
  ) {
    super(
      'KLD_BASE_MISMATCH',
      `${file}: this KL-divergence base was computed for ${field} ${found}, not ${expected} (this evaluation's); a base is only reused for the same model, tokenizer, text and window settings. Compute a new base (remove this file, or give another --kld-cache directory)`,
    );
  }
}

/** sha256 of token ids as int32 little-endian. */
export function tokensHash(ids: readonly number[]): string {
  const bytes = new Uint8Array(4 * ids.length);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < ids.length; i++) view.setInt32(4 * i, ids[i]!, true);
  return createHash('sha256').update(bytes).digest('hex');
}

/** The window settings of perplexity options, with their defaults filled in. */
export function windowSettings(options: PerplexityOptions): KldWindowSettings {
  const protocol = options.protocol ?? 'windows';
  const seqlen = protocol === 'windows' ? (options.seqlen ?? 512) : (options.maxLength ?? 1024);
  return Object.freeze({
    protocol,
    seqlen,
    stride: protocol === 'windows' ? seqlen : (options.stride ?? Math.min(512, seqlen)),
    maxTokens: options.maxTokens ?? null,
  });
}

/** The key of an evaluation: the caller's content hashes of the model and tokenizer, the tokens' and the windows'. */
export function kldBaseKey(hashes: { readonly model: string; readonly tokenizer: string }, ids: readonly number[], options: PerplexityOptions): KldBaseKey {
  return Object.freeze({ model: hashes.model, tokenizer: hashes.tokenizer, tokens: tokensHash(ids), window: windowSettings(options) });
}

/** The file name of a key in a cache directory: `kld-base-<first 16 hex digits of the key's sha256>.bin`. */
export function kldBaseFileName(key: KldBaseKey): string {
  const canonical = JSON.stringify([key.model, key.tokenizer, key.tokens, key.window.protocol, key.window.seqlen, key.window.stride, key.window.maxTokens]);
  return `kld-base-${createHash('sha256').update(canonical).digest('hex').slice(0, 16)}.bin`;
}

function checkEndianness(): void {
  if (endianness() !== 'LE') throw new LayerquantError('UNSUPPORTED_PLATFORM', 'KL-divergence base files are little-endian float32; this machine is big-endian');
}

export interface WrittenKldBase {
  readonly path: string;
  readonly bytes: number;
  /** The base model's perplexity from the same run (what `perplexity` gives it). */
  readonly perplexity: PerplexityResult;
}

/**
 * Runs the base model over the windows of `ids` and writes its logits of every scored position to `path`, one window
 * at a time (atomically: a temporary name renamed when complete; an interrupted run leaves nothing).
 */
export async function writeKldBase(
  path: string,
  model: LogitsModel,
  vocab: number,
  ids: readonly number[],
  hashes: { readonly model: string; readonly tokenizer: string },
  options: PerplexityOptions = {},
): Promise<WrittenKldBase> {
  checkEndianness();
  const file = resolve(path);
  const windows = windowInputs(ids, options);
  const rowCounts = windows.plan.windows.map((w) => scoredRows(w).count);
  const header: KldBaseHeader = {
    format: FORMAT,
    version: 1,
    encoding: ENCODING,
    vocab,
    key: kldBaseKey(hashes, ids, options),
    windows: windows.plan.windows.map((w) => [w.begin, w.end, w.scoreFrom] as const),
    rows: rowCounts.reduce((a, b) => a + b, 0),
  };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const prefix = new Uint8Array(12);
  prefix.set(new TextEncoder().encode(MAGIC));
  new DataView(prefix.buffer).setUint32(8, headerBytes.length, true);
  const sums = new PerplexitySums(windows.plan, options);
  let bytes = 0;
  await writeFileAtomic(file, async (handle) => {
    await handle.write(prefix, 0, prefix.length, 0);
    await handle.write(headerBytes, 0, headerBytes.length, 12);
    let position = 12 + headerBytes.length;
    await forEachWindowLogits(model, windows, options, async (index, window, scores) => {
      const { first, count } = scoredRows(window);
      if (scores.logits.length !== (window.end - window.begin) * vocab) {
        throw new InvalidDataError('model', `gave ${scores.logits.length} logits for a window of ${window.end - window.begin} tokens, not ${vocab} per token`);
      }
      const rows = scores.logits.subarray(first * vocab, (first + count) * vocab);
      const data = new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
      await handle.write(data, 0, data.length, position);
      position += data.length;
      sums.add(index, scores.nll);
    });
    bytes = position;
  });
  return Object.freeze({ path: file, bytes, perplexity: sums.result() });
}

/** An opened base file: a KldBaseReader over its windows. */
export interface KldBaseFile extends KldBaseReader {
  readonly path: string;
  readonly key: KldBaseKey;
  readonly bytes: number;
  close(): Promise<void>;
}

async function readExactly(handle: FileHandle, length: number, position: number, file: string, what: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  const { bytesRead } = await handle.read(out, 0, length, position);
  if (bytesRead !== length) throw new InvalidDataError(file, `is truncated: ${what} needs ${length} bytes at offset ${position}, only ${bytesRead} are there; compute the base again`);
  return out;
}

function checkKey(file: string, found: KldBaseKey, expected: KldBaseKey): void {
  const fields: [string, unknown, unknown][] = [
    ['model (content hash)', found.model, expected.model],
    ['tokenizer (content hash)', found.tokenizer, expected.tokenizer],
    ['text (hash of the token ids)', found.tokens, expected.tokens],
    ['window protocol', found.window?.protocol, expected.window.protocol],
    ['window length (--seqlen)', found.window?.seqlen, expected.window.seqlen],
    ['stride', found.window?.stride, expected.window.stride],
    ['--max-tokens', found.window?.maxTokens, expected.window.maxTokens],
  ];
  for (const [field, a, b] of fields) {
    if (a !== b) throw new KldBaseMismatchError(file, field, String(b ?? 'none'), String(a ?? 'none'));
  }
}

/**
 * Opens a base file for an evaluation: its header must say it was computed for `key` (else KldBaseMismatchError
 * naming the field), and the file must hold every row the header promises (else a typed error).
 */
export async function openKldBase(path: string, key: KldBaseKey): Promise<KldBaseFile> {
  checkEndianness();
  const file = resolve(path);
  if (!existsSync(file)) throw new MissingFileError(file, 'no KL-divergence base here; `layerquant eval <model> --kld-base <float-model-dir>` computes and caches one (or writeKldBase)');
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const prefix = await readExactly(handle, 12, 0, file, 'the file header');
    if (new TextDecoder().decode(prefix.subarray(0, 8)) !== MAGIC) throw new InvalidDataError(file, `is not a layerquant KL-divergence base (no ${MAGIC} magic)`);
    const headerLength = new DataView(prefix.buffer).getUint32(8, true);
    if (12 + headerLength > size) throw new InvalidDataError(file, `is truncated: its header says ${headerLength} bytes, the file has ${size}; compute the base again`);
    let header: KldBaseHeader;
    try {
      header = JSON.parse(new TextDecoder().decode(await readExactly(handle, headerLength, 12, file, 'the header'))) as KldBaseHeader;
    } catch (error) {
      if (error instanceof LayerquantError) throw error;
      throw new InvalidDataError(file, 'has a header that is not JSON; compute the base again');
    }
    if (header.format !== FORMAT || header.version !== 1 || header.encoding !== ENCODING) {
      throw new InvalidDataError(file, `is a ${String(header.format)} version ${String(header.version)} (${String(header.encoding)}) file; this layerquant reads ${FORMAT} version 1 (${ENCODING})`);
    }
    if (!Number.isInteger(header.vocab) || header.vocab < 1 || !Array.isArray(header.windows)) throw new InvalidDataError(file, 'has a header without a vocabulary size or windows; compute the base again');
    checkKey(file, header.key, key);
    const offsets: number[] = [];
    let position = 12 + headerLength;
    for (const [begin, end, scoreFrom] of header.windows) {
      offsets.push(position);
      position += scoredRows({ begin, end, scoreFrom, weight: 0 }).count * header.vocab * 4;
    }
    if (position !== size) {
      throw new InvalidDataError(file, `holds ${size} bytes where its header promises ${position} (${header.windows.length} windows of ${header.vocab}-entry float32 rows); it is truncated or corrupt, compute the base again`);
    }
    return {
      path: file,
      key: header.key,
      vocab: header.vocab,
      windows: header.windows,
      bytes: size,
      async window(index) {
        const window = header.windows[index];
        if (!window) throw new InvalidDataError(file, `has no window ${index} (it holds ${header.windows.length})`);
        const rows = scoredRows({ begin: window[0], end: window[1], scoreFrom: window[2], weight: 0 }).count;
        const out = new Float32Array(rows * header.vocab);
        const { bytesRead } = await handle.read(new Uint8Array(out.buffer), 0, out.byteLength, offsets[index]!);
        if (bytesRead !== out.byteLength) throw new InvalidDataError(file, `is truncated at window ${index}; compute the base again`);
        return out;
      },
      close: () => handle.close(),
    };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** A base from a cache directory, or computed into it when it has none for this key. */
export interface CachedKldBase {
  readonly base: KldBaseFile;
  /** Whether it was computed now (false: reused). */
  readonly computed: boolean;
  /** The base model's perplexity when it was computed now. */
  readonly perplexity?: PerplexityResult;
}

/**
 * The base for an evaluation from `cacheDir` (named by its key, `kldBaseFileName`), computed with the model that
 * `openBaseModel` opens only when no base of this key is there. The model is disposed of after writing.
 */
export async function cachedKldBase(
  cacheDir: string,
  ids: readonly number[],
  hashes: { readonly model: string; readonly tokenizer: string },
  options: PerplexityOptions,
  openBaseModel: () => Promise<{ model: LogitsModel; vocab: number; dispose(): Promise<void> }>,
): Promise<CachedKldBase> {
  const key = kldBaseKey(hashes, ids, options);
  const path = join(resolve(cacheDir), kldBaseFileName(key));
  if (existsSync(path)) return { base: await openKldBase(path, key), computed: false };
  await mkdir(resolve(cacheDir), { recursive: true });
  const opened = await openBaseModel();
  let written: WrittenKldBase;
  try {
    written = await writeKldBase(path, opened.model, opened.vocab, ids, hashes, options);
  } finally {
    await opened.dispose();
  }
  return { base: await openKldBase(path, key), computed: true, perplexity: written.perplexity };
}

/** Checks that a base was computed on the windows of an evaluation (used before a long run). */
export function checkBaseWindows(base: KldBaseReader, ids: readonly number[], options: PerplexityOptions): void {
  checkSameWindows(base.windows, windowInputs(ids, options).plan.windows);
}
