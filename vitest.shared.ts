// One place that maps every workspace package to its sources, so tests never need a build of a sibling.
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));
const packages = ['core', 'tensor-io', 'quantizers', 'runtime', 'stats', 'sensitivity', 'allocators', 'perplexity', 'fixtures', 'export', 'datasets', 'gguf', 'pipeline', 'experiment', 'queue'];
/** Subpath exports (`@layerquant/<package>/<subpath>`) and the source file each maps to. */
const subpaths: Record<string, string> = {
  'allocators/node': 'allocators/src/node.ts',
  'export/browser': 'export/src/browser.ts',
  'gguf/node': 'gguf/src/node.ts',
  'allocators/testing': 'allocators/src/testing.ts',
  'quantizers/node': 'quantizers/src/node.ts',
  'quantizers/testing': 'quantizers/src/testing.ts',
  'runtime/graph': 'runtime/src/graph.ts',
  'runtime/testing': 'runtime/src/testing.ts',
  'sensitivity/testing': 'sensitivity/src/testing.ts',
  'stats/node': 'stats/src/node.ts',
  'tensor-io/browser': 'tensor-io/src/browser.ts',
  'tensor-io/testing': 'tensor-io/src/testing.ts',
  'perplexity/browser': 'perplexity/src/browser.ts',
  'pipeline/plugin-spec': 'pipeline/src/plugin-spec.ts',
  'sensitivity/browser': 'sensitivity/src/browser.ts',
};

/**
 * Exact-match aliases (`^@layerquant/runtime/testing$`): a plain string alias also matches "<name>/<sub>" and
 * rewrites `@layerquant/runtime/testing` to `.../runtime/src/index.ts/testing` when the shorter key is found
 * first, so no entry here depends on the order of the others.
 */
export const workspaceAlias: { find: RegExp; replacement: string }[] = [
  // The runtime's onnxruntime backend (package.json "imports"): onnxruntime-node under Node; a page maps it to backend-web.ts.
  { find: /^#ort-backend$/, replacement: `${root}packages/runtime/src/backend-node.ts` },
  ...Object.entries(subpaths).map(([sub, file]) => ({ find: new RegExp(`^@layerquant/${sub}$`), replacement: `${root}packages/${file}` })),
  ...packages.map((name) => ({ find: new RegExp(`^@layerquant/${name}$`), replacement: `${root}packages/${name}/src/index.ts` })),
];

export const sharedTestConfig = {
  resolve: { alias: workspaceAlias },
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks' as const,
    // The JSON report lets scripts/test-summary.mjs print one closing line for the whole run.
    reporters: ['default', ['json', { outputFile: '.vitest-report.json' }]] as const,
  },
};
