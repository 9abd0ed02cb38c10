import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The packages as `npm install` gives them to a user, outside the repository: every package packed with `pnpm pack`
 * (its "files", workspace versions replaced), unpacked into <temp>/node_modules, its third-party dependencies linked
 * from the pnpm store as installed for the workspace (offline), nothing else: the private @layerquant/fixtures is not
 * there. Then each README's runnable example (a ```js block whose first line is `// node <file>.mjs <args>`) runs
 * from <temp> as written, its arguments filled in: <model-dir> the shipped model, <stats-dir> the authors' Llama-2-7B
 * tables, <out-dir> a new directory.
 */
const repo = fileURLToPath(new URL('../../../', import.meta.url));
const packagesDir = join(repo, 'packages');
const shippedModelDir = join(packagesDir, 'fixtures/models/llama-brown-26m');
const paperStatsDir = join(packagesDir, 'fixtures/paper-data/llama-2-7b');
const cliBin = join(repo, 'apps/cli/dist/bin.js');

/** Packages whose README shows no runnable example, and why (every other README must have one). */
const NOT_RUN: Record<string, string> = {
  gguf: "needs node-llama-cpp, an optional install, and a quantized checkpoint first (apps/cli's gguf tests run the same calls)",
  queue: 'needs a redis-server and a worker process (apps/cli/test/queue.test.ts runs the same calls against a real redis-server)',
};

/** What each example must print (its README's comments say the same). */
const PRINTS: Record<string, RegExp[]> = {
  core: [/^4\.25390625$/m, /unknown quantizer "hqq"; available: rtn/],
  datasets: [/node_modules\/@layerquant\/datasets\/data\/brown-test\.txt$/m],
  stats: [/^224$/m],
  allocators: [/^\[ 31 \]/m, /objective: 4694\.765625/, /^sensi-milp true$/m],
  'tensor-io': [/architecture: 'LlamaForCausalLM'/, /\[\s*506,\s*7855/],
  runtime: [/^32768$/m],
  perplexity: [/^perplexity \d+\.\d+ on 2048 tokens$/m],
  quantizers: [/paperBitsPerWeight: 4\.25390625/, /^true$/m],
  export: [/onnx\/model_q4\.onnx 4\.5625/, /b4g64: 224/],
  sensitivity: [/deadColumns: 0/],
  pipeline: [/^4\.2539 bits per weight \(paper\), perplexity \d+\.\d+ on the first 1024 tokens$/m],
  experiment: [/^- fp /m, /^4\.25 hqq 4\.2539 /m],
};

interface Example {
  readonly pkg: string;
  readonly file: string;
  readonly args: readonly string[];
  readonly code: string;
}

function codeBlocks(markdown: string): { lang: string; code: string }[] {
  return [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```/gm)].map((m) => ({ lang: m[1]!, code: m[2]! }));
}

const readmes = readdirSync(packagesDir)
  .filter((name) => existsSync(join(packagesDir, name, 'README.md')) && !JSON.parse(readFileSync(join(packagesDir, name, 'package.json'), 'utf8')).private)
  .map((name) => ({ pkg: name, markdown: readFileSync(join(packagesDir, name, 'README.md'), 'utf8') }));

const examples: Example[] = readmes.flatMap(({ pkg, markdown }) =>
  codeBlocks(markdown).flatMap(({ code }) => {
    const marker = /^\/\/ node (\S+\.mjs)((?: <[a-z-]+>)*)/.exec(code);
    if (!marker || NOT_RUN[pkg]) return [];
    return [{ pkg, file: `${pkg}-${marker[1]}`, args: marker[2]!.trim().split(' ').filter(Boolean), code }];
  }),
);

const root = mkdtempSync(join(tmpdir(), 'layerquant-readmes-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** `pnpm pack` of every published package, unpacked as npm would install it; third-party dependencies linked from the store. */
function installPacked(): void {
  const packs = join(root, 'packs');
  execFileSync('pnpm', ['-r', '--filter', './packages/*', '--filter', '!@layerquant/fixtures', 'pack', '--pack-destination', packs], { cwd: repo, stdio: 'pipe' });
  const modules = join(root, 'node_modules');
  const thirdParty = new Map<string, string>();
  for (const tarball of readdirSync(packs)) {
    const unpacked = join(packs, tarball.replace(/\.tgz$/, ''));
    mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', join(packs, tarball), '-C', unpacked, '--strip-components=1']);
    const manifest = JSON.parse(readFileSync(join(unpacked, 'package.json'), 'utf8')) as { name: string; dependencies?: Record<string, string> };
    const target = join(modules, manifest.name);
    mkdirSync(dirname(target), { recursive: true });
    execFileSync('mv', [unpacked, target]);
    const source = join(packagesDir, manifest.name.replace('@layerquant/', ''));
    for (const dep of Object.keys(manifest.dependencies ?? {})) {
      if (!dep.startsWith('@layerquant/') && !thirdParty.has(dep)) thirdParty.set(dep, realpathSync(join(source, 'node_modules', dep)));
    }
  }
  for (const [dep, path] of thirdParty) {
    mkdirSync(dirname(join(modules, dep)), { recursive: true });
    symlinkSync(path, join(modules, dep), 'dir');
  }
}

function run(file: string, args: readonly string[], cwd = root): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [file, ...args], { cwd, maxBuffer: 64 * 2 ** 20, env: { ...process.env, NODE_OPTIONS: '' } }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const outDirs = new Map<string, string>();
function argumentsOf(example: Example): string[] {
  return example.args.map((a) => {
    if (a === '<model-dir>') return shippedModelDir;
    if (a === '<stats-dir>') return paperStatsDir;
    if (a === '<out-dir>') {
      // an empty directory, as a user would make one
      const dir = join(root, 'out', example.file.replace(/\.mjs$/, ''));
      mkdirSync(dir, { recursive: true });
      outDirs.set(example.file, dir);
      return dir;
    }
    throw new Error(`${example.pkg}/README.md: unknown argument ${a} in "// node ${example.file}"`);
  });
}

const results = new Map<string, { code: number; stdout: string; stderr: string }>();

/** Installs the tarballs, then runs every example, two at a time (the CI machine has 2 cores), one Node process each. */
beforeAll(async () => {
  installPacked();
  const queue = [...examples];
  const next = async (): Promise<void> => {
    const example = queue.shift();
    if (!example) return;
    const path = join(root, example.file);
    writeFileSync(path, example.code);
    const started = performance.now();
    results.set(example.file, await run(path, argumentsOf(example)));
    // what each example costs, for keeping this suite short (CI runs it on 2 cores)
    console.log(`${example.file}: ${((performance.now() - started) / 1000).toFixed(1)} s`);
    await next();
  };
  await Promise.all([next(), next()]);
}, 400_000);

describe('package READMEs, installed from packed tarballs outside the repository', () => {
  it('every published package README has a runnable example (or says here why not); none imports the private fixtures', () => {
    expect(readmes.length).toBeGreaterThan(10);
    for (const { pkg, markdown } of readmes) {
      expect(markdown, `${pkg}/README.md`).not.toMatch(/@layerquant\/fixtures/);
      if (NOT_RUN[pkg]) continue;
      expect(examples.some((e) => e.pkg === pkg), `${pkg}/README.md has no \`// node <file>.mjs\` example`).toBe(true);
      expect(PRINTS[pkg], `${pkg}: what its example prints`).toBeDefined();
    }
  });

  it('installs from packed tarballs alone: no @layerquant/fixtures beside them, no package.json above', () => {
    expect(existsSync(join(root, 'node_modules/@layerquant/core/dist/index.js'))).toBe(true);
    expect(existsSync(join(root, 'node_modules/@layerquant/fixtures'))).toBe(false);
    expect(existsSync(join(root, 'package.json'))).toBe(false);
  });

  it.each(Object.keys(PRINTS))('%s: its example runs as written and prints what its README says', (pkg) => {
    const mine = examples.filter((e) => e.pkg === pkg);
    expect(mine.length).toBeGreaterThan(0);
    for (const example of mine) {
      const result = results.get(example.file)!;
      expect(result.code, `${example.file} exit code; stderr: ${result.stderr}`).toBe(0);
      // no error, and no deprecation (a file handle left to the garbage collector prints DEP0137 there)
      expect(result.stderr, `${example.file} stderr`).not.toMatch(/Error|Cannot find|DeprecationWarning/);
    }
    const printed = mine.map((e) => results.get(e.file)!.stdout).join('\n');
    for (const pattern of PRINTS[pkg]!) expect(printed).toMatch(pattern);
  });

  it("every example type-checks as a TypeScript user's editor checks it (checkJs against the packed .d.ts files)", () => {
    // The examples are plain .mjs, so a wrong property (TS2339) or a missing export runs until it is reached, or
    // prints undefined; tsc over the installed tarballs' declarations catches it as a user's editor would.
    const tsc = join(repo, 'tests/packaging/node_modules/typescript/bin/tsc');
    const files = examples.map((e) => join(root, e.file));
    for (const file of files) expect(existsSync(file), file).toBe(true);
    let output = '';
    try {
      execFileSync(process.execPath, [tsc, '--noEmit', '--allowJs', '--checkJs', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--skipLibCheck', '--types', 'node', '--typeRoots', join(repo, 'tests/packaging/node_modules/@types'), ...files], { cwd: root, stdio: 'pipe', encoding: 'utf8' });
    } catch (error) {
      output = String((error as { stdout?: string }).stdout ?? '') + String((error as { stderr?: string }).stderr ?? '');
    }
    expect(output).toBe('');
  }, 120_000);

  it("experiment's grid script gives the rows `layerquant experiment` gives for the same grid, to the last digit", async () => {
    const grid = examples.find((e) => e.pkg === 'experiment')!;
    const scriptOut = outDirs.get(grid.file)!;
    const cliOut = join(root, 'out', 'cli-grid');
    const methods = /expandMethodList\('([^']+)'\)/.exec(grid.code)![1]!;
    const budgets = /budgets: \[([^\]]+)\]/.exec(grid.code)![1]!.replace(/\s/g, '');
    const maxTokens = /maxTokens: (\d+)/.exec(grid.code)![1]!;
    const cli = await run(cliBin, ['experiment', shippedModelDir, '--methods', methods, '--budgets', budgets, '--max-tokens', maxTokens, '--out', cliOut, '--json']);
    expect(cli.code, cli.stderr).toBe(0);
    type Row = Record<string, unknown>;
    const rowsOf = (dir: string) =>
      (JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as { rows: Row[] }).rows.map((row) => Object.fromEntries(Object.entries(row).filter(([key]) => !/seconds|path|dir|time/i.test(key))));
    const script = rowsOf(scriptOut);
    expect(script.map((r) => r.method)).toEqual(['fp', 'hqq']);
    expect(script).toEqual(rowsOf(cliOut));
  }, 300_000);
});
