import { Queue, UnrecoverableError, type Job } from 'bullmq';
import { cellLabel, computeCell, openCellSession, type CellResult, type CellSession } from '@layerquant/experiment';
import { MissingPluginError, defaultKldCacheDir, floatKldBase, loadPlugins, openRefineSession, quantizerOf, type PluginRegistries, type RefineSession } from '@layerquant/pipeline';
import type { RedisCommands } from './coordinator.js';
import { testHookDelayMs } from '@layerquant/tensor-io';
import { InvalidJobError, printable, validateJob } from './job-schema.js';
import { JOB_PROCESSORS, PROCESSOR_ENV, MissingBlobError, QUEUE_NAME, blobKey, sha256Hex, statsFromBlob, tokenIds, type JobEnvironment, type JobProcessor } from './jobs.js';
import { resolveJobModel, type ServedModels } from './model-access.js';
import { parseQueueUrl, redactCredentials } from './redis-url.js';

/**
 * The job processor of `layerquant worker`, run by BullMQ in a worker thread of its own (a sandboxed processor):
 * quantization and the ONNX runs keep that thread busy for seconds at a time, while the worker's main thread
 * keeps renewing the job's lock, so a live worker's job is never taken for stalled. A thread runs one job at a
 * time and keeps its model session for the next. Settings come from the environment the main thread sets.
 */

const address = parseQueueUrl(process.env[PROCESSOR_ENV.url] ?? '');
/** The models this worker serves (real paths, checked by the main thread: model-access.ts' servedModels). */
const served = JSON.parse(process.env[PROCESSOR_ENV.served] ?? '') as ServedModels;
const threads = process.env[PROCESSOR_ENV.threads] ? Number(process.env[PROCESSOR_ENV.threads]) : undefined;
/** The worker's registries: built-ins and its `--plugin` modules (absolute paths from the main thread), loaded once. */
let registries: Promise<PluginRegistries> | undefined;
const plugins = (): Promise<PluginRegistries> => (registries ??= loadPlugins(JSON.parse(process.env[PROCESSOR_ENV.plugins] || '[]') as string[]));
const log = (line: string) => process.stderr.write(`${redactCredentials(line, address)}\n`);
let blobClient: Queue | undefined;
let session: { dir: string; session: CellSession } | undefined;
/** experiment --refine: the measurer of the last refined cell's model, calibration and quantizer, kept for the next. */
let refining: { key: string; session: RefineSession } | undefined;
const blobCache = new Map<string, string>();

const env: JobEnvironment = {
  plugins,
  ...(threads ? { threads } : {}),
  async blob(hash, what) {
    const cached = blobCache.get(hash);
    if (cached !== undefined) return cached;
    blobClient ??= new Queue(QUEUE_NAME, { connection: address.connection });
    const content = await ((await blobClient.client) as unknown as RedisCommands).get(blobKey(hash));
    if (content === null || sha256Hex(content) !== hash) throw new MissingBlobError(hash, what);
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
    // A calibrated quantizer's Hessians, collected here on the served model from the job's calibration text.
    const calibration = data.calibration && data.cell.kind === 'method' ? data.calibration : undefined;
    const calibrationText = calibration ? await env.blob(calibration.blob, `the calibration text "${printable(calibration.name, 200)}"`) : undefined;
    session ??= { dir: modelDir, session: await openCellSession(modelDir, threads) };
    // experiment --kld: the unquantized model's logits from this worker's cache (computed on its first such job).
    const window = { seqlen: data.seqlen, ...(data.maxTokens === null ? {} : { maxTokens: data.maxTokens }) };
    const kld = data.kld ? await floatKldBase(modelDir, ids, window, { cacheDir: defaultKldCacheDir(), evaluation: threads ? { threads } : {} }) : undefined;
    // experiment --refine: the float model's distributions on the calibration, measured here once for every cell
    // of the same model, calibration and quantizer (as the in-process grid opens one measurer).
    const refine = data.refine && data.cell.kind === 'method' ? data.refine : undefined;
    if (refine) {
      const key = JSON.stringify([modelDir, refine.calibration.blob, refine.calibration.blocks, refine.calibration.seqlen, refine.quantizer]);
      if (refining?.key !== key) {
        await refining?.session.close();
        refining = undefined;
        const text = await env.blob(refine.calibration.blob, `the calibration text "${printable(refine.calibration.name, 200)}"`);
        refining = {
          key,
          session: await openRefineSession(modelDir, quantizerOf(registry, refine.quantizer), {
            calibrationPath: refine.calibration.name, text, calibrationName: refine.calibration.name, blocks: refine.calibration.blocks, seqlen: refine.calibration.seqlen, ...(threads ? { threads } : {}),
          }),
        };
      }
    }
    try {
      return await computeCell(session.session, data.cell, {
        ...(refine ? { refine: { session: refining!.session, onDone: (cell: string, report: { kept: string; additiveKld: number; refinedKld: number }) => log(`worker ${process.pid}: refine ${cell}: kept the ${report.kept} allocation (measured KLD ${report.additiveKld} additive, ${report.refinedKld} corrected)`) } } : {}),
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
        ...(calibration ? { calibration: { text: calibrationText!, calibrationName: calibration.name, blocks: calibration.blocks, seqlen: calibration.seqlen, ...(threads ? { threads } : {}) } } : {}),
      });
    } finally {
      await kld?.base.close();
    }
  },
  log,
};

/** Whether the job's quantizer is a calibrated one of this worker's registry (a missing one fails later, retried, naming the plug-in). */
function isCalibrated(registry: PluginRegistries, id: string): boolean {
  return registry.quantizers.has(id) && registry.quantizers.get(id).calibration !== undefined;
}

export default async function processJob(job: Job): Promise<unknown> {
  const jobId = String(job.id);
  let checked: ReturnType<typeof validateJob>;
  try {
    checked = validateJob(jobId, job.name, job.data);
  } catch (error) {
    // Data that does not match the schema never will: failed for good, not retried.
    if (error instanceof InvalidJobError) throw new UnrecoverableError(error.message);
    throw error;
  }
  if (checked.name === 'cell' && checked.data.cell.kind === 'method' && checked.data.calibration === undefined && isCalibrated(await plugins(), checked.data.quantizer.id)) {
    // A calibrated quantizer's cell without its calibration never computes: failed for good, like a schema error.
    throw new UnrecoverableError(new InvalidJobError(jobId, 'data.calibration', `is missing: quantizer "${printable(checked.data.quantizer.id, 40)}" is calibrated, its cells quantize on the calibration text the job names`).message);
  }
  const what = checked.name === 'cell' ? `cell ${cellLabel(checked.data.cell)} (${checked.data.cell.key})` : `${checked.name} job ${printable(jobId)}`;
  // Before any file of the job's model path is read: is it one this worker serves? (A retryable failure: another
  // worker may serve it.)
  const model = await resolveJobModel(served, jobId, checked.data);
  const started = performance.now();
  log(`worker ${process.pid}: computing ${what}, attempt ${job.attemptsMade + 1}`);
  const processor = JOB_PROCESSORS[checked.name] as JobProcessor<typeof checked.name>;
  const value = await processor.process(checked.data as never, model, env);
  // Test hook: the interrupt tests hold a computed job for a while before it is reported, to kill the worker mid-job.
  const delay = testHookDelayMs('LAYERQUANT_TEST_CELL_DELAY_MS');
  if (delay > 0) await new Promise((r) => setTimeout(r, delay));
  log(`worker ${process.pid}: computed ${what} in ${((performance.now() - started) / 1000).toFixed(2)} s`);
  return value;
}
