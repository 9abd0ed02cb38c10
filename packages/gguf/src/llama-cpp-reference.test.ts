// llama.cpp's own block code as the oracle: ggml-quants.c from the source bundle node-llama-cpp ships (the llama.cpp
// release its binaries were built from), compiled here with the system's C compiler into a small harness. Nothing of
// it is committed; the build lives in the temp directory. Skipped where git, cc or the bundle is missing.
import { seededNormal } from '@layerquant/core';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeGgml, encodeGgml } from './codecs.js';
import { ggufTensorBytes, type GgmlTypeName } from './ggml-types.js';

const HARNESS = String.raw`
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
#include "ggml-quants.h"
void ggml_abort(const char * file, int line, const char * fmt, ...) { abort(); }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { abort(); }
const char * ggml_type_name(enum ggml_type type) { return ""; }
size_t ggml_type_size(enum ggml_type type) { abort(); }
/* harness <n> <type>: float32 values on stdin; the reference encoding, then its decoding, on stdout. */
int main(int argc, char ** argv) {
  int n = atoi(argv[1]);
  const char * t = argv[2];
  float * x = malloc(n * sizeof(float)), * y = malloc(n * sizeof(float));
  unsigned char * q = malloc(n * 4);
  if (fread(x, sizeof(float), n, stdin) != (size_t) n) return 1;
  size_t bytes = 0;
#define TYPE(name, lower, block, size) if (!strcmp(t, #name)) { quantize_row_##lower##_ref(x, (void *) q, n); dequantize_row_##lower((void *) q, y, n); bytes = n / block * size; }
  TYPE(Q4_0, q4_0, 32, 18) TYPE(Q4_1, q4_1, 32, 20) TYPE(Q5_0, q5_0, 32, 22) TYPE(Q5_1, q5_1, 32, 24) TYPE(Q8_0, q8_0, 32, 34)
  TYPE(Q2_K, q2_K, 256, 84) TYPE(Q3_K, q3_K, 256, 110) TYPE(Q4_K, q4_K, 256, 144) TYPE(Q5_K, q5_K, 256, 176) TYPE(Q6_K, q6_K, 256, 210)
  fwrite(q, 1, bytes, stdout);
  fwrite(y, sizeof(float), n, stdout);
  return 0;
}
`;

function bundlePath(): string | undefined {
  try {
    // The package's exports map hides package.json: walk up from its entry to the folder that holds llama/.
    let dir = dirname(createRequire(import.meta.url).resolve('node-llama-cpp'));
    while (!existsSync(join(dir, 'llama', 'gitRelease.bundle')) && dirname(dir) !== dir) dir = dirname(dir);
    const bundle = join(dir, 'llama', 'gitRelease.bundle');
    return existsSync(bundle) ? bundle : undefined;
  } catch {
    return undefined;
  }
}

const has = (command: string) => spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0;

/** Builds the harness once per bundle (kept in the temp directory across runs). */
function buildHarness(bundle: string): string {
  const dir = join(tmpdir(), `layerquant-ggml-reference-${statSync(bundle).size}`);
  const binary = join(dir, 'harness');
  if (existsSync(binary)) return binary;
  const source = join(dir, 'llama.cpp');
  mkdirSync(dir, { recursive: true });
  if (!existsSync(source)) execFileSync('git', ['clone', '-q', '--no-checkout', bundle, source], { stdio: 'ignore' });
  execFileSync('git', ['-C', source, 'checkout', '-q', 'HEAD', '--', 'ggml/src/ggml-quants.c', 'ggml/src/ggml-quants.h', 'ggml/src/ggml-common.h', 'ggml/src/ggml-impl.h', 'ggml/src/ggml-cpu/ggml-cpu-impl.h', 'ggml/include'], { stdio: 'ignore' });
  writeFileSync(join(dir, 'harness.c'), HARNESS);
  const include = ['-I', join(source, 'ggml/include'), '-I', join(source, 'ggml/src')];
  execFileSync('cc', ['-O1', ...include, join(dir, 'harness.c'), join(source, 'ggml/src/ggml-quants.c'), '-lm', '-o', `${binary}.tmp`], { stdio: 'ignore' });
  execFileSync('mv', [`${binary}.tmp`, binary]);
  return binary;
}

const bundle = bundlePath();
const available = bundle !== undefined && has('git') && has('cc');

describe.skipIf(!available)("llama.cpp's ggml-quants.c (from node-llama-cpp's source bundle) as the oracle", () => {
  const random = seededNormal(5);
  const rows = 32;
  const x = new Float32Array(rows * 512);
  for (let i = 0; i < x.length; i++) x[i] = random() * 0.03 * (1 + (Math.floor(i / 512) % 4)) + (i % 301 === 0 ? 0.4 * random() : 0) + (Math.floor(i / 512) % 3 === 0 ? 0.01 : 0);
  x.fill(0, 1024, 1536);
  x.fill(0.5, 2048, 2080);

  function reference(type: GgmlTypeName): { bytes: Uint8Array; values: Float32Array } {
    const out = execFileSync(buildHarness(bundle!), [String(x.length), type], { input: Buffer.from(x.buffer), maxBuffer: 1 << 26 });
    const size = ggufTensorBytes(type, [rows, 512]);
    return { bytes: new Uint8Array(out.subarray(0, size)), values: new Float32Array(new Uint8Array(out.subarray(size)).buffer) };
  }

  it.each(['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0'] as const)('%s: the reference encoder writes the bytes quantize_row_*_ref writes', (type) => {
    const { bytes } = reference(type);
    expect(Buffer.from(encodeGgml(type, x, [rows, 512])).equals(Buffer.from(bytes))).toBe(true);
  });

  it.each(['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as const)('%s: the decoder reads llama.cpp\'s bytes as dequantize_row_* does', (type) => {
    const { bytes, values } = reference(type);
    const ours = decodeGgml(type, bytes, [rows, 512]);
    const differing = [];
    for (let i = 0; i < x.length; i++) if (!(Math.abs(ours[i]! - values[i]!) <= Math.abs(values[i]!) * 2 ** -22)) differing.push(`value ${i}: ${ours[i]} vs ${values[i]}`);
    expect(differing.slice(0, 5), `${differing.length} values decode otherwise than llama.cpp`).toEqual([]);
  });

  it.each(['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as const)('%s: layerquant\'s encoder has a lower squared error than llama.cpp\'s reference encoder', (type) => {
    const { values } = reference(type);
    const ours = decodeGgml(type, encodeGgml(type, x, [rows, 512]), [rows, 512]);
    let theirs = 0;
    let mine = 0;
    for (let i = 0; i < x.length; i++) {
      theirs += (values[i]! - x[i]!) ** 2;
      mine += (ours[i]! - x[i]!) ** 2;
    }
    expect(mine).toBeLessThan(theirs);
  });
});
