import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Connect, type Plugin } from 'vite';
import { workspaceAlias } from '../../vitest.shared';
import { layerquantPluginModules } from './plugin-modules';

const NODE_BUILTINS = new Set([...builtinModules, ...builtinModules.map((name) => `node:${name}`)]);

/**
 * Workspace modules that run only in Node (files, onnxruntime-node). The packages' browser-safe entries, which the
 * page imports, never reach them: tensor-io/browser, runtime/graph, perplexity/browser, sensitivity/browser and the
 * main entries of core, quantizers, stats and allocators.
 */
const NODE_ONLY_PACKAGES = new RegExp(
  [
    String.raw`/packages/(?:tensor-io|runtime|sensitivity|perplexity)/src/index\.ts`,
    String.raw`/packages/runtime/src/(?:session|decoder-model|decoder-blocks|kv-decoder|testing|test-models)\.ts`,
    String.raw`/packages/export/src/`,
    String.raw`/packages/tensor-io/src/(?:checkpoint|config|tokenizer-node|inspect|atomic|output-dir|safetensors|model)\.ts`,
    String.raw`/packages/perplexity/src/text-file\.ts`,
    String.raw`/packages/sensitivity/src/(?:model-statistics|stats-directory|activation-sensitivity|metrics|measure-metrics)\.ts`,
    String.raw`/packages/fixtures/src/`,
    String.raw`/node_modules/(?:onnxruntime-node|@huggingface/transformers)/`,
  ].join('|'),
);
/** onnxruntime-web's WebAssembly binary: the one .wasm asset the page needs (the decoder runs in it). */
const ORT_WASM = /(?:^|\/)ort-wasm-simd-threaded[\w.-]*\.wasm$/;

/**
 * The page runs the allocator, quantizer and statistics packages in the browser, so no Node-only code may reach it:
 * a Node built-in or a Node-only workspace module imported from anything the page bundles is a build error naming
 * the importer (no stubs: the packages' browser entries must not need them).
 */
function forbidNodeOnlyCode(): Plugin {
  return {
    name: 'layerquant:forbid-node-only-code',
    enforce: 'pre',
    resolveId(source, importer) {
      if (NODE_BUILTINS.has(source)) this.error(`"${source}" (a Node built-in) is imported by ${importer ?? '?'}: the notebook must stay browser-safe`);
      return null;
    },
    load(id) {
      if (NODE_ONLY_PACKAGES.test(id)) this.error(`${id} is Node-only code reached from the page; import the package's browser-safe entry instead`);
      return null;
    },
    generateBundle(_options, bundle) {
      for (const output of Object.values(bundle)) {
        if (output.type === 'asset' && /\.wasm$/.test(output.fileName) && !ORT_WASM.test(output.fileName)) this.error(`${output.fileName}: a WebAssembly asset of a Node-only dependency was emitted`);
      }
    },
  };
}

const fixturesDir = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../packages/fixtures');
const datasetsDir = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../packages/datasets');

/** What the page loads besides its bundle: the shipped model directory (packages/fixtures) and the evaluation text (packages/datasets). */
export const SERVED_FIXTURES: readonly { readonly url: string; readonly dir: string; readonly files: (name: string) => boolean }[] = [
  // Weights, config and tokenizer only: oracles/ and the PyTorch references stay out of the site.
  { url: 'models/llama-brown-26m/', dir: join(fixturesDir, 'models/llama-brown-26m'), files: (name) => /\.(safetensors|json)$/.test(name) && !name.startsWith('reference-') },
  { url: 'data/', dir: join(datasetsDir, 'data'), files: (name) => name === 'brown-test.txt' },
  { url: 'paper-data/llama-2-7b/', dir: join(fixturesDir, 'paper-data/llama-2-7b'), files: (name) => name === 'published-results.csv' },
];

function fixtureFiles(fixture: (typeof SERVED_FIXTURES)[number]): string[] {
  return readdirSync(fixture.dir).filter((name) => statSync(join(fixture.dir, name)).isFile() && fixture.files(name)).sort();
}

/** `manifest.json` of the served model: the files the page may ask for (a served directory cannot be listed). */
const manifestOf = (fixture: (typeof SERVED_FIXTURES)[number]) => `${JSON.stringify({ files: fixtureFiles(fixture) })}\n`;

/**
 * Serves the fixtures under the page's base in `dev` and `preview`, and copies them into the build (dist/models,
 * dist/data), so the site quantizes and evaluates the shipped model wherever it is hosted.
 */
function serveFixtures(): Plugin {
  let outDir = '';
  const middleware: Connect.NextHandleFunction = (request, response, next) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname).replace(/^\/+/, '');
    for (const fixture of SERVED_FIXTURES) {
      if (!path.startsWith(fixture.url)) continue;
      const name = path.slice(fixture.url.length);
      if (fixture.url.startsWith('models/') && name === 'manifest.json') {
        response.setHeader('content-type', 'application/json');
        response.end(manifestOf(fixture));
        return;
      }
      const file = normalize(join(fixture.dir, name));
      if (!file.startsWith(fixture.dir + sep) || !existsSync(file) || !fixture.files(name)) break;
      response.setHeader('content-length', String(statSync(file).size));
      createReadStream(file).pipe(response);
      return;
    }
    next();
  };
  return {
    name: 'layerquant:serve-fixtures',
    configResolved(config) {
      outDir = resolve(config.root, config.build.outDir);
    },
    configureServer(server) {
      server.middlewares.use(middleware);
    },
    configurePreviewServer(server) {
      server.middlewares.use(middleware);
    },
    async closeBundle() {
      if (!outDir) return;
      for (const fixture of SERVED_FIXTURES) {
        const target = join(outDir, fixture.url);
        await mkdir(target, { recursive: true });
        for (const name of fixtureFiles(fixture)) await copyFile(join(fixture.dir, name), join(target, name));
        if (fixture.url.startsWith('models/')) await writeFile(join(target, 'manifest.json'), manifestOf(fixture));
      }
    },
  };
}

export default defineConfig({
  // Relative asset URLs, so dist/ works from any folder or static host.
  base: './',
  // Workspace packages resolve to their sources: the notebook needs no build of its siblings.
  resolve: { alias: workspaceAlias },
  plugins: [forbidNodeOnlyCode(), serveFixtures(), layerquantPluginModules()],
  // The model worker is bundled by the same rules: no Node-only code there either.
  worker: { format: 'es', plugins: () => [forbidNodeOnlyCode()] },
  // onnxruntime-web finds its .wasm beside its module (import.meta.url): pre-bundling would move it.
  optimizeDeps: { exclude: ['onnxruntime-web'] },
  build: { target: 'es2022', chunkSizeWarningLimit: 1024 },
  // Error classes keep their names when minified: cells show "InvalidDataError: ...", not a mangled name.
  esbuild: { keepNames: true },
});
