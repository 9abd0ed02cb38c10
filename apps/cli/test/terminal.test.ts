import { shippedModelDir } from '@layerquant/fixtures';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { renderTable, wrapAtSpaces } from '../src/output.js';
import { binPath, cli } from './run-cli.js';
import { tinyModel } from './tiny-model.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-terminal-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const hasScript = existsSync('/usr/bin/script');

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs the built CLI in a pseudo-terminal of `columns` columns (util-linux `script`); returns what the terminal shows, line by line. */
function inTerminal(columns: number, argv: readonly string[]): Promise<{ code: number; lines: string[]; raw: string }> {
  const command = `stty cols ${columns} rows 50; ${quote(process.execPath)} ${quote(binPath)} ${argv.map(quote).join(' ')}`;
  return new Promise((resolve) => {
    execFile('/usr/bin/script', ['-qfec', command, '/dev/null'], { maxBuffer: 16 * 2 ** 20, env: { ...process.env, COLUMNS: undefined } }, (error, stdout) => {
      // What stays on screen: the text after the last carriage return of each line (progress redraws), colours removed.
      const lines = stdout
        .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
        .split(/\r?\n/)
        .map((line) => line.split('\r').at(-1)!);
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, lines, raw: stdout });
    });
  });
}

describe('terminal rendering (pseudo-terminal)', () => {
  it('renderTable keeps every cell whole: an aligned table when it fits, one block per row when it does not', () => {
    const rows = [['3.25', 'sensiboost-2-1', 'boost_stop=2 top_m=1', '80.4017', '-1.234 [-2.345, -0.123] better']];
    const columns = ['budget', 'method', 'options', 'perplexity', 'Δppl vs HQQ [95% CI]'].map((header) => ({ header }));
    const wide = renderTable(columns, rows, 200);
    expect(wide.split('\n')).toHaveLength(4);
    for (const width of [40, 60, 80]) {
      const narrow = renderTable(columns, rows, width);
      for (const line of narrow.trimEnd().split('\n')) expect(line.length, line).toBeLessThanOrEqual(width);
      for (const cell of rows[0]!) for (const word of cell.split(' ')) expect(narrow).toContain(word);
    }
  });

  it('wrapAtSpaces keeps the indentation and breaks only at spaces', () => {
    const line = '  cell 3/3 sensiboost-2-1 @ 3.25: perplexity 82.9276, 3.2812 bits/weight (paper), 10.7s';
    const lines = wrapAtSpaces(line, 40, 4).split('\n');
    expect(lines.length).toBeGreaterThan(1);
    expect(lines[0]!.startsWith('  cell')).toBe(true);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(40);
    expect(lines.map((l) => l.trim()).join(' ')).toBe(line.trim());
  });

  it.runIf(hasScript)('experiment on a tiny grid at 120 and 80 columns: no line wider than the terminal, no number split across lines', async () => {
    // The tiny random model: what is checked is the drawing, the same for any model.
    const m = await tinyModel();
    const out = join(scratch, 'grid');
    const argv = ['experiment', m.dir, '--stats', m.stats, '--methods', 'hqq,sensiboost-2-1', '--budgets', '3.25', '--text', m.text, '--max-tokens', '512', '--seqlen', '256', '--out', out];
    for (const columns of [120, 80]) {
      // The second run resumes from results.json: the same table, drawn at the other width.
      const { code, lines } = await inTerminal(columns, argv);
      expect(code, lines.join('\n')).toBe(0);
      for (const line of lines) expect(line.length, `${columns} columns: ${line}`).toBeLessThanOrEqual(columns);
      const text = lines.join('\n');
      expect(text).toMatch(/^plan: 3 cells x 2 windows \(512 tokens each\); estimated/m);
      const csv = readFileSync(join(out, 'results.csv'), 'utf8').trim().split('\n').slice(1);
      expect(csv).toHaveLength(3);
      for (const row of csv) {
        // Each perplexity, as the table prints it (4 decimals), appears whole on one line.
        const perplexity = Number(row.split(',').at(-2)).toFixed(4);
        expect(lines.some((line) => new RegExp(`(^|\\s)${perplexity.replace('.', '\\.')}(\\s|$)`).test(line)), `${columns}: ${perplexity}`).toBe(true);
      }
      // No line ends inside a number that the next line continues.
      for (let i = 0; i + 1 < lines.length; i++) expect(/[\d.]$/.test(lines[i]!) && /^[\d.]/.test(lines[i + 1]!), `${lines[i]} / ${lines[i + 1]}`).toBe(false);
    }
  }, 300_000);

  it.runIf(hasScript)('the default grid on a terminal prints its plan and asks for --yes', async () => {
    const { code, lines } = await inTerminal(100, ['experiment', shippedModelDir, '--out', join(scratch, 'default')]);
    expect(code).toBe(1);
    // lines broken at spaces to the width, joined back for matching
    const text = lines.join('\n').replace(/\n {2}/g, ' ');
    // the estimate rests on a measured window: tokens/s of this machine now
    expect(text).toMatch(/^plan: \d+ cells x 310 windows \(158,720 tokens each\); estimated (\d+\.\d h|\d+m\d\ds) \(evaluation measured here now: [\d,]+ tokens\/s\)/m);
    expect(text).toMatch(/layerquant: error: option "--yes": the grid would take about (\d+\.\d h|\d+m\d\ds); rerun with --yes/);
    expect(existsSync(join(scratch, 'default'))).toBe(false);
  }, 120_000);

  /** Every line fits the terminal and no line ends inside a number that the next line continues. */
  function expectFits(columns: number, lines: readonly string[]) {
    for (const line of lines) expect(line.length, `${columns} columns: ${line}`).toBeLessThanOrEqual(columns);
    for (let i = 0; i + 1 < lines.length; i++) expect(/[\d.]$/.test(lines[i]!) && /^[\d.]/.test(lines[i + 1]!), `${lines[i]} / ${lines[i + 1]}`).toBe(false);
  }

  it.runIf(hasScript)('sensitivity at 120 and 80 columns: the unit, the outlier marks and their legend, whole numbers; a spinner while the model loads', async () => {
    // The shipped model: its outlier layers are what the marks show.
    for (const columns of [120, 80]) {
      const out = join(scratch, `sens-${columns}`);
      const { code, lines, raw } = await inTerminal(columns, ['sensitivity', shippedModelDir, '--blocks', '1', '--seqlen', '64', '--skip-fnorm', '--out', out]);
      expect(code, lines.join('\n')).toBe(0);
      expectFits(columns, lines);
      const text = lines.join('\n');
      expect(text).toMatch(/MSE of the block output/);
      expect(text).toMatch(/squared activation units/);
      expect(text).toMatch(/^\* outlier layer:/m);
      expect(text).toMatch(/^layer\s+attn_in MSE\s+attn_out MSE\s+mlp_gate MSE\s+mlp_down MSE/m);
      // each table row: the layer, then four values in exponent form, an outlier marked with a star
      const rows = lines.filter((l) => /^\s*\d+\s+\d\.\d{4}e[-+]\d+/.test(l));
      expect(rows).toHaveLength(32);
      expect(rows.some((l) => /e[-+]\d+ \*/.test(l))).toBe(true);
      expect(raw).toMatch(/loading \//);
    }
  }, 300_000);

  it.runIf(hasScript)('compare at 120 and 80 columns: one row per model, perplexities whole, the same as --json', async () => {
    const m = await tinyModel();
    const quantized = join(scratch, 'rtn-b4g64');
    expect((await cli('quantize', m.dir, '--method', 'rtn', '--config', 'b4g64', '--out', quantized)).code).toBe(0);
    const argv = ['compare', m.dir, quantized, '--text', m.text, '--max-tokens', '512', '--seqlen', '256'];
    const json = JSON.parse((await cli(...argv, '--json')).stdout) as { models: Array<{ perplexity: number }> };
    for (const columns of [120, 80]) {
      const { code, lines, raw } = await inTerminal(columns, argv);
      expect(code, lines.join('\n')).toBe(0);
      expectFits(columns, lines);
      for (const model of json.models) {
        const perplexity = model.perplexity.toFixed(4).replace('.', '\\.');
        expect(lines.some((line) => new RegExp(`(^|\\s)${perplexity}(\\s|$)`).test(line)), `${columns}: ${model.perplexity}`).toBe(true);
      }
      expect(raw).toMatch(/loading 1\/2/);
    }
  }, 300_000);
});
