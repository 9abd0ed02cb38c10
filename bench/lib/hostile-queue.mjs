// The queue part of bench/hostile-sweep.mjs: tampered jobs against a real redis-server on 127.0.0.1 (see below).
/** Runs the queue cases (needs /usr/bin/redis-server); returns without counting where there is none. */
export async function queueCases() {
  // Filled in with the queue's job validation (issue 27, step 4).
}
