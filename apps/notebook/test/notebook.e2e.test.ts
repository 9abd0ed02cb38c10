import { createReadStream, existsSync, statSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LINEAR_MODULES } from '@layerquant/core';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build, createServer as createViteServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyse, type Analysis } from '../src/analysis.js';
import { validateNotebookData, type NotebookData } from '../src/data.js';
import { METHODS, allocate, availableMethods } from '../src/methods.js';
import type { Knobs } from '../src/state.js';

// Opens the built notebook in Debian's chromium (never a downloaded browser) and checks that every cell
// rendered, that the knobs re-run the allocator, and that the numbers the page shows are the ones the same
// packages compute in Node, and the PyTorch oracle table's (the committed statistics reproduce the oracles').

const appDir = fileURLToPath(new URL('..', import.meta.url));
const distDir = join(appDir, 'dist');
const screenshotPath = join(appDir, 'test-results/notebook.png');
const chromiumPath = '/usr/bin/chromium';
const oraclesPath = resolve(appDir, '../../packages/fixtures/models/llama-brown-26m/oracles/oracles.json');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

function serve(root: string): Promise<Server> {
  const server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
    const file = normalize(join(root, path.endsWith('/') ? `${path}index.html` : path));
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, { 'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(response);
  });
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done(server)));
}

interface Oracles {
  table: { method: string; budget: number; bpp: number }[];
  outliers: Record<'sensiboost' | 'kurtboost', Record<'0' | '1', Record<string, number[]>>>;
}

let server: Server;
let browser: Browser;
let page: Page;
let data: NotebookData;
let analysis: Analysis;
let oracles: Oracles;
const pageErrors: string[] = [];

const totals = (p: Page) => p.$$eval('[data-total]', (nodes) => Object.fromEntries(nodes.map((n) => [n.getAttribute('data-total'), n.textContent])));
const signature = (p: Page) => p.getAttribute('figure[data-plot="allocation"]', 'data-signature');
const cellFills = (p: Page) => p.$$eval('figure[data-plot="allocation"] g.allocation-cell rect', (rects) => rects.map((r) => r.getAttribute('fill')));
const cellStates = (p: Page) => p.$$eval('section.cell', (cells) => cells.map((c) => c.getAttribute('data-state')));
/** Bits per weight as the page prints it, computed in Node by the same packages. */
const expectedBpp = (knobs: Knobs) => allocate(analysis, knobs).memory.paperBitsPerWeight.toFixed(4);
const oracleBpp = (method: string, budget: number) => oracles.table.find((r) => r.method === method && r.budget === budget)!.bpp.toFixed(4);

beforeAll(async () => {
  if (!existsSync(chromiumPath)) throw new Error(`${chromiumPath} is missing: run scripts/ensure-chromium.sh (apt-get install chromium)`);
  // Always build: a stale dist/ would test yesterday's page.
  await build({ root: appDir, configFile: join(appDir, 'vite.config.ts'), logLevel: 'warn' });
  data = validateNotebookData(JSON.parse(await readFile(join(distDir, 'data/notebook.json'), 'utf8')), 'dist/data/notebook.json');
  analysis = analyse(data);
  oracles = JSON.parse(await readFile(oraclesPath, 'utf8'));
  server = await serve(distDir);
  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
  page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(message.text());
  });
  const { port } = server.address() as AddressInfo;
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((done) => (server ? server.close(done) : done(undefined)));
});

describe('notebook page in headless chromium', () => {
  it('renders every cell without an error', async () => {
    const states = await page.$$eval('section.cell', (cells) => cells.map((c) => [c.getAttribute('data-cell'), c.getAttribute('data-state')]));
    expect(states).toEqual([
      ['model', 'rendered'],
      ['kurtosis', 'rendered'],
      ['sensitivity', 'rendered'],
      ['outliers', 'rendered'],
      ['allocation', 'rendered'],
      ['pareto', 'rendered'],
      ['results', 'rendered'],
    ]);
    expect(pageErrors).toEqual([]);
  });

  it('says which source it displays', async () => {
    expect(await page.getAttribute('.sources', 'data-source')).toBe(data.source);
    expect(await page.textContent('.sources')).toContain(data.source === 'oracles' ? 'PyTorch oracles' : 'layerquant CLI');
  });

  it('draws marks in every plot', async () => {
    const marks = async (plot: string, selector: string) => page.$$eval(`figure[data-plot="${plot}"] svg ${selector}`, (nodes) => nodes.length);
    expect(await marks('tensor-sizes', 'g[aria-label="bar"] rect')).toBeGreaterThanOrEqual(8);
    expect(await marks('kurtosis', 'g[aria-label="line"] path')).toBe(7);
    expect(await marks('sensitivity', 'g[aria-label="line"] path')).toBe(4);
    expect(await marks('allocation', 'g.allocation-cell rect')).toBe(224);
    expect(await marks('pareto', 'g[aria-label="line"] path')).toBe(new Set(data.results.map((r) => `${r.method} ${JSON.stringify(r.options)}`)).size);
    expect(await marks('pareto', 'g[aria-label="rule"] line')).toBe(1);
    expect(await marks('pareto-zoom', 'g[aria-label="dot"] circle')).toBeGreaterThan(0);
    // Hiding a family of methods in Figure 5 removes its lines, and showing it brings them back.
    const lines = await marks('pareto', 'g[aria-label="line"] path');
    await page.uncheck('input[data-family="mxq"]');
    expect(await marks('pareto', 'g[aria-label="line"] path')).toBe(lines - 1);
    await page.check('input[data-family="mxq"]');
    expect(await marks('pareto', 'g[aria-label="line"] path')).toBe(lines);
    // Outlier layers are marked on both statistics plots.
    expect(await marks('kurtosis', 'g.outlier-mark circle')).toBeGreaterThan(0);
    expect(await marks('sensitivity', 'g.outlier-mark circle')).toBeGreaterThan(0);
    // The heat map has a colour legend (a swatch per config of the ladder).
    expect(await page.$$eval('figure[data-plot="allocation"] svg', (svgs) => svgs.length)).toBeGreaterThanOrEqual(12);
  });

  it('fills the tables', async () => {
    const rows = (name: string) => page.$$eval(`table[data-table="${name}"] tbody tr`, (trs) => trs.length);
    expect(await rows('tensors')).toBe(data.tensors.length);
    expect(await rows('outliers')).toBe(7);
    expect(await rows('results')).toBe(data.results.length);
    expect(await rows('configs')).toBeGreaterThan(0);
  });

  it('checks its outlier layers against the authors\' code (top_m 1)', async () => {
    const matches = await page.$$eval('table[data-table="outliers"] .match', (n) => n.length);
    const mismatches = await page.$$eval('table[data-table="outliers"] .mismatch', (n) => n.length);
    expect(matches + mismatches).toBe(14);
    // Our detection finds exactly the authors' layers: the committed statistics (layerquant's, brown-calib, 32
    // blocks) reproduce the PyTorch oracles' outliers, and so would the oracle tables themselves.
    expect(mismatches).toBe(0);
  });

  it('runs every method and every top_m in the page', async () => {
    const methods = await page.$$eval('select[name="method"] option', (options) => options.map((o) => (o as HTMLOptionElement).value));
    // Every allocator plug-in of the registry, in its order; the page runs each whose tables the data holds.
    expect(methods).toEqual(METHODS.map((m) => m.id));
    const runnable = availableMethods(analysis.stats).map((m) => m.id);
    expect(runnable).toEqual(expect.arrayContaining(['uniform', 'mxq', 'sensiboost', 'kurtboost', 'ablation', 'sensi-milp', 'kurt-milp']));
    for (const method of runnable) {
      for (const topM of ['0', '3']) {
        await page.selectOption('select[name="method"]', method);
        await page.selectOption('select[name="topM"]', topM);
        expect(await cellStates(page), `${method} top_m ${topM}`).toEqual(Array(7).fill('rendered'));
        expect((await totals(page)).bpp).toBe(expectedBpp({ method, budget: 2.25, boostStop: 2, topM: Number(topM) }));
      }
    }
    // top_m 0 rings every outlier layer of every module.
    await page.selectOption('select[name="topM"]', '0');
    const allKurtosisOutliers = LINEAR_MODULES.reduce((n, m) => n + analysis.outliers(0).kurtosis[m].length, 0);
    expect(await page.$$eval('figure[data-plot="kurtosis"] g.outlier-mark circle', (n) => n.length)).toBe(allKurtosisOutliers);
    expect(allKurtosisOutliers).toBe(Object.values(oracles.outliers.kurtboost['0']).flat().length);
    expect(await page.$$eval('table[data-table="outliers"] .mismatch', (n) => n.length)).toBe(0);
    await page.selectOption('select[name="method"]', 'sensiboost');
    await page.selectOption('select[name="topM"]', '1');
    expect(pageErrors).toEqual([]);
  });

  it('re-runs the allocator when the budget changes', async () => {
    const knobs = { method: 'sensiboost', budget: 2.25, boostStop: 2, topM: 1 };
    const before = { signature: await signature(page), totals: await totals(page), fills: await cellFills(page) };
    expect(before.totals.bpp).toBe(expectedBpp(knobs));
    expect(before.totals.bpp).toBe(oracleBpp('sensiboost-2-1', 2.25));

    await page.selectOption('select[name="budget"]', '3.25');
    await page.waitForFunction((old) => document.querySelector('figure[data-plot="allocation"]')?.getAttribute('data-signature') !== old, before.signature);
    const after = { signature: await signature(page), totals: await totals(page), fills: await cellFills(page) };
    expect(after.totals.bpp).toBe(expectedBpp({ ...knobs, budget: 3.25 }));
    expect(after.totals.bpp).toBe(oracleBpp('sensiboost-2-1', 3.25));
    expect(after.totals.memory).not.toBe(before.totals.memory);
    expect(after.fills).not.toEqual(before.fills);
    expect(after.signature).toContain('b3g64');

    // MXQ solves its knapsack in the page and lands on the oracle's bits per weight.
    await page.selectOption('select[name="method"]', 'mxq');
    expect((await totals(page)).bpp).toBe(expectedBpp({ ...knobs, method: 'mxq', budget: 3.25 }));
    expect((await totals(page)).bpp).toBe(oracleBpp('mxq', 3.25));
    await page.selectOption('select[name="method"]', 'sensiboost');
    await page.selectOption('select[name="budget"]', '2.25');

    await page.evaluate(() => window.scrollTo(0, 0));
    await mkdir(join(appDir, 'test-results'), { recursive: true });
    await page.screenshot({ path: screenshotPath, fullPage: true });
    expect(statSync(screenshotPath).size).toBeGreaterThan(10_000);
    expect(pageErrors).toEqual([]);
  });
});

describe('notebook dev server (pnpm --filter notebook dev)', () => {
  it('serves a page whose cells all render', async () => {
    const vite = await createViteServer({
      root: appDir,
      configFile: join(appDir, 'vite.config.ts'),
      logLevel: 'warn',
      server: { host: '127.0.0.1', port: 0, strictPort: false },
    });
    await vite.listen();
    const devPage = await browser.newPage();
    const errors: string[] = [];
    devPage.on('pageerror', (error) => errors.push(error.message));
    try {
      const { port } = vite.httpServer!.address() as AddressInfo;
      await devPage.goto(`http://127.0.0.1:${port}/`);
      await devPage.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
      expect(await cellStates(devPage)).toEqual(Array(7).fill('rendered'));
      expect(errors).toEqual([]);
    } finally {
      await devPage.close();
      await vite.close();
    }
  });
});
