import { defineConfig } from 'tsup';

export default defineConfig({
  // processor.js is loaded by BullMQ in each worker thread, from beside index.js (worker.ts finds it there).
  entry: ['src/index.ts', 'src/processor.ts'],
  format: ['esm'],
  dts: { entry: 'src/index.ts' },
  sourcemap: true,
  clean: true,
  target: 'es2022',
});
