import { builtinModules } from 'node:module';
import { defineConfig, type Plugin } from 'vite';
import { workspaceAlias } from '../../vitest.shared';
import { layerquantPluginModules } from './plugin-modules';

const NODE_BUILTINS = new Set([...builtinModules, ...builtinModules.map((name) => `node:${name}`)]);
const STUB = '\0layerquant-node-only:';

/** Workspace packages that run only in Node (files, onnxruntime-node, the tokenizer). */
const NODE_ONLY_PACKAGES = /\/packages\/(tensor-io|runtime|sensitivity|perplexity|fixtures)\/src\//;

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
        if (output.type === 'asset' && /\.wasm$/.test(output.fileName)) this.error(`${output.fileName}: a WebAssembly asset of a Node-only dependency was emitted`);
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

export default defineConfig({
  // Relative asset URLs, so dist/ works from any folder or static host.
  base: './',
  // Workspace packages resolve to their sources: the notebook needs no build of its siblings.
  resolve: { alias: workspaceAlias },
  plugins: [forbidNodeOnlyCode(), layerquantPluginModules()],
  build: { target: 'es2022', chunkSizeWarningLimit: 1024 },
});
