import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MissingFileError, InvalidDataError } from '@layerquant/core';
import { llama2PaperDir, shippedOraclesDir } from '@layerquant/fixtures';
import { afterAll, describe, expect, it } from 'vitest';
import { loadStatsDirectory } from './node.js';
import { formatFnormCsv, formatKurtosisCsv, formatSensitivityCsv, sensiBoostAllocator, type ModelStats } from './index.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-allocators-'));

/** The tables of `stats` in their CSV layouts under the standard names (what `layerquant sensitivity` writes). */
function writeTables(dir: string, stats: ModelStats): void {
  mkdirSync(dir, { recursive: true });
  if (stats.fnorm) writeFileSync(join(dir, 'fnorm.csv'), formatFnormCsv(stats.fnorm));
  if (stats.sensitivity) writeFileSync(join(dir, 'sensitivity.csv'), formatSensitivityCsv(stats.sensitivity));
  if (stats.kurtosis) writeFileSync(join(dir, 'kurtosis.csv'), formatKurtosisCsv(stats.kurtosis));
}
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('loadStatsDirectory', () => {
  it('reads a paper-data directory and the shipped oracles directory', async () => {
    const paper = await loadStatsDirectory(llama2PaperDir);
    expect(paper.fnorm!.rows).toHaveLength(2688);
    expect(paper.sensitivity!.rows).toHaveLength(1536);
    expect(paper.kurtosis).toBeUndefined();
    const shipped = await loadStatsDirectory(shippedOraclesDir);
    expect(shipped.sensitivity!.rows).toHaveLength(128);
  });
  it('round-trips through the CSV layouts, and allocations come out the same', async () => {
    const paper = await loadStatsDirectory(llama2PaperDir);
    const dir = join(scratch, 'stats');
    writeTables(dir, paper);
    expect(readdirSync(dir).sort()).toEqual(['fnorm.csv', 'sensitivity.csv']);
    const again = await loadStatsDirectory(dir);
    expect(again.fnorm).toEqual(paper.fnorm);
    expect(again.sensitivity).toEqual(paper.sensitivity);
    const a = sensiBoostAllocator.allocate(paper, { budget: 3.25, topM: 0 });
    const b = sensiBoostAllocator.allocate(again, { budget: 3.25, topM: 0 });
    expect(b.matrices).toEqual(a.matrices);
  });
  it('accepts the authors\' per-model names when alone', async () => {
    const dir = join(scratch, 'authors');
    writeTables(dir, await loadStatsDirectory(shippedOraclesDir));
    const { renameSync } = await import('node:fs');
    renameSync(join(dir, 'fnorm.csv'), join(dir, 'fnorm-llama-brown-26m.csv'));
    expect((await loadStatsDirectory(dir)).fnorm!.rows).toHaveLength(2688);
  });
  it('names the directory or the file and line when something is wrong', async () => {
    await expect(loadStatsDirectory(join(scratch, 'nope'))).rejects.toThrow(MissingFileError);
    const empty = join(scratch, 'empty');
    writeTables(empty, {});
    await expect(loadStatsDirectory(empty)).rejects.toThrow(/holds no statistics/);
    const bad = join(scratch, 'bad');
    writeTables(bad, {});
    writeFileSync(join(bad, 'sensitivity.csv'), 'dataset,part,model,nbits,group_size,layer,sensitivity\npileval,attn_in,m,4,64,0,oops\n');
    const error = await loadStatsDirectory(bad).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidDataError);
    expect((error as Error).message).toContain(`${join(bad, 'sensitivity.csv')}:2`);
  });
});
