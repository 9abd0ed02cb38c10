#!/usr/bin/env bash
# Every package's tests in two lanes at once, after one build of everything. On a 2-core machine turbo's own
# scheduling started the CLI suite (a third of the test time) only after most other suites had run; here it starts
# at once. Lane 1: the CLI and the notebook. Lane 2: every other package, one after another. Exit: non-zero when
# either lane failed (every suite still runs: --continue).
set -u
turbo run build --output-logs=errors-only || exit $?
turbo run test --only --continue --concurrency=1 --filter=layerquant --filter=notebook &
first=$!
turbo run test --only --continue --concurrency=1 --filter='!layerquant' --filter='!notebook' &
second=$!
wait "$first"; a=$?
wait "$second"; b=$?
[ "$a" -eq 0 ] && [ "$b" -eq 0 ]
