import { InvalidDataError, InvalidOptionError, LayerquantError, formatSeconds } from '@layerquant/core';
import { DEFAULT_CALIBRATION_BLOCKS, DEFAULT_SEQLEN, listMatrices, type MetricPlugin } from '@layerquant/sensitivity';
import { openCheckpoint, readTextFile } from '@layerquant/tensor-io';
import { Queue, type Job } from 'bullmq';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { cellLabel, reviveRow, type CellResult, type CellSpec, type DistributedCells, type GridDistributor } from '@layerquant/experiment';
import { QUEUE_NAME, blobKey, jobIds, parseTables, sha256Hex, statsToBlob, type CellCalibration, type CellJobData, type CellRefine, type JobName, type StatisticsJobData } from './jobs.js';
import { QueueResultError, checkCellResult, checkStatisticsResult, checkTableLayers } from './results.js';
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
    super('QUEUE_CONNECTION', `cannot reach the queue at ${redacted} (${reason}); start redis-server there (or check that it listens on that address and port), or fix the URL given to --queue`);
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
  /** Seconds to wait for Redis at start before a typed error (default 10). */
  readonly connectTimeoutSeconds?: number;
}

interface PlannedJob<N extends JobName = JobName> {
  readonly id: string;
  readonly name: N;
  readonly data: unknown;
  readonly label: string;
}

/** The cells of a grid as the coordinator enqueues them (@layerquant/experiment's DistributedCells). */
export type RunCellsOptions = DistributedCells;

function requireCalibrationPath(path: string | undefined): string {
  if (path === undefined) throw new InvalidOptionError('--calib', 'a calibrated quantizer\'s cells need calibration text: give --calib <file>');
  return path;
}

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
  const timeoutSeconds = options.connectTimeoutSeconds ?? 10;
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
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutSeconds} s`)), timeoutSeconds * 1000).unref()),
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
    /** A job as BullMQ reads it; `unreadable` where its fields in Redis were edited into something that is not JSON. */
    const readJob = async (id: string): Promise<Job | undefined | 'unreadable'> => {
      try {
        return await queue.getJob(id);
      } catch {
        return 'unreadable';
      }
    };
    for (const job of jobs) {
      const existing = await readJob(job.id);
      if (existing === 'unreadable') {
        log(`queue: job ${job.id} in Redis is not readable (its fields are not JSON: edited by something other than layerquant?); adding it again`);
        await queue.remove(job.id).catch(() => undefined);
        await add(job);
      } else if (existing && (await existing.getState()) === 'failed') {
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
        const found = await readJob(job.id);
        if (!found) {
          missing++;
          continue;
        }
        if (found === 'unreadable') {
          pending.delete(job.id);
          const reason = `job ${job.id}: its fields in Redis are not JSON (edited by something other than layerquant?); it is removed, so the next run adds it again`;
          failures.push({ label: job.label, reason });
          log(`queue: ${job.label}: ${reason}`);
          await queue.remove(job.id).catch(() => undefined);
          continue;
        }
        if (state === 'completed') {
          pending.delete(job.id);
          try {
            await onDone(job, found.returnvalue);
            finishedHere++;
          } catch (error) {
            if (!(error instanceof QueueResultError)) throw error;
            // A result that is not what was planned is never recorded; removed, so the next run computes it again.
            failures.push({ label: job.label, reason: error.message });
            log(`queue: ${job.label}: ${error.message}`);
            await found.remove().catch(() => undefined);
          }
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
        for (const job of pending.values()) if (!(await readJob(job.id))) await add(job);
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
      return async (request) => {
        // The layer chain, measured whole in one job: the activation metrics, and with a calibrated quantizer (GPTQ)
        // the weight metrics too (they quantize on the Hessians of the one layer pass). The rest a layer per job.
        const chain = request.metrics.filter((m) => m.input === 'activations' || request.calibrated === true);
        const weights = request.metrics.filter((m) => !chain.includes(m));
        const checkpoint = await openCheckpoint(modelDir);
        const modelLayers = [...new Set(listMatrices(checkpoint).map((m) => m.layer))].sort((a, b) => a - b);
        await checkpoint.close();
        const layers = weights.length > 0 ? modelLayers : [];
        const calibrationBlob = chain.length > 0 ? await publish(request.calibrationText) : null;
        const job = (metrics: readonly MetricPlugin[], jobLayers: readonly number[] | null, label: string): PlannedJob => {
          const ids = metrics.map((m) => m.id);
          return {
            id: jobIds.statistics(request.key, ids, jobLayers),
            name: 'statistics',
            label,
            data: { modelDir: resolve(modelDir), modelHash, metrics: ids, layers: jobLayers, calibrationBlob: jobLayers === null ? calibrationBlob : null, measure: request.measure } satisfies StatisticsJobData,
          };
        };
        const jobs: PlannedJob[] = [
          ...(chain.length > 0 ? [job(chain, null, `${chain.map((m) => m.table).join(', ')} (all layers, in order)`)] : []),
          ...layers.map((layer) => job(weights, [layer], `${weights.map((m) => m.table).join(', ')} layer ${layer}`)),
        ];
        const source = `queue ${address.redacted}`;
        const results = new Map<string, Record<string, unknown>>();
        const failures = await runJobs('statistics', jobs, async (planned, value) => {
          const data = planned.data as StatisticsJobData;
          const metrics = data.layers === null ? chain : weights;
          const texts = checkStatisticsResult({ jobId: planned.id, modelHash, tables: metrics.map((m) => m.table) }, value);
          let tables: Record<string, unknown>;
          try {
            tables = parseTables(texts, metrics, `${source} ${planned.label}`);
          } catch (error) {
            throw new QueueResultError(planned.id, 'tables', `do not parse as their metrics' CSV: ${(error as Error).message}`);
          }
          for (const metric of metrics) checkTableLayers(planned.id, metric.table, tables[metric.table], data.layers ?? modelLayers, data.layers !== null);
          results.set(planned.id, tables);
        });
        if (failures.length > 0) throw new QueueJobsFailedError(failures);
        const tables: Record<string, unknown> = chain.length > 0 ? { ...results.get(jobs[0]!.id)! } : {};
        // A weight metric's tables of the layers, joined into the model's (its `join`, else rows in layer order).
        const perLayer = jobs.slice(chain.length > 0 ? 1 : 0).map((planned) => results.get(planned.id)!);
        for (const metric of weights) {
          const parts = perLayer.map((part) => part[metric.table]);
          if (metric.join) {
            tables[metric.table] = metric.join(parts);
            continue;
          }
          if (parts.some((part) => !Array.isArray((part as { rows?: unknown } | undefined)?.rows))) {
            throw new InvalidDataError(`metric ${metric.id}`, 'its table has no rows array, so the tables of its layers cannot be joined; weight metrics return { rows } or give join()');
          }
          tables[metric.table] = { rows: parts.flatMap((part) => (part as { rows: readonly unknown[] }).rows) };
        }
        return tables;
      };
    },
    async runCells(run) {
      const textBlob = await publish(await readFile(run.text.path, 'utf8'));
      if (sha256Hex(blobs.get(textBlob)!) !== textBlob) throw new TypeError('blob hash');
      const statsBlob = await publish(statsToBlob(run.stats, run.metrics));
      // A calibrated quantizer's cells: its calibration text as a blob, read as the in-process cell reads it.
      const calibrationOptions = run.context.calibration;
      const calibration: CellCalibration | undefined = calibrationOptions
        ? {
            blob: await publish(calibrationOptions.text ?? (await readTextFile(requireCalibrationPath(calibrationOptions.calibrationPath), 'a UTF-8 calibration text with --calib'))),
            name: calibrationOptions.calibrationName ?? 'calibration',
            blocks: calibrationOptions.blocks ?? DEFAULT_CALIBRATION_BLOCKS,
            seqlen: calibrationOptions.seqlen ?? DEFAULT_SEQLEN,
          }
        : undefined;
      // experiment --refine: the statistics' calibration text as a blob, for the cells of the refining methods.
      const refine: CellRefine | undefined = run.refine
        ? {
            calibration: {
              blob: await publish(await readTextFile(requireCalibrationPath(run.refine.calibration.calibrationPath), 'a UTF-8 calibration text with --calib')),
              name: run.refine.calibration.calibrationName,
              blocks: run.refine.calibration.blocks,
              seqlen: run.refine.calibration.seqlen,
            },
            quantizer: run.refine.quantizer,
          }
        : undefined;
      const refines = (cell: CellSpec) => refine !== undefined && cell.kind === 'method' && run.refine!.methods.includes(cell.method.id);
      const jobs: PlannedJob[] = run.planned
        .filter((p) => !run.done.has(p.spec.key))
        .map((p) => ({
          id: jobIds.cell(p.spec.key),
          name: 'cell' as const,
          label: cellLabel(p.spec),
          data: {
            modelDir: resolve(run.modelDir), modelHash: run.modelHash, cell: p.spec, modelName: run.context.modelName, textBlob,
            seqlen: run.context.seqlen, maxTokens: run.context.maxTokens ?? null, seed: run.context.seed ?? 42, statsBlob: p.spec.kind === 'fp' ? null : statsBlob, configs: run.context.configs ?? null, quantizer: run.quantizer,
            ...(run.kld ? { kld: true } : {}),
            ...(calibration && p.spec.kind === 'method' ? { calibration } : {}),
            ...(refines(p.spec) ? { refine } : {}),
          } satisfies CellJobData,
        }));
      if (jobs.length < run.planned.length) log(`queue: ${run.planned.length - jobs.length} cell(s) already in --out, not enqueued`);
      if (jobs.length === 0) return;
      const tokens = run.context.maxTokens === undefined ? run.context.ids.length : Math.min(run.context.maxTokens, run.context.ids.length);
      const quantizerId = run.context.quantizer?.id ?? run.quantizer.id;
      const failures = await runJobs('cells', jobs, async (job, value) => {
        const { cell } = job.data as CellJobData;
        // A result is only ever stored under the key it was planned for, and only as the planned cell's row.
        const result = checkCellResult(
          {
            jobId: job.id, key: cell.key, modelHash: run.modelHash, modelName: run.context.modelName, method: cell.kind === 'fp' ? 'fp' : cell.method.id,
            budget: cell.kind === 'fp' ? null : cell.budget, quantizer: cell.kind === 'fp' ? null : quantizerId, tokens, seqlen: run.context.seqlen,
            ...(run.kld ? { kld: true } : {}),
            ...(refines(cell) ? { refine: true } : {}),
          },
          value,
        );
        log(`queue: ${job.label} done, ppl ${result.row.ppl.toFixed(4)}`);
        await run.onResult({ ...result, row: reviveRow(result.row) });
      });
      if (failures.length > 0) throw new QueueJobsFailedError(failures);
    },
    async close() {
      await queue.close();
    },
  };
}
