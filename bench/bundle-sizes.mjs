// What a web app ships when it imports a browser entry of layerquant: each entry bundled as an app bundles it (the
// built dist/ files, esbuild --platform=browser, minified ESM, everything the entry reaches included), its bytes and
// gzip bytes, the WebAssembly it fetches beside the bundle, and the largest inputs (metafile). The same entries
// tests/packaging checks for Node built-ins; this script measures them.
//
//   pnpm build && node bench/bundle-sizes.mjs [--out bench/results/bundle-sizes]
//
// Writes <out>.md and <out>.json.
import { build } from 'esbuild';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { out: { type: 'string', default: join(ROOT, 'bench/results/bundle-sizes') } } });

/** The browser-safe entries: the list tests/packaging checks for Node built-ins. */
const ENTRIES = JSON.parse(readFileSync(join(ROOT, 'tests/packaging/browser-entries.json'), 'utf8'));
const KiB = (n) => (n / 1024).toFixed(1);
const here = dirname(fileURLToPath(import.meta.url));

const rows = [];
for (const entry of ENTRIES) {
  const result = await build({
    stdin: { contents: `export * from '${entry}';`, resolveDir: here, loader: 'js' },
    bundle: true,
    platform: 'browser',
    format: 'esm',
    minify: true,
    write: false,
    metafile: true,
    logLevel: 'silent',
    // A .wasm file the code fetches by URL is an asset beside the bundle, not inlined.
    loader: { '.wasm': 'file' },
    outdir: join(here, '.bundle-out'),
  });
  const js = result.outputFiles.filter((f) => f.path.endsWith('.js'));
  const assets = result.outputFiles.filter((f) => !f.path.endsWith('.js') && !f.path.endsWith('.map'));
  const code = Buffer.concat(js.map((f) => Buffer.from(f.contents)));
  const inputs = Object.entries(result.metafile.outputs)
    .filter(([path]) => path.endsWith('.js'))
    .flatMap(([, output]) => Object.entries(output.inputs))
    .map(([path, { bytesInOutput }]) => ({ path: path.replace(/^.*node_modules\//, ''), bytes: bytesInOutput }));
  // Per package: the bytes of the bundle each dependency contributes.
  const byPackage = new Map();
  for (const { path, bytes } of inputs) {
    // A workspace package is reached through its link (../packages/<name>/dist/...); a dependency through node_modules.
    const workspace = /(?:^|\/)packages\/([^/]+)\/dist\//.exec(path);
    const pkg = workspace ? `@layerquant/${workspace[1]}` : (/^(?:\.pnpm\/[^/]+\/node_modules\/)?(@[^/]+\/[^/]+|[^/]+)/.exec(path)?.[1] ?? path);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + bytes);
  }
  rows.push({
    entry,
    bytes: code.length,
    gzipBytes: gzipSync(code, { level: 9 }).length,
    assets: assets.map((a) => ({ file: a.path.split('/').at(-1), bytes: a.contents.length })),
    packages: [...byPackage].sort((a, b) => b[1] - a[1]).map(([name, bytes]) => ({ name, bytes })),
  });
  console.error(`${entry}: ${KiB(code.length)} KiB, ${KiB(rows.at(-1).gzipBytes)} KiB gzip`);
}

// The WebAssembly kernels a page fetches (quantizers' dist), for the record: bytes on disk.
const quantizersDist = join(ROOT, 'packages/quantizers/dist');
const wasm = readdirSync(quantizersDist, { recursive: true }).filter((f) => String(f).endsWith('.wasm')).map((f) => ({ file: String(f), bytes: statSync(join(quantizersDist, String(f))).size }));

const md = [
  `Browser bundles of layerquant's browser entries (esbuild ${(await import('esbuild')).version}, --platform=browser, minified ESM, from the built dist/), ${new Date().toISOString().slice(0, 10)}; load average ${loadavg()[0].toFixed(1)} (sizes do not depend on it).`,
  'KiB = 1024 bytes; gzip at level 9. "largest parts": the bytes each package contributes to the bundle.',
  '',
  '| entry | minified KiB | gzip KiB | assets beside the bundle | largest parts (KiB) |',
  '| --- | ---: | ---: | --- | --- |',
  ...rows.map((r) => `| \`${r.entry}\` | ${KiB(r.bytes)} | ${KiB(r.gzipBytes)} | ${r.assets.map((a) => `${a.file} ${KiB(a.bytes)}`).join(', ') || 'none'} | ${r.packages.slice(0, 4).map((p) => `${p.name} ${KiB(p.bytes)}`).join(', ')} |`),
  '',
  `WebAssembly files in @layerquant/quantizers/dist: ${wasm.map((w) => `${w.file} ${KiB(w.bytes)} KiB`).join(', ') || 'none (inlined in the JavaScript)'}.`,
  '',
];
writeFileSync(`${values.out}.md`, md.join('\n'));
writeFileSync(`${values.out}.json`, `${JSON.stringify({ date: new Date().toISOString(), rows, wasm }, null, 2)}\n`);
console.error(`wrote ${values.out}.md and .json`);
