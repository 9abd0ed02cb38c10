// One place that maps every workspace package to its sources, so tests never need a build of a sibling.
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));
const packages = ['core', 'tensor-io', 'quantizers', 'runtime', 'sensitivity', 'allocators', 'perplexity', 'fixtures', 'export'];

export const workspaceAlias: Record<string, string> = {
  // Subpath exports come first: an alias also matches "<name>/<sub>", so the longer key must be found first.
  '@layerquant/allocators/node': `${root}packages/allocators/src/node.ts`,
  '@layerquant/quantizers/node': `${root}packages/quantizers/src/node.ts`,
  '@layerquant/runtime/graph': `${root}packages/runtime/src/graph.ts`,
  '@layerquant/runtime/testing': `${root}packages/runtime/src/testing.ts`,
  '@layerquant/tensor-io/browser': `${root}packages/tensor-io/src/browser.ts`,
  '@layerquant/perplexity/browser': `${root}packages/perplexity/src/browser.ts`,
  '@layerquant/sensitivity/browser': `${root}packages/sensitivity/src/browser.ts`,
  ...Object.fromEntries(packages.map((name) => [`@layerquant/${name}`, `${root}packages/${name}/src/index.ts`])),
};

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
