import { Queue, type Job } from 'bullmq';
import { resolve } from 'node:path';
import { cellLabel, computeCell, openCellSession, type CellResult, type CellSession } from '@layerquant/experiment';
import { MissingPluginError, defaultKldCacheDir, floatKldBase, loadPlugins, modelContentHash, quantizerOf, type PluginRegistries } from '@layerquant/pipeline';
import type { RedisCommands } from './coordinator.js';
import { JOB_PROCESSORS, PROCESSOR_ENV, MissingBlobError, ModelMismatchError, QUEUE_NAME, blobKey, sha256Hex, statsFromBlob, tokenIds, type JobEnvironment, type JobName } from './jobs.js';
import { parseQueueUrl, redactCredentials } from './redis-url.js';

/**
 * The job processor of `layerquant worker`, run by BullMQ in a worker thread of its own (a sandboxed processor):
 * quantization and the ONNX runs keep that thread busy for seconds at a time, while the worker's main thread
 * keeps renewing the job's lock, so a live worker's job is never taken for stalled. A thread runs one job at a
 * time and keeps its model session for the next. Settings come from the environment the main thread sets.
 */

const address = parseQueueUrl(process.env[PROCESSOR_ENV.url] ?? '');
const modelOverride = process.env[PROCESSOR_ENV.model] || undefined;
const threads = process.env[PROCESSOR_ENV.threads] ? Number(process.env[PROCESSOR_ENV.threads]) : undefined;
/** The worker's registries: built-ins and its `--plugin` modules (absolute paths from the main thread), loaded once. */
let registries: Promise<PluginRegistries> | undefined;
const plugins = (): Promise<PluginRegistries> => (registries ??= loadPlugins(JSON.parse(process.env[PROCESSOR_ENV.plugins] || '[]') as string[]));
const log = (line: string) => process.stderr.write(`${redactCredentials(line, address)}\n`);
let blobClient: Queue | undefined;
let session: { dir: string; session: CellSession } | undefined;
const blobCache = new Map<string, string>();

const env: JobEnvironment = {
  plugins,
  ...(threads ? { threads } : {}),
  async modelDir(job) {
    const dir = resolve(modelOverride ?? job.modelDir);
    const hash = await modelContentHash(dir);
    if (hash !== job.modelHash) throw new ModelMismatchError(dir, job.modelHash, hash);
    return dir;
  },
  async blob(hash) {
    const cached = blobCache.get(hash);
    if (cached !== undefined) return cached;
    blobClient ??= new Queue(QUEUE_NAME, { connection: address.connection });
    const content = await ((await blobClient.client) as unknown as RedisCommands).get(blobKey(hash));
    if (content === null || sha256Hex(content) !== hash) throw new MissingBlobError(hash);
    blobCache.set(hash, content);
    return content;
  },
  async computeCell(data, modelDir): Promise<CellResult> {
    const text = await env.blob(data.textBlob);
    const ids = await tokenIds(modelDir, data.textBlob, text);
    const registry = await plugins();
    const stats = data.statsBlob ? statsFromBlob(await env.blob(data.statsBlob), `statistics ${data.statsBlob.slice(0, 16)}`, registry.metrics.list()) : undefined;
    if (session && session.dir !== modelDir) {
      await session.session.close();
      session = undefined;
    }
    if (data.cell.kind === 'method' && !registry.allocators.has(data.cell.method.allocator)) {
      throw new MissingPluginError('allocator', data.cell.method.allocator, registry.allocators.ids());
    }
    const quantizer = quantizerOf(registry, data.quantizer);
    session ??= { dir: modelDir, session: await openCellSession(modelDir, threads) };
    // experiment --kld: the unquantized model's logits from this worker's cache (computed on its first such job).
    const window = { seqlen: data.seqlen, ...(data.maxTokens === null ? {} : { maxTokens: data.maxTokens }) };
    const kld = data.kld ? await floatKldBase(modelDir, ids, window, { cacheDir: defaultKldCacheDir(), evaluation: threads ? { threads } : {} }) : undefined;
    try {
      return await computeCell(session.session, data.cell, {
        ...(kld ? { kldBase: kld.base } : {}),
        allocators: registry.allocators.list(),
        quantizer,
        modelName: data.modelName,
        ...(stats ? { stats } : {}),
        ids,
        seqlen: data.seqlen,
        ...(data.maxTokens === null ? {} : { maxTokens: data.maxTokens }),
        seed: data.seed,
        ...(data.configs ? { configs: data.configs } : {}),
      });
    } finally {
      await kld?.base.close();
    }
  },
  log,
};

function describe(job: Job): string {
  return job.name === 'cell' ? `cell ${cellLabel(job.data.cell)} (${job.data.cell.key})` : `${job.name} job ${job.id}`;
}

export default async function processJob(job: Job): Promise<unknown> {
  const processor = JOB_PROCESSORS[job.name as JobName];
  if (!processor) throw new Error(`job ${job.id} has the unknown name "${job.name}"; is this worker older than the coordinator?`);
  const started = performance.now();
  log(`worker ${process.pid}: computing ${describe(job)}, attempt ${job.attemptsMade + 1}`);
  const value = await processor.process(job.data as never, env);
  log(`worker ${process.pid}: computed ${describe(job)} in ${((performance.now() - started) / 1000).toFixed(2)} s`);
  return value;
}
