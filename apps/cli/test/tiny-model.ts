import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { bin } from './run-cli.js';
import { writeWordText } from './word-text.js';

/** A tiny random Llama with its own text and statistics: what the CLI's mechanics tests run on. */
export interface TinyModel {
  /** The model directory (safetensors, config, tokenizer). */
  readonly dir: string;
  /** A plain word text, for calibration and evaluation. */
  readonly text: string;
  /** `layerquant sensitivity`'s output for the model on `text`: fnorm.csv, sensitivity.csv, kurtosis.csv. */
  readonly stats: string;
  /**
   * Evaluation flags on `text`: 16 windows of 256 tokens, so a cell takes long enough (hundreds of ms) for the
   * tests that stop a process in the middle of one, and is still a small fraction of the shipped model's cost.
   */
  readonly evaluation: readonly string[];
}

let made: Promise<TinyModel> | undefined;

/**
 * Writes the model, text and statistics once per test file. The model has 4 layers and rows of 128, so every config
 * of the paper's ladder (group sizes up to 128) divides them; 512 positions, so calibration blocks of that length
 * fit. Statistics, grids and the queue behave on it as on the shipped model (the same code runs at any size); what
 * needs the shipped model's numbers (the PyTorch and authors' oracles) is tested on the shipped model elsewhere.
 */
export function tinyModel(): Promise<TinyModel> {
  made ??= (async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'cli-tiny-model-'));
    const dir = join(scratch, 'tiny-llama');
    const text = join(scratch, 'words.txt');
    const stats = join(scratch, 'stats');
    await writeModelDirectory(dir, tinyConfig({ hiddenSize: 128, intermediateSize: 256, headDim: 32, numLayers: 4, maxPositionEmbeddings: 512 }), { seed: 11 });
    writeWordText(text, 6000);
    const measured = await bin('sensitivity', dir, '--calib', text, '--blocks', '1', '--seqlen', '64', '--out', stats);
    expect(measured.code, measured.stderr).toBe(0);
    return { dir, text, stats, evaluation: ['--text', text, '--seqlen', '256', '--max-tokens', '4096'] };
  })();
  return made;
}
