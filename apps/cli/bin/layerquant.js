#!/usr/bin/env node
// The `layerquant` bin. A committed launcher rather than dist/bin.js itself: pnpm links a workspace package's bin
// at install time, before the first build has written dist/, so `pnpm exec layerquant` works after the README's set-up.
import { existsSync } from 'node:fs';

const built = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(built)) {
  process.stderr.write('layerquant: error: the command is not built yet; run `pnpm build` in the repository root\n');
  process.exit(1);
}
await import(built.href);
