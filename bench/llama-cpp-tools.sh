#!/usr/bin/env bash
# Builds llama.cpp's own llama-quantize, llama-imatrix and llama-perplexity from the source bundle node-llama-cpp
# ships (node_modules/node-llama-cpp/llama/gitRelease.bundle: the llama.cpp release its binaries were built from),
# with Debian's cmake and g++, nothing downloaded. About 35 minutes on a loaded 2-core machine. The source and the
# build live outside the repository (default ~/.cache/layerquant/llama.cpp; first argument to change it) and are
# never committed. Prints the directory of the tools; bench/gguf-anchor.mjs takes it as --tools.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-$HOME/.cache/layerquant/llama.cpp}"
BUNDLE="$(node -e "
  const { dirname, join } = require('node:path'); const { existsSync } = require('node:fs');
  let dir = dirname(require.resolve('node-llama-cpp', { paths: ['packages/gguf'] }));
  while (!existsSync(join(dir, 'llama', 'gitRelease.bundle')) && dirname(dir) !== dir) dir = dirname(dir);
  console.log(join(dir, 'llama', 'gitRelease.bundle'));
")"
[ -f "$BUNDLE" ] || { echo "no node-llama-cpp source bundle at $BUNDLE; run pnpm install first" >&2; exit 2; }
command -v cmake >/dev/null || { echo "cmake is missing: apt-get install cmake g++" >&2; exit 2; }
mkdir -p "$OUT"
[ -d "$OUT/src/.git" ] || git clone -q "$BUNDLE" "$OUT/src"
cmake -S "$OUT/src" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DGGML_OPENMP=OFF \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$OUT/build" -j"${JOBS:-2}" --target llama-quantize llama-perplexity llama-imatrix
echo "$OUT/build/bin"
