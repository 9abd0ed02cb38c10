import { shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer, type ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The dev server (`pnpm --filter notebook dev`) serves what the page needs and nothing else of the workspace
 * (issue 27): not the fixtures' oracles or PyTorch references, through the fixture URLs or through Vite's `/@fs/`.
 * The page itself rendering from it is the e2e test's ('notebook dev server').
 */

const appDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const root = resolve(appDir, '../..');
let vite: ViteDevServer;
let base: string;

beforeAll(async () => {
  vite = await createServer({ root: appDir, configFile: join(appDir, 'vite.config.ts'), logLevel: 'silent', server: { host: '127.0.0.1', port: 0, strictPort: false } });
  await vite.listen();
  base = `http://127.0.0.1:${(vite.httpServer!.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await vite?.close();
});

const get = async (path: string) => {
  const response = await fetch(`${base}${path}`);
  return { status: response.status, body: await response.text() };
};

describe('notebook dev server: only what the page needs', () => {
  it('serves the page, its modules, the workspace sources it imports and the model files it fetches', async () => {
    expect((await get('/')).status).toBe(200);
    expect((await get('/src/main.ts')).status).toBe(200);
    expect((await get(`/@fs${join(root, 'packages/core/src/index.ts')}`)).status).toBe(200);
    const manifest = await get('/models/llama-brown-26m/manifest.json');
    expect(JSON.parse(manifest.body).files).toContain('config.json');
    expect((await get('/models/llama-brown-26m/config.json')).status).toBe(200);
  });

  it('refuses the oracles, the PyTorch references and workspace files outside the page\'s imports', async () => {
    const secret = /"outliers"|perplexity_fp32|"table"/;
    for (const path of [
      '/models/llama-brown-26m/oracles/oracles.json',
      '/models/llama-brown-26m/oracles/fnorm.csv',
      '/models/llama-brown-26m/reference-torch.json',
      `/@fs${join(shippedOraclesDir, 'oracles.json')}`,
      `/@fs${join(shippedModelDir, 'reference-torch.json')}`,
      `/@fs${join(root, 'bench/perplexity_anchor.py')}`,
      `/@fs${join(root, 'package.json')}`,
    ]) {
      const { status, body } = await get(path);
      expect(status, path).toBeGreaterThanOrEqual(400);
      expect(body, path).not.toMatch(secret);
    }
  });
});
