import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Connect, type Plugin } from 'vite';
import { workspaceAlias } from '../../vitest.shared';
import { layerquantPluginModules } from './plugin-modules';

const NODE_BUILTINS = new Set([...builtinModules, ...builtinModules.map((name) => `node:${name}`)]);
const STUB = '\0layerquant-node-only:';

/**
 * Workspace modules that run only in Node (files, onnxruntime-node, transformers' tokenizer loader). The
 * browser-safe parts of those packages have their own entries, which the page imports: tensor-io/browser,
 * runtime/graph, perplexity/browser, sensitivity/browser.
 */
const NODE_ONLY_PACKAGES = new RegExp(
  [
    String.raw`/packages/(?:tensor-io|sensitivity|perplexity)/src/index\.ts`,
    String.raw`/packages/runtime/src/(?:backend-node|testing)\.ts`,
    String.raw`/packages/export/src/(?!browser\.ts|matmul-nbits\.ts|onnx-cost\.ts)`,
    String.raw`/packages/tensor-io/src/(?:checkpoint|config|tokenizer|inspect|atomic|output-dir|safetensors)\.ts`,
    String.raw`/packages/perplexity/src/text-file\.ts`,
    String.raw`/packages/sensitivity/src/(?:model-statistics|stats-directory|activation-sensitivity|metrics)\.ts`,
    String.raw`/packages/fixtures/src/`,
    String.raw`/node_modules/(?:onnxruntime-node|@huggingface/transformers)/`,
  ].join('|'),
);
/** onnxruntime-web's WebAssembly binary: the one .wasm asset the page needs (the decoder runs in it). */
const ORT_WASM = /(?:^|\/)ort-wasm-simd-threaded[\w.-]*\.wasm$/;

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** A stand-in for a Node built-in: every export exists (so imports link) and throws if the page ever uses it. */
async function builtinStub(builtin: string): Promise<string> {
  const names = Object.keys(await import(builtin)).filter((name) => IDENTIFIER.test(name) && name !== 'default');
  const fail = `Node-only "${builtin}" used in the browser`;
  return [
    `function unavailable() { throw new Error(${JSON.stringify(fail)}); }`,
    ...names.map((name) => `export function ${name}() { unavailable(); }`),
    'export default {};',
  ].join('\n');
}

/**
 * The page runs the allocator and quantizer packages in the browser, so no Node-only code may run there. A
 * package entry may still re-export Node-only modules the page never calls: Node built-ins resolve to stubs
 * whose exports throw (so modules still link, in dev and build), the Node-only workspace packages to an empty
 * stub in the build, each such import is reported as a warning (the package should move it behind a `/node`
 * subpath), and the build fails if anything of a stub survives tree-shaking, i.e. if the page would use it.
 */
function forbidNodeOnlyCode(): Plugin {
  const stubbed = new Map<string, Set<string>>();
  let building = false;
  return {
    name: 'layerquant:forbid-node-only-code',
    enforce: 'pre',
    configResolved(config) {
      building = config.command === 'build';
    },
    resolveId(source, importer) {
      if (!NODE_BUILTINS.has(source) && !(building && NODE_ONLY_PACKAGES.test(source))) return null;
      const importers = stubbed.get(source) ?? new Set<string>();
      importers.add(importer ?? '?');
      stubbed.set(source, importers);
      return `${STUB}${source}`;
    },
    async load(id) {
      if (!id.startsWith(STUB)) return null;
      const source = id.slice(STUB.length);
      if (NODE_BUILTINS.has(source)) return builtinStub(source);
      return { code: 'export default {};', syntheticNamedExports: true };
    },
    buildEnd() {
      if (!building) return;
      for (const [source, importers] of stubbed) {
        this.warn(`"${source}" is imported by ${[...importers].join(', ')}: Node-only code reachable from a browser entry (tree-shaken; move it behind a /node subpath)`);
      }
    },
    generateBundle(_options, bundle) {
      for (const output of Object.values(bundle)) {
        if (output.type === 'asset' && /\.wasm$/.test(output.fileName) && !ORT_WASM.test(output.fileName)) this.error(`${output.fileName}: a WebAssembly asset of a Node-only dependency was emitted`);
        if (output.type !== 'chunk') continue;
        for (const [id, info] of Object.entries(output.modules)) {
          if (info.renderedLength > 0 && (id.startsWith(STUB) || NODE_ONLY_PACKAGES.test(id))) {
            this.error(`${id.replace(STUB, '')} is Node-only code bundled into ${output.fileName}; the notebook must stay browser-safe`);
          }
        }
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
  // The runtime's onnxruntime backend is onnxruntime-web in the page (before workspaceAlias, which maps it for Node).
  resolve: { alias: [{ find: /^#ort-backend$/, replacement: runtimeWebBackend }, ...workspaceAlias] },
  plugins: [forbidNodeOnlyCode(), serveFixtures(), layerquantPluginModules()],
  // The model worker is bundled by the same rules: no Node-only code there either.
  worker: { format: 'es', plugins: () => [forbidNodeOnlyCode()] },
  // onnxruntime-web finds its .wasm beside its module (import.meta.url): pre-bundling would move it.
  optimizeDeps: { exclude: ['onnxruntime-web'] },
  build: { target: 'es2022', chunkSizeWarningLimit: 1024 },
  // Error classes keep their names when minified: cells show "InvalidDataError: ...", not a mangled name.
  esbuild: { keepNames: true },
});
