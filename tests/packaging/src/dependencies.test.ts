import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Each package's published dependencies are the packages its published files import: nothing missing (a user's
 * install would fail to resolve it) and nothing more (a user would download it for nothing: allocators once pulled
 * transformers.js, onnxruntime and sharp through a dependency it never imported). Read from dist/, what is packed:
 * the modules and their type declarations (a type a declaration names must resolve for a TypeScript user).
 */
const packagesDir = fileURLToPath(new URL('../../../packages/', import.meta.url));

function distFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && (e.name.endsWith('.js') || e.name.endsWith('.d.ts')))
    .map((e) => join(e.parentPath, e.name));
}

/** Bare package names imported by a built ES module (static and dynamic imports, re-exports). */
export function importedPackages(code: string): Set<string> {
  const names = new Set<string>();
  for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["']([^"'.][^"']*)["']/gm)) {
    const spec = m[1]!;
    // Node built-ins (tsup writes `node:fs` as `fs`).
    if (spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0]!)) continue;
    // The package's own subpath imports (package.json "imports", e.g. runtime's #ort-backend) are its files.
    if (spec.startsWith('#')) continue;
    names.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
  }
  return names;
}

const packages = readdirSync(packagesDir).filter((name) => existsSync(join(packagesDir, name, 'package.json')));

describe.each(packages)('packages/%s', (name) => {
  it('declares exactly the packages its dist/ imports as dependencies (or peer dependencies)', () => {
    const manifest = JSON.parse(readFileSync(join(packagesDir, name, 'package.json'), 'utf8')) as { name: string; dependencies?: object; peerDependencies?: object };
    const files = distFiles(join(packagesDir, name, 'dist'));
    expect(files.length, `${name}/dist (run pnpm build)`).toBeGreaterThan(0);
    const imported = new Set<string>();
    for (const file of files) for (const p of importedPackages(readFileSync(file, 'utf8'))) if (p !== manifest.name) imported.add(p);
    const declared = new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.peerDependencies ?? {})]);
    expect([...imported].filter((p) => !declared.has(p)).sort(), 'imported but not declared').toEqual([]);
    expect([...declared].filter((p) => !imported.has(p)).sort(), 'declared but never imported').toEqual([]);
  });
});

it('reads the imports of built code (static, dynamic, re-exports; not node: built-ins or relative files)', () => {
  const code = `import { a } from "@x/y/sub";\nexport * from 'z';\nconst m = await import("w/deep");\nimport "side-effect";\nimport { b } from "./local.js";\nimport { c } from "node:fs";\nimport { d } from "path";\nimport { e } from "#ort-backend";`;
  expect([...importedPackages(code)].sort()).toEqual(['@x/y', 'side-effect', 'w', 'z']);
});
