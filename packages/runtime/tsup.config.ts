import { defineConfig } from 'tsup';

export default defineConfig({
  // Both backends are built; '#ort-backend' stays an import that package.json "imports" resolves (node or browser).
  entry: ['src/index.ts', 'src/graph.ts', 'src/testing.ts', 'src/backend-node.ts', 'src/backend-web.ts'],
  external: ['#ort-backend'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
});
