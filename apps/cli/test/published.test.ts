import { shippedModelDir } from '@layerquant/fixtures';
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// The CLI as `npm install layerquant` lays it out: its files (package.json "files") in node_modules/layerquant, and
// beside it only its declared dependencies. The private fixtures package (a devDependency) cannot be resolved.
const cliDir = fileURLToPath(new URL('..', import.meta.url));
const manifest = JSON.parse(readFileSync(join(cliDir, 'package.json'), 'utf8')) as { files: string[]; dependencies: Record<string, string>; devDependencies: Record<string, string> };
const root = mkdtempSync(join(tmpdir(), 'layerquant-published-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const installed = join(root, 'node_modules', 'layerquant');
mkdirSync(installed, { recursive: true });
cpSync(join(cliDir, 'package.json'), join(installed, 'package.json'));
for (const entry of manifest.files) cpSync(join(cliDir, entry), join(installed, entry), { recursive: true });
for (const dep of Object.keys(manifest.dependencies)) {
  const target = join(root, 'node_modules', dep);
  mkdirSync(dirname(target), { recursive: true });
  symlinkSync(realpathSync(join(cliDir, 'node_modules', dep)), target, 'dir');
}

function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(installed, 'dist/bin.js'), ...argv], { cwd: root, maxBuffer: 16 * 2 ** 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('the published CLI, installed without the private fixtures package', () => {
  it('declares fixtures as a devDependency only', () => {
    expect(manifest.dependencies['@layerquant/fixtures']).toBeUndefined();
    expect(manifest.devDependencies['@layerquant/fixtures']).toBeDefined();
  });

  it('runs: --version, and eval on the built-in brown-test text (shipped in @layerquant/datasets)', async () => {
    const version = await run('--version');
    expect(version.stderr).toBe('');
    expect(version.stdout).toMatch(/^layerquant \d+\.\d+\.\d+/);
    const evaluated = await run('eval', shippedModelDir, '--dataset', 'brown-test', '--max-tokens', '1024', '--json');
    expect(evaluated.stderr).toBe('');
    const json = JSON.parse(evaluated.stdout) as { perplexity: number; text: string; tokens: number };
    expect(json.tokens).toBe(1024);
    expect(Number.isFinite(json.perplexity)).toBe(true);
    // The text came from the installed datasets package, not from the repository's fixtures.
    expect(json.text).toMatch(/packages\/datasets\/data\/brown-test\.txt$/);
  });
});
