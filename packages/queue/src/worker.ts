import { Worker } from 'bullmq';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LayerquantError } from '@layerquant/core';
import { PROCESSOR_ENV, QUEUE_NAME } from './jobs.js';
import { QueueConnectionError } from './coordinator.js';
import { isAuthenticationError, parseQueueUrl, redactCredentials } from './redis-url.js';

export interface WorkerOptions {
  readonly url: string;
  readonly concurrency: number;
  /** Read this model directory instead of the path in the job (a copy per machine). */
  readonly modelDir?: string;
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
 * A queue worker: BullMQ's Worker with the job processor (processor.ts) in worker threads, `concurrency` of them,
 * each with its own model session. The processor computes with the same functions as the in-process path.
 */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const address = parseQueueUrl(options.url);
  const log = (line: string) => options.log(redactCredentials(line, address));
  const worker = new Worker(QUEUE_NAME, processorFile(), {
    connection: address.connection,
    concurrency: options.concurrency,
    useWorkerThreads: true,
    workerThreadsOptions: {
      env: {
        ...process.env,
        [PROCESSOR_ENV.url]: options.url,
        [PROCESSOR_ENV.model]: options.modelDir ?? '',
        [PROCESSOR_ENV.threads]: options.threads ? String(options.threads) : '',
        [PROCESSOR_ENV.plugins]: JSON.stringify(options.plugins ?? []),
      },
    },
    lockDuration: options.stallSeconds * 1000,
    stalledInterval: options.stallSeconds * 1000,
    maxStalledCount: 2,
  });
  const describe = (job: { name: string; id?: string | undefined }) => `${job.name} job ${job.id}`;
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
  worker.on('stalled', (jobId) => log(`worker ${process.pid}: job ${jobId} stalled (its worker stopped renewing the lock); it is taken over`));
  try {
    await Promise.race([
      worker.waitUntilReady(),
      new Promise<never>((_, reject) => worker.on('error', (error) => isAuthenticationError(error) && reject(error))),
    ]);
  } catch (error) {
    void worker.disconnect().catch(() => undefined);
    throw new QueueConnectionError(address.redacted, redactCredentials((error as Error).message, address));
  }
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
