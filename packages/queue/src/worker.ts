import { Job, UnrecoverableError, Worker, type JobJsonRaw } from 'bullmq';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LayerquantError } from '@layerquant/core';
import { MAX_JOB_DATA_BYTES, printable } from './job-schema.js';
import { PROCESSOR_ENV, QUEUE_NAME } from './jobs.js';
import { servedModels } from './model-access.js';
import { QueueConnectionError } from './coordinator.js';
import { isAuthenticationError, parseQueueUrl, redactCredentials } from './redis-url.js';

export interface WorkerOptions {
  readonly url: string;
  readonly concurrency: number;
  /**
   * The model directories this worker serves (`--model`): a job naming one of them is read there; a job naming
   * another path is served by the one whose content hash is the job's (a copy of the coordinator's model).
   */
  readonly models?: readonly string[];
  /** Directories under which every model directory is served (`--model-root`). At least one model or root. */
  readonly modelRoots?: readonly string[];
  /** Seconds to wait for Redis at start before a typed error (default 10). */
  readonly connectTimeoutSeconds?: number;
  /**
   * Seconds a job's lock lasts without renewal, and how often workers look for stalled jobs: a worker killed
   * mid-job has its job taken by another worker after about this long (BullMQ's lockDuration and stalledInterval).
   */
  readonly stallSeconds: number;
  readonly threads?: number;
  /** `--plugin` modules (absolute paths) the processor threads load, so cells can use their allocators and quantizers. */
  readonly plugins?: readonly string[];
  readonly log: (line: string) => void;
}

export interface RunningWorker {
  /** Resolves when the worker stopped (after `close`). */
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

/** The processor file beside this module in the built package (dist/processor.js). */
function processorFile(): string {
  const file = join(dirname(fileURLToPath(import.meta.url)), 'processor.js');
  if (!existsSync(file)) throw new LayerquantError('QUEUE_PROCESSOR', `${file} is missing; the queue worker runs from the built @layerquant/queue package (pnpm build)`);
  return file;
}

/**
 * BullMQ's Worker, with job data that is not JSON (or too large) failed for good. BullMQ parses a job's data
 * before any processor sees it; left alone, a parse error leaves the job active without a lock, so it is taken
 * again as stalled, forever. Here such a job is built with no data and failed with UnrecoverableError.
 */
class CheckedWorker extends Worker {
  private readonly unreadable = new Map<string, string>();

  protected override createJob(raw: JobJsonRaw, jobId: string): Job {
    const size = typeof raw.data === 'string' ? Buffer.byteLength(raw.data) : 0;
    if (size > MAX_JOB_DATA_BYTES) return this.unreadableJob(raw, jobId, `its data is ${size} bytes, more than ${MAX_JOB_DATA_BYTES}`);
    try {
      JSON.parse(raw.data || '{}');
    } catch (error) {
      return this.unreadableJob(raw, jobId, `its data is not JSON (${printable((error as Error).message)})`);
    }
    try {
      return super.createJob(raw, jobId);
    } catch (error) {
      return this.unreadableJob(raw, jobId, `its stored fields are not what BullMQ writes (${printable((error as Error).message)})`);
    }
  }

  private unreadableJob(raw: JobJsonRaw, jobId: string, reason: string): Job {
    let opts = {};
    try {
      opts = Job.optsFromJSON(raw.opts);
    } catch {
      // opts unreadable too: defaults (the job fails for good anyway).
    }
    const id = raw.id || jobId;
    this.unreadable.set(id, `job ${printable(id)}: ${reason}; the job is refused, not retried`);
    return new Job(this as never, typeof raw.name === 'string' ? raw.name : '', null, opts, id);
  }

  protected override callProcessJob(job: Job, token: string, signal?: AbortSignal): Promise<unknown> {
    const reason = job.id === undefined ? undefined : this.unreadable.get(job.id);
    if (reason !== undefined) {
      this.unreadable.delete(job.id!);
      return Promise.reject(new UnrecoverableError(reason));
    }
    return super.callProcessJob(job, token, signal);
  }
}

/**
 * A queue worker: BullMQ's Worker with the job processor (processor.ts) in worker threads, `concurrency` of them,
 * each with its own model session. The processor computes with the same functions as the in-process path.
 */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const address = parseQueueUrl(options.url);
  const served = servedModels({ ...(options.models ? { models: options.models } : {}), ...(options.modelRoots ? { roots: options.modelRoots } : {}) });
  const timeoutSeconds = options.connectTimeoutSeconds ?? 10;
  const log = (line: string) => options.log(redactCredentials(line, address));
  const worker = new CheckedWorker(QUEUE_NAME, processorFile(), {
    connection: address.connection,
    concurrency: options.concurrency,
    useWorkerThreads: true,
    workerThreadsOptions: {
      env: {
        ...process.env,
        [PROCESSOR_ENV.url]: options.url,
        [PROCESSOR_ENV.served]: JSON.stringify(served),
        [PROCESSOR_ENV.threads]: options.threads ? String(options.threads) : '',
        [PROCESSOR_ENV.plugins]: JSON.stringify(options.plugins ?? []),
      },
    },
    lockDuration: options.stallSeconds * 1000,
    stalledInterval: options.stallSeconds * 1000,
    maxStalledCount: 2,
  });
  // Names and ids come from Redis: shown bounded, control characters escaped.
  const describe = (job: { name: string; id?: string | undefined }) => `${printable(String(job.name), 40)} job ${printable(String(job.id))}`;
  let lastError = '';
  worker.on('error', (error) => {
    const message = redactCredentials(error.message, address);
    if (isAuthenticationError(error)) return; // fatal: reported as the command's error
    if (message !== lastError) log(`worker ${process.pid}: queue ${address.redacted}: ${message} (retrying)`);
    lastError = message;
  });
  worker.on('failed', (job, error) => {
    if (job) log(`worker ${process.pid}: ${describe(job)} failed: ${redactCredentials(error.message, address)}`);
  });
  worker.on('stalled', (jobId) => log(`worker ${process.pid}: job ${printable(jobId)} stalled (its worker stopped renewing the lock); it is taken over`));
  try {
    await Promise.race([
      worker.waitUntilReady(),
      new Promise<never>((_, reject) => worker.on('error', (error) => isAuthenticationError(error) && reject(error))),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutSeconds} s`)), timeoutSeconds * 1000).unref()),
    ]);
  } catch (error) {
    void worker.disconnect().catch(() => undefined);
    throw new QueueConnectionError(address.redacted, redactCredentials((error as Error).message, address));
  }
  const models = [...served.models, ...served.roots.map((r) => `${r}/*`)].join(', ');
  log(`worker ${process.pid}: serving ${models}`);
  log(`worker ${process.pid}: waiting for jobs on ${address.redacted} (queue "${QUEUE_NAME}", concurrency ${options.concurrency}, stall interval ${options.stallSeconds} s)`);
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  return {
    closed,
    async close() {
      await worker.close();
      resolveClosed();
    },
  };
}
