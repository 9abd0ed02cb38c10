import { seededRandom, InvalidDataError, InvalidOptionError } from '@layerquant/core';

/** The slice of a tokenizer calibration needs (tensor-io's `Tokenizer` fits). */
export interface CalibrationTokenizer {
  encode(text: string): number[];
}

/**
 * How calibration text becomes token blocks.
 * - `in-order` (default; the oracles of the shipped model): the whole text tokenized once, the first
 *   `blocks * seqlen` tokens cut into consecutive blocks.
 * - `shuffled` (the authors' `get_calib_dataset`): lines shuffled with a seeded generator, each stripped and
 *   tokenized on its own, lines longer than `seqlen` tokens skipped, the rest concatenated and cut into blocks.
 *   The authors shuffle with Hugging Face `datasets` (numpy's PCG64); this uses core's seeded mulberry32 generator,
 *   so the same seed draws a different (equally random) order than theirs.
 */
export type CalibrationOrder = 'in-order' | 'shuffled';
export const CALIBRATION_ORDERS: readonly CalibrationOrder[] = Object.freeze(['in-order', 'shuffled']);

export interface CalibrationOptions {
  /** Number of blocks (default 128, the authors'); fewer when the text is short. */
  readonly blocks?: number;
  /** Tokens per block (default 512). */
  readonly seqlen?: number;
  readonly order?: CalibrationOrder;
  /** Seed of the `shuffled` order (default 42, the authors'). */
  readonly seed?: number;
  /** Name of the text for messages (a file path, `brown-calib`). */
  readonly source?: string;
}

/** Calibration tokens: `blocks` rows of `seqlen` ids, row-major. */
export interface CalibrationBlocks {
  readonly ids: Int32Array;
  readonly blocks: number;
  readonly seqlen: number;
}

export const DEFAULT_CALIBRATION_BLOCKS = 128;
export const DEFAULT_SEQLEN = 512;
export const DEFAULT_CALIBRATION_SEED = 42;

function checkSizes(blocks: number, seqlen: number): void {
  if (!Number.isInteger(blocks) || blocks < 1) throw new InvalidOptionError('blocks', `${blocks} must be a positive integer`);
  if (!Number.isInteger(seqlen) || seqlen < 2) throw new InvalidOptionError('seqlen', `${seqlen} must be an integer >= 2`);
}

/**
 * Cuts token ids into at most `blocks` consecutive blocks of `seqlen` (fewer when there are not enough
 * tokens; the remainder is dropped). Fewer than `seqlen` tokens is an error naming the source.
 */
export function cutCalibrationBlocks(ids: ArrayLike<number>, options: Pick<CalibrationOptions, 'blocks' | 'seqlen' | 'source'> = {}): CalibrationBlocks {
  const blocks = options.blocks ?? DEFAULT_CALIBRATION_BLOCKS;
  const seqlen = options.seqlen ?? DEFAULT_SEQLEN;
  checkSizes(blocks, seqlen);
  const available = Math.floor(ids.length / seqlen);
  if (available < 1) {
    throw new InvalidDataError(
      options.source ?? 'calibration text',
      `has ${ids.length} tokens, fewer than one block of ${seqlen}; give a longer text or a smaller --seqlen`,
    );
  }
  const count = Math.min(blocks, available);
  const out = new Int32Array(count * seqlen);
  for (let i = 0; i < out.length; i++) out[i] = ids[i]!;
  return { ids: out, blocks: count, seqlen };
}

/** core's one seeded generator (mulberry32), re-exported: shuffled calibration draws from it. */
export { seededRandom };

/** Fisher-Yates permutation of 0..n-1 from a seeded generator. */
export function seededPermutation(n: number, seed: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const random = seededRandom(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}

/** Token blocks of a calibration text (see `CalibrationOrder`). */
export function calibrationBlocks(text: string, tokenizer: CalibrationTokenizer, options: CalibrationOptions = {}): CalibrationBlocks {
  const source = options.source ?? 'calibration text';
  const order = options.order ?? 'in-order';
  const blocks = options.blocks ?? DEFAULT_CALIBRATION_BLOCKS;
  const seqlen = options.seqlen ?? DEFAULT_SEQLEN;
  checkSizes(blocks, seqlen);
  if (text.trim().length === 0) throw new InvalidDataError(source, 'is empty; calibration needs text');
  if (order === 'in-order') return cutCalibrationBlocks(tokenizer.encode(text), { blocks, seqlen, source });
  if (order !== 'shuffled') throw new InvalidOptionError('order', `"${String(order)}" is not one of ${CALIBRATION_ORDERS.join(', ')}`);

  const lines = text.split(/\r?\n/);
  const permutation = seededPermutation(lines.length, options.seed ?? DEFAULT_CALIBRATION_SEED);
  const wanted = blocks * seqlen;
  const ids: number[] = [];
  // Tokenize lines only until there are enough tokens: long texts stay cheap.
  for (const index of permutation) {
    const line = lines[index]!.trim();
    if (line.length === 0) continue;
    const encoded = tokenizer.encode(line);
    if (encoded.length === 0 || encoded.length > seqlen) continue;
    for (const id of encoded) ids.push(id);
    if (ids.length >= wanted) break;
  }
  return cutCalibrationBlocks(ids, { blocks, seqlen, source });
}
