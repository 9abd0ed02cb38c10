import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { dirname, isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Connect, type Plugin } from 'vite';
import { workspaceAlias } from '../../vitest.shared';
import { layerquantPluginModules, pluginSpecifiers } from './plugin-modules';

const NODE_BUILTINS = new Set([...builtinModules, ...builtinModules.map((name) => `node:${name}`)]);

/**
 * Workspace modules that run only in Node (files, onnxruntime-node). The packages' browser-safe entries, which the
 * page imports, never reach them: tensor-io/browser, runtime/graph, perplexity/browser, sensitivity/browser and the
 * main entries of core, quantizers, stats and allocators.
 */
const NODE_ONLY_PACKAGES = new RegExp(
  [
    String.raw`/packages/(?:tensor-io|sensitivity|perplexity)/src/index\.ts`,
    String.raw`/packages/runtime/src/(?:backend-node|testing|test-models)\.ts`,
    String.raw`/packages/export/src/(?!browser\.ts|matmul-nbits\.ts|onnx-cost\.ts)`,
    String.raw`/packages/tensor-io/src/(?:checkpoint|config|tokenizer-node|inspect|atomic|output-dir|safetensors|model|model-file-set|input-file|content-hash)\.ts`,
    String.raw`/packages/perplexity/src/text-file\.ts`,
    String.raw`/packages/sensitivity/src/(?:model-statistics|stats-directory|measure-metrics)\.ts`,
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

const runtimeWebBackend = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../packages/runtime/src/backend-web.ts');
const fixturesDir = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../packages/fixtures');
const datasetsDir = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../packages/datasets');

/** What the page loads besides its bundle: the shipped model directory (packages/fixtures) and the evaluation text (packages/datasets). */
export const SERVED_FIXTURES: readonly { readonly url: string; readonly dir: string; readonly files: (name: string) => boolean }[] = [
  // Weights, config and tokenizer only: oracles/ and the PyTorch references stay out of the site.
  { url: 'models/llama-brown-26m/', dir: join(fixturesDir, 'models/llama-brown-26m'), files: (name) => /^[^/]+\.(safetensors|json)$/.test(name) && !name.startsWith('reference-') },
  // Names are direct children only: `oracles/oracles.json` is no file of the model's.
  { url: 'data/', dir: join(datasetsDir, 'data'), files: (name) => name === 'brown-test.txt' || name === 'brown-calib.txt' },
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
      if (!file.startsWith(fixture.dir + sep) || !existsSync(file)) continue; // not the fixture's: the page's own (public/)
      if (!fixture.files(name)) {
        // A file of the fixture that the page does not need (oracles/, the PyTorch references): refused, not served.
        response.statusCode = 404;
        response.end();
        return;
      }
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

const workspaceRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

/**
 * What the dev server may serve from disk (`/@fs/...`, its file system access): the page's own folder, the sources of
 * the workspace packages it imports, the installed dependencies, and the LAYERQUANT_PLUGINS modules. Not the rest of
 * the workspace: the fixtures' oracles and PyTorch references, bench scripts, notes (the fixtures the page needs come
 * through serveFixtures, file by file, as the built site has them).
 */
export function servedDirectories(plugins: readonly string[] = pluginSpecifiers()): string[] {
  const packages = join(workspaceRoot, 'packages');
  return [
    resolve(fileURLToPath(new URL('.', import.meta.url))),
    ...readdirSync(packages).map((name) => join(packages, name, 'src')).filter((dir) => existsSync(dir)),
    join(workspaceRoot, 'node_modules'),
    ...plugins.filter((p) => isAbsolute(p)).map((p) => dirname(p)),
  ];
}

export default defineConfig({
  // Relative asset URLs, so dist/ works from any folder or static host.
  base: './',
  server: { fs: { strict: true, allow: servedDirectories(), deny: ['.env', '.env.*', '*.{crt,pem}', '**/.git/**', '**/oracles/**', '**/reference-*.json', '**/*.py'] } },
  // Workspace packages resolve to their sources: the notebook needs no build of its siblings.
  // The runtime's onnxruntime backend is onnxruntime-web in the page (before workspaceAlias, which maps it for Node).
  resolve: { alias: [{ find: /^#ort-backend$/, replacement: runtimeWebBackend }, ...workspaceAlias] },
  plugins: [forbidNodeOnlyCode(), serveFixtures(), layerquantPluginModules()],
  // The workers are bundled by the same rules: no Node-only code there either; the shipped-size worker runs the
  // allocator registry, plug-ins included.
  worker: { format: 'es', plugins: () => [forbidNodeOnlyCode(), layerquantPluginModules()] },
  // onnxruntime-web finds its .wasm beside its module (import.meta.url): pre-bundling would move it.
  optimizeDeps: { exclude: ['onnxruntime-web'] },
  build: { target: 'es2022', chunkSizeWarningLimit: 1024 },
  // Error classes keep their names when minified: cells show "InvalidDataError: ...", not a mangled name.
  esbuild: { keepNames: true },
});
