import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ProximalOptions } from './hqq-proximal.js';
import { wasmKernelModule } from './quant-kernel.js';
import { gptqMemoryLayout, solveGptqWasm } from './gptq-kernel.js';
import type { GptqProblem } from './gptq-solver.js';
import { runCholeskyRequest, type CholeskyRequest, type CholeskyThreads } from './cholesky-kernel.js';

/** One matrix for a worker: group-major weights and what to do with them (see QuantKernel.quantize). */
export interface KernelTask {
  readonly grouped: Float32Array;
  readonly groupSize: number;
  readonly bits: number;
  readonly roundZero: boolean;
  readonly solver: ProximalOptions | null;
}

export interface KernelTaskResult {
  readonly scale: Float32Array;
  readonly zero: Float32Array;
  readonly codes: Uint8Array;
  readonly iterations: number;
}

/** Worker threads running the WebAssembly kernel on whole matrices (Node only). */
export interface KernelPool {
  readonly size: number;
  run(task: KernelTask): Promise<KernelTaskResult>;
  /** Solves a GPTQ problem (its column loop) on a worker: fills its weights, codes and ranges, as solveGptqWasm does. */
  runGptq(problem: GptqProblem): Promise<void>;
  /**
   * Runs one thread's part of a Hessian factorization region on a worker, in the request's shared memory
   * (runCholeskyRequest). Goes ahead of queued matrices: the calling thread waits on it.
   */
  runCholesky(request: CholeskyRequest): Promise<void>;
  /**
   * The pool as helper threads of a Hessian's factorization (prepareHessianOn, quantizeOn): size - 1 workers beside
   * the calling thread, so the factorization takes as many threads as the pool.
   */
  readonly choleskyThreads: CholeskyThreads;
  close(): Promise<void>;
}

// The worker instantiates the module it is given and makes the same calls, in the same order, as
// createWasmKernel().quantize in quant-kernel.ts; the pool's test checks the results are bit-identical.
// GPTQ's copy-in, gptqRun and copy-out are solveGptqWasm itself (its source and its layout function's, embedded).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const kernel = new WebAssembly.Instance(workerData.module, { env: { pow: Math.pow } }).exports;
const gptqMemoryLayout = ${gptqMemoryLayout.toString()};
const solveGptqWasm = ${solveGptqWasm.toString()};
const runCholeskyRequest = ${runCholeskyRequest.toString()};
let cholesky = null;
parentPort.on('message', ({ id, kind, problem, request, grouped, groupSize, bits, roundZero, solver }) => {
  if (kind === 'cholesky') {
    try {
      // one instance per shared memory (a Hessian's workspace), made on its first request
      if (!cholesky || cholesky.key !== request.shared.key) {
        cholesky = { key: request.shared.key, kernel: new WebAssembly.Instance(request.shared.module, { env: { memory: request.shared.memory } }).exports };
      }
      runCholeskyRequest(cholesky.kernel, request);
      parentPort.postMessage({ id });
    } catch (error) {
      parentPort.postMessage({ id, error: String(error && error.stack || error) });
    }
    return;
  }
  if (kind === 'gptq') {
    try {
      solveGptqWasm(kernel, problem);
      const { weights, codes, low, high } = problem;
      parentPort.postMessage({ id, weights, codes, low, high }, [weights.buffer, codes.buffer, low.buffer, high.buffer]);
    } catch (error) {
      parentPort.postMessage({ id, error: String(error && error.stack || error) });
    }
    return;
  }
  try {
    const count = grouped.length;
    const groups = count / groupSize;
    const scaleAt = count * 4;
    const zeroAt = scaleAt + groups * 4;
    const codesAt = zeroAt + groups * 4;
    const missing = codesAt + count - kernel.memory.buffer.byteLength;
    if (missing > 0) kernel.memory.grow(Math.ceil(missing / 65536));
    const heap = kernel.memory.buffer;
    new Float32Array(heap, 0, count).set(grouped);
    const maxV = 2 ** bits - 1;
    kernel.minMaxInit(0, scaleAt, zeroAt, groups, groupSize, maxV, roundZero ? 1 : 0);
    const iterations = solver
      ? kernel.proximalSolve(0, scaleAt, zeroAt, groups, groupSize, maxV, solver.lpNorm, solver.beta, solver.kappa, solver.iterations)
      : 0;
    if (solver && solver.integerZero) {
      // roundZerosToIntegers of hqq-proximal.ts: half to even (1.5 * 2^52), within [0, maxV].
      const z = new Float32Array(heap, zeroAt, groups);
      for (let k = 0; k < groups; k++) { const r = z[k] + 6755399441055744 - 6755399441055744; z[k] = r < 0 ? 0 : r > maxV ? maxV : r; }
    }
    kernel.roundToCodes(0, scaleAt, zeroAt, codesAt, groups, groupSize, maxV);
    const scale = new Float32Array(heap, scaleAt, groups).slice();
    const zero = new Float32Array(heap, zeroAt, groups).slice();
    const codes = new Uint8Array(heap, codesAt, count).slice();
    parentPort.postMessage({ id, scale, zero, codes, iterations }, [scale.buffer, zero.buffer, codes.buffer]);
  } catch (error) {
    parentPort.postMessage({ id, error: String(error && error.stack || error) });
  }
});
`;

/** Threads worth using: the machine's parallelism (at least 1). */
export function defaultWorkerCount(): number {
  return Math.max(1, availableParallelism());
}

/**
 * A pool of `size` workers, each with its own instance of the WebAssembly kernel. Undefined where WebAssembly SIMD
 * is unavailable. Tasks queue; each worker runs one at a time. Close it when done.
 */
export function createKernelPool(size: number): KernelPool | undefined {
  const module = wasmKernelModule();
  if (!module) return undefined;
  type GptqResultMessage = { weights: Float32Array; codes: Uint8Array; low: Float32Array; high: Float32Array };
  type Pending =
    | { kind: 'hqq'; task: KernelTask; resolve: (r: KernelTaskResult) => void; reject: (e: Error) => void }
    | { kind: 'gptq'; problem: GptqProblem; resolve: (r: GptqResultMessage) => void; reject: (e: Error) => void }
    | { kind: 'cholesky'; request: CholeskyRequest; resolve: () => void; reject: (e: Error) => void };
  const queue: Pending[] = [];
  const idle: Worker[] = [];
  const running = new Map<number, Pending>();
  let nextId = 0;
  let failed: Error | undefined;
  let closing = false;
  const workers = Array.from({ length: size }, () => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module } });
    worker.on('message', (message: { id: number; error?: string } & KernelTaskResult & GptqResultMessage) => {
      const pending = running.get(message.id);
      running.delete(message.id);
      if (message.error) pending?.reject(new Error(`quantization worker failed: ${message.error}`));
      else if (pending?.kind === 'gptq') pending.resolve({ weights: message.weights, codes: message.codes, low: message.low, high: message.high });
      else if (pending?.kind === 'cholesky') pending.resolve();
      else pending?.resolve({ scale: message.scale, zero: message.zero, codes: message.codes, iterations: message.iterations });
      idle.push(worker);
      pump();
    });
    // A worker that dies (an error, or an exit nobody asked for) fails everything in flight and queued, and every
    // later task, rather than leave a promise that never settles.
    const die = (error: Error) => {
      if (failed) return;
      failed = error;
      for (const pending of [...running.values(), ...queue.splice(0)]) pending.reject(error);
      running.clear();
    };
    worker.on('error', (error) => die(new Error(`quantization worker failed: ${error.message}`)));
    worker.on('exit', (code) => {
      if (!closing) die(new Error(`quantization worker exited (code ${code}) before the pool was closed`));
    });
    idle.push(worker);
    return worker;
  });
  const pump = () => {
    while (idle.length > 0 && queue.length > 0) {
      const worker = idle.pop()!;
      const pending = queue.shift()!;
      const id = nextId++;
      running.set(id, pending);
      if (pending.kind === 'gptq') {
        worker.postMessage({ id, kind: 'gptq', problem: pending.problem });
        continue;
      }
      if (pending.kind === 'cholesky') {
        // the shared memory and the module are shared with the worker, not copied; the kernel's exports stay here
        const { key, memory, module, layout } = pending.request.shared;
        worker.postMessage({ id, kind: 'cholesky', request: { ...pending.request, shared: { key, memory, module, layout } } });
        continue;
      }
      const { grouped, groupSize, bits, roundZero, solver } = pending.task;
      worker.postMessage({ id, grouped, groupSize, bits, roundZero, solver });
    }
  };
  const runCholesky = (request: CholeskyRequest) =>
    new Promise<void>((resolve, reject) => {
      if (failed) return reject(failed);
      queue.unshift({ kind: 'cholesky', request, resolve, reject });
      pump();
    });
  return {
    size,
    runCholesky,
    choleskyThreads: Object.freeze({ count: size - 1, run: runCholesky }),
    run(task) {
      return new Promise<KernelTaskResult>((resolve, reject) => {
        if (failed) return reject(failed);
        queue.push({ kind: 'hqq', task, resolve, reject });
        pump();
      });
    },
    async runGptq(problem) {
      const result = await new Promise<GptqResultMessage>((resolve, reject) => {
        if (failed) return reject(failed);
        queue.push({ kind: 'gptq', problem, resolve, reject });
        pump();
      });
      problem.weights.set(result.weights);
      problem.codes.set(result.codes);
      problem.low.set(result.low);
      problem.high.set(result.high);
    },
    async close() {
      // Tasks still queued or running are rejected, not left to wait for workers that are gone.
      closing = true;
      failed ??= new Error('the quantization worker pool is closed');
      const left = [...running.values(), ...queue.splice(0)];
      await Promise.all(workers.map((w) => w.terminate()));
      for (const pending of left) pending.reject(failed);
      running.clear();
    },
  };
}
