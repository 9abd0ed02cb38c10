import { createReadStream, existsSync, statSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build, createServer as createViteServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Opens the built notebook in Debian's chromium (never a downloaded browser) and checks every cell rendered,
// the knobs re-run the allocator, and the numbers it shows match the PyTorch oracle table.

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

interface OracleRow {
  method: string;
  budget: number;
  bpp: number;
}

let server: Server;
let browser: Browser;
let page: Page;
let oracleTable: OracleRow[];
let oracles: { table: OracleRow[]; outliers: { kurtboost: { '0': Record<string, number[]> } } };
const pageErrors: string[] = [];

const totals = (p: Page) => p.$$eval('[data-total]', (nodes) => Object.fromEntries(nodes.map((n) => [n.getAttribute('data-total'), n.textContent])));
const signature = (p: Page) => p.getAttribute('figure[data-plot="allocation"]', 'data-signature');
const cellFills = (p: Page) => p.$$eval('figure[data-plot="allocation"] g.allocation-cell rect', (rects) => rects.map((r) => r.getAttribute('fill')));

beforeAll(async () => {
  if (!existsSync(chromiumPath)) throw new Error(`${chromiumPath} is missing: run scripts/ensure-chromium.sh (apt-get install chromium)`);
  // Always build: a stale dist/ would test yesterday's page.
  await build({ root: appDir, configFile: join(appDir, 'vite.config.ts'), logLevel: 'warn' });
  oracles = JSON.parse(await readFile(oraclesPath, 'utf8'));
  oracleTable = oracles.table;
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
    const data = JSON.parse(await readFile(join(distDir, 'data/notebook.json'), 'utf8'));
    expect(await page.getAttribute('.sources', 'data-source')).toBe(data.source);
    expect(await page.textContent('.sources')).toContain(data.source === 'oracles' ? 'PyTorch oracles' : 'layerquant CLI');
  });

  it('draws marks in every plot', async () => {
    const marks = async (plot: string, selector: string) => page.$$eval(`figure[data-plot="${plot}"] svg ${selector}`, (nodes) => nodes.length);
    expect(await marks('tensor-sizes', 'g[aria-label="bar"] rect')).toBeGreaterThanOrEqual(8);
    expect(await marks('kurtosis', 'g[aria-label="line"] path')).toBe(7);
    expect(await marks('sensitivity', 'g[aria-label="line"] path')).toBe(4);
    expect(await marks('allocation', 'g.allocation-cell rect')).toBe(224);
    expect(await marks('pareto', 'g[aria-label="line"] path')).toBeGreaterThanOrEqual(6);
    expect(await marks('pareto', 'g[aria-label="rule"] line')).toBe(1);
    // Outlier layers are marked on both statistics plots.
    expect(await marks('kurtosis', 'g.outlier-mark circle')).toBeGreaterThan(0);
    expect(await marks('sensitivity', 'g.outlier-mark circle')).toBeGreaterThan(0);
    // The heat map has a colour legend.
    expect(await page.$$eval('figure[data-plot="allocation"] svg', (svgs) => svgs.length)).toBeGreaterThanOrEqual(2);
  });

  it('fills the tables', async () => {
    const rows = (name: string) => page.$$eval(`table[data-table="${name}"] tbody tr`, (trs) => trs.length);
    expect(await rows('tensors')).toBe(291);
    expect(await rows('outliers')).toBe(7);
    expect(await rows('results')).toBe(oracleTable.length);
  });

  it('finds the outlier layers the authors\' code finds (top_m 1)', async () => {
    expect(await page.$$eval('table[data-table="outliers"] .mismatch', (n) => n.length)).toBe(0);
    expect(await page.$$eval('table[data-table="outliers"] .match', (n) => n.length)).toBe(14);
  });

  it('runs every method and every top_m in the page', async () => {
    const methods = await page.$$eval('select[name="method"] option', (options) => options.map((o) => (o as HTMLOptionElement).value));
    expect(methods).toEqual(['uniform', 'mxq', 'sensiboost', 'kurtboost', 'ablation']);
    for (const method of methods) {
      for (const topM of ['0', '3']) {
        await page.selectOption('select[name="method"]', method);
        await page.selectOption('select[name="topM"]', topM);
        const states = await page.$$eval('section.cell', (cells) => cells.map((c) => c.getAttribute('data-state')));
        expect(states, `${method} top_m ${topM}`).toEqual(Array(7).fill('rendered'));
      }
    }
    // top_m 0 keeps every outlier: the authors' code agrees on all of them, and more layers are ringed.
    await page.selectOption('select[name="topM"]', '0');
    expect(await page.$$eval('table[data-table="outliers"] .mismatch', (n) => n.length)).toBe(0);
    const allKurtosisOutliers = Object.values(oracles.outliers.kurtboost['0']).flat().length;
    expect(await page.$$eval('figure[data-plot="kurtosis"] g.outlier-mark circle', (n) => n.length)).toBe(allKurtosisOutliers);
    await page.selectOption('select[name="method"]', 'sensiboost');
    await page.selectOption('select[name="topM"]', '1');
    expect(pageErrors).toEqual([]);
  });

  it('re-runs the allocator when the budget changes, with the oracle table\'s bits per weight', async () => {
    const bppOf = (method: string, budget: number) => oracleTable.find((r) => r.method === method && r.budget === budget)!.bpp.toFixed(4);
    // Default knobs: SensiBoost, stop 2, top_m 1, budget 2.25.
    const before = { signature: await signature(page), totals: await totals(page), fills: await cellFills(page) };
    expect(before.totals.bpp).toBe(bppOf('sensiboost-2-1', 2.25));

    await page.selectOption('select[name="budget"]', '3.25');
    await page.waitForFunction((old) => document.querySelector('figure[data-plot="allocation"]')?.getAttribute('data-signature') !== old, before.signature);
    const after = { signature: await signature(page), totals: await totals(page), fills: await cellFills(page) };
    expect(after.totals.bpp).toBe(bppOf('sensiboost-2-1', 3.25));
    expect(after.totals.memory).not.toBe(before.totals.memory);
    expect(after.fills).not.toEqual(before.fills);
    expect(after.signature).toContain('b3g64');

    // MXQ solves its knapsack in the page and lands on the oracle's bits per weight.
    await page.selectOption('select[name="method"]', 'mxq');
    await page.waitForFunction(() => document.querySelector('[data-total="bpp"]')?.textContent !== null && document.body.dataset.knobs?.includes('"mxq"'));
    expect((await totals(page)).bpp).toBe(bppOf('mxq', 3.25));
    await page.selectOption('select[name="method"]', 'sensiboost');
    await page.selectOption('select[name="budget"]', '2.25');

    await mkdir(join(appDir, 'test-results'), { recursive: true });
    await page.screenshot({ path: screenshotPath, fullPage: true });
    expect(existsSync(screenshotPath)).toBe(true);
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
      const states = await devPage.$$eval('section.cell', (cells) => cells.map((c) => c.getAttribute('data-state')));
      expect(states).toEqual(Array(7).fill('rendered'));
      expect(errors).toEqual([]);
    } finally {
      await devPage.close();
      await vite.close();
    }
  });
});
