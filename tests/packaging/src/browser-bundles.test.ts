import { build as esbuild } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build as vite, type Rollup } from 'vite';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The browser-safe entries (browser-entries.json, which bench/bundle-sizes.mjs measures), bundled the way a web app bundles them: from this package's node_modules (the built
 * dist/ files a user installs), with no plug-in, alias or stub. A Node built-in anywhere in what an entry reaches is
 * an esbuild error (`--platform=browser`) and a Vite "externalized for browser compatibility" warning.
 */
export const BROWSER_ENTRIES: readonly string[] = JSON.parse(readFileSync(fileURLToPath(new URL('../browser-entries.json', import.meta.url)), 'utf8'));

const here = fileURLToPath(new URL('..', import.meta.url));
// Entry files inside this package, so Vite resolves the packages from its node_modules as it would in an app.
const scratch = join(here, '.bundles');
mkdirSync(scratch, { recursive: true });
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.each(BROWSER_ENTRIES)('%s in a browser bundle', (entry) => {
  it('bundles with esbuild --platform=browser: no Node built-in reached', async () => {
    const result = await esbuild({
      stdin: { contents: `export * from '${entry}';`, resolveDir: here, loader: 'js' },
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile!.inputs);
    expect(inputs.filter((input) => input.startsWith('node:') || /(^|\/)node_modules\/(onnxruntime-node|@huggingface\/transformers)\//.test(input))).toEqual([]);
    expect(result.outputFiles[0]!.text.length).toBeGreaterThan(0);
  });

  it('builds with Vite for the browser without externalizing anything', async () => {
    const file = join(scratch, `${entry.replace(/[@/]/g, '_')}.js`);
    writeFileSync(file, `export * from '${entry}';\n`);
    const warnings: string[] = [];
    const output = (await vite({
      root: here,
      configFile: false,
      logLevel: 'silent',
      build: {
        write: false,
        lib: { entry: file, formats: ['es'], fileName: 'bundle' },
        rollupOptions: { onwarn: (warning) => void warnings.push(warning.message) },
      },
    })) as Rollup.RollupOutput[];
    expect(warnings.filter((w) => /externalized for browser compatibility|node:/.test(w))).toEqual([]);
    const chunks = output.flatMap((o) => o.output).filter((o): o is Rollup.OutputChunk => o.type === 'chunk');
    expect(chunks.length).toBeGreaterThan(0);
    expect(chunks.some((c) => /__vite-browser-external/.test(c.code))).toBe(false);
  }, 60_000);
});
