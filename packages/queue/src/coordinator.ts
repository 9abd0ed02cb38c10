import { parseMeasuredCsv, parseSensitivityCsv, type FnormRow, type ModelStats } from '@layerquant/allocators';
import { LayerquantError, formatSeconds } from '@layerquant/core';
import { kurtosisTableFromFnorm, listMatrices } from '@layerquant/sensitivity';
import { openCheckpoint } from '@layerquant/tensor-io';
import { Queue, type Job } from 'bullmq';
import { readFile } from 'node:fs/promises';
import { cellLabel, reviveRow, type CellResult, type DistributedCells, type GridDistributor } from '@layerquant/experiment';
import { settingsKey } from '@layerquant/pipeline';
import { QUEUE_NAME, blobKey, jobIds, sha256Hex, statsToBlob, type CellJobData, type FnormJobData, type JobName, type SensitivityJobData, type SensitivityJobResult } from './jobs.js';
import { isAuthenticationError, parseQueueUrl, redactCredentials, type QueueAddress } from './redis-url.js';

/** Cells (or statistics jobs) that failed every attempt: reported together after the others finished. */
export class QueueJobsFailedError extends LayerquantError {
  constructor(readonly failures: readonly { label: string; reason: string }[]) {
    super(
      'QUEUE_JOBS_FAILED',
      `${failures.length} job(s) failed after every attempt: ${failures.map((f) => `${f.label}: ${f.reason}`).join('; ')}. ` +
        'The other results are written; fix the cause and run the same command again to retry only these',
    );
  }
}

/** Redis cannot be reached at all when the coordinator starts. */
export class QueueConnectionError extends LayerquantError {
  constructor(redacted: string, reason: string) {
    super('QUEUE_CONNECTION', `cannot reach the queue at ${redacted} (${reason}); start Redis there or fix --queue`);
  }
}

/** The few plain Redis commands the coordinator sends itself (blobs, the connection check). */
export interface RedisCommands {
  ping(): Promise<string>;
  exists(key: string): Promise<number>;
  set(key: string, value: string): Promise<unknown>;
  get(key: string): Promise<string | null>;
}

export interface CoordinatorOptions {
  readonly attempts: number;
  readonly log: (line: string) => void;
  /** How often the queue is polled, ms (default 500). */
  readonly pollMs?: number;
}

interface PlannedJob<N extends JobName = JobName> {
  readonly id: string;
  readonly name: N;
  readonly data: unknown;
  readonly label: string;
}

/** The cells of a grid as the coordinator enqueues them (@layerquant/experiment's DistributedCells). */
export type RunCellsOptions = DistributedCells;

/** A GridDistributor over Redis: `runGrid(grid, { connect: () => connectCoordinator(url, options) })`. */
export interface Coordinator extends GridDistributor {
  readonly address: QueueAddress;
}

/**
 * The coordinator side of `experiment --queue`: enqueues jobs (BullMQ job id = settings key, so a job added twice
 * exists once and a restarted coordinator finds the jobs of its first life), publishes the blobs they refer to,
 * polls their state, and hands finished results to the caller, which writes them to --out at once. A job that
 * vanished (Redis restarted without persistence) is published and added again; results already in --out are
 * never asked for again.
 */
export async function connectCoordinator(url: string, options: CoordinatorOptions): Promise<Coordinator> {
  const address = parseQueueUrl(url);
  const log = (line: string) => options.log(redactCredentials(line, address));
  const queue = new Queue(QUEUE_NAME, { connection: { ...address.connection, lazyConnect: false } });
  let lastError = '';
  queue.on('error', (error) => {
    const message = redactCredentials(error.message, address);
    if (isAuthenticationError(error)) return; // fatal: reported as the command's error
    if (message !== lastError) log(`queue: ${message} (retrying)`);
    lastError = message;
  });
  let client: RedisCommands;
  try {
    client = await Promise.race([
      (async () => {
        const c = (await queue.client) as unknown as RedisCommands;
        await c.ping();
        return c;
      })(),
      new Promise<never>((_, reject) => queue.on('error', (error) => isAuthenticationError(error) && reject(error))),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 10 s')), 10_000).unref()),
    ]);
  } catch (error) {
    // disconnect, not close: close waits for a connection that may never come.
    void queue.disconnect().catch(() => undefined);
    throw new QueueConnectionError(address.redacted, redactCredentials((error as Error).message, address));
  }
  log(`queue: connected to ${address.redacted} (queue "${QUEUE_NAME}")`);
  const blobs = new Map<string, string>();
  const publish = async (content: string): Promise<string> => {
    const hash = sha256Hex(content);
    blobs.set(hash, content);
    await client.set(blobKey(hash), content);
    return hash;
  };
  const republish = async () => {
    for (const [hash, content] of blobs) if (!(await client.exists(blobKey(hash)))) await client.set(blobKey(hash), content);
  };
  const pollMs = options.pollMs ?? 500;

  /**
   * Adds the jobs (existing ids are left as they are; failed ones of an earlier coordinator are retried) and
   * waits until each one completed or failed every attempt. Results are handed over as they come.
   */
  async function runJobs(kind: string, jobs: readonly PlannedJob[], onDone: (job: PlannedJob, value: unknown) => Promise<void>): Promise<{ label: string; reason: string }[]> {
    const pending = new Map(jobs.map((j) => [j.id, j]));
    const failures: { label: string; reason: string }[] = [];
    const add = async (job: PlannedJob) => {
      await queue.add(job.name, job.data, { jobId: job.id, attempts: options.attempts, backoff: { type: 'fixed', delay: 1000 }, removeOnComplete: false, removeOnFail: false });
    };
    for (const job of jobs) {
      const existing = await queue.getJob(job.id);
      if (existing && (await existing.getState()) === 'failed') {
        log(`queue: retrying ${job.label}, which failed in an earlier run (${redactCredentials(existing.failedReason ?? '', address)})`);
        await existing.retry();
      } else if (!existing) {
        await add(job);
      }
    }
    const started = performance.now();
    let finishedHere = 0;
    let lastLine = '';
    while (pending.size > 0) {
      let running = 0;
      let missing = 0;
      for (const job of [...pending.values()]) {
        const state = await queue.getJobState(job.id);
        if (state === 'unknown') {
          missing++;
          continue;
        }
        if (state !== 'completed' && state !== 'failed') {
          if (state === 'active') running++;
          continue;
        }
        // Read after its state: BullMQ writes a job's result or failure reason in the step that moves it to
        // completed or failed, so a job read before getState could predate them (an undefined result, "unknown error").
        const found: Job | undefined = await queue.getJob(job.id);
        if (!found) {
          missing++;
          continue;
        }
        if (state === 'completed') {
          pending.delete(job.id);
          finishedHere++;
          await onDone(job, found.returnvalue);
        } else if (state === 'failed') {
          pending.delete(job.id);
          const reason = redactCredentials(found.failedReason ?? 'unknown error', address);
          failures.push({ label: job.label, reason });
          log(`queue: ${job.label} failed after ${found.attemptsMade} attempt(s): ${reason}`);
        }
      }
      if (missing > 0) {
        log(`queue: ${missing} ${kind} job(s) are not in Redis (restarted without persistence?); publishing and adding them again`);
        await republish();
        for (const job of pending.values()) if (!(await queue.getJob(job.id))) await add(job);
      }
      const done = jobs.length - pending.size - failures.length;
      const elapsed = (performance.now() - started) / 1000;
      const eta = finishedHere > 0 && pending.size > 0 ? ` ETA ${formatSeconds((elapsed / finishedHere) * pending.size)}` : '';
      const line = `queue: ${kind} ${done}/${jobs.length} done, ${running} running, ${failures.length} failed${eta}`;
      if (line.replace(/ ETA .*/, '') !== lastLine.replace(/ ETA .*/, '')) log(line);
      lastLine = line;
      if (pending.size > 0) await new Promise((r) => setTimeout(r, pollMs));
    }
    return failures;
  }

  return {
    address,
    statisticsComputer({ modelDir, modelHash }) {
      return async (settings, calibrationText) => {
        const statsKey = settingsKey(settings);
        const checkpoint = await openCheckpoint(modelDir);
        const layers = [...new Set(listMatrices(checkpoint).map((m) => m.layer))].sort((a, b) => a - b);
        await checkpoint.close();
        const calibrationBlob = await publish(calibrationText);
        const jobs: PlannedJob[] = [
          {
            id: jobIds.sensitivity(statsKey), name: 'sensitivity', label: 'sensitivity (all layers, in order)',
            data: { modelDir, modelHash, calibrationBlob, calibrationName: settings.calibrationName, blocks: settings.blocks, seqlen: settings.seqlen, order: settings.order, measuredConfigs: settings.measuredConfigs } satisfies SensitivityJobData,
          },
          ...layers.map((layer) => ({ id: jobIds.fnorm(statsKey, layer), name: 'fnorm' as const, label: `fnorm layer ${layer}`, data: { modelDir, modelHash, layer, configs: settings.fnormConfigs } satisfies FnormJobData })),
        ];
        const fnormOf = new Map<number, FnormRow[]>();
        let sensitivityTables: SensitivityJobResult | undefined;
        const failures = await runJobs('statistics', jobs, async (job, value) => {
          if (job.name === 'sensitivity') sensitivityTables = value as SensitivityJobResult;
          else fnormOf.set((job.data as FnormJobData).layer, value as FnormRow[]);
        });
        if (failures.length > 0) throw new QueueJobsFailedError(failures);
        const fnorm = { rows: layers.flatMap((l) => fnormOf.get(l)!) };
        return {
          source: `queue ${address.redacted}`,
          fnorm,
          sensitivity: parseSensitivityCsv(sensitivityTables!.sensitivity, 'sensitivity job'),
          kurtosis: kurtosisTableFromFnorm(fnorm),
          ...(sensitivityTables!.measured ? { measured: parseMeasuredCsv(sensitivityTables!.measured, 'sensitivity job (measured)') } : {}),
        };
      };
    },
    async runCells(run) {
      const textBlob = await publish(await readFile(run.text.path, 'utf8'));
      if (sha256Hex(blobs.get(textBlob)!) !== textBlob) throw new TypeError('blob hash');
      const statsBlob = await publish(statsToBlob(run.stats));
      const jobs: PlannedJob[] = run.planned
        .filter((p) => !run.done.has(p.spec.key))
        .map((p) => ({
          id: jobIds.cell(p.spec.key),
          name: 'cell' as const,
          label: cellLabel(p.spec),
          data: {
            modelDir: run.modelDir, modelHash: run.modelHash, cell: p.spec, modelName: run.context.modelName, textBlob,
            seqlen: run.context.seqlen, maxTokens: run.context.maxTokens ?? null, seed: run.context.seed ?? 42, statsBlob: p.spec.kind === 'fp' ? null : statsBlob, configs: run.context.configs ?? null, quantizer: run.quantizer,
          } satisfies CellJobData,
        }));
      if (jobs.length < run.planned.length) log(`queue: ${run.planned.length - jobs.length} cell(s) already in --out, not enqueued`);
      if (jobs.length === 0) return;
      const failures = await runJobs('cells', jobs, async (job, value) => {
        const result = value as CellResult;
        const expected = (job.data as CellJobData).cell.key;
        // A result is only ever stored under the key it was computed for.
        if (!result || result.key !== expected) throw new TypeError(`job ${job.id} returned a result for ${String(result?.key)}`);
        log(`queue: ${job.label} done, ppl ${result.row.ppl === null ? 'NaN' : result.row.ppl.toFixed(4)}`);
        await run.onResult({ ...result, row: reviveRow(result.row) });
      });
      if (failures.length > 0) throw new QueueJobsFailedError(failures);
    },
    async close() {
      await queue.close();
    },
  };
}
