import { InvalidOptionError } from '@layerquant/core';
import { parseCommandArgs, parseIntegerOption, parseNumberOption, requireString, stringOption } from '../args.js';
import type { Command } from '../command.js';

const USAGE = `layerquant worker --queue <url> (--model <dir> | --model-root <dir>)... [options]

Runs the jobs \`layerquant experiment --queue <url>\` enqueues (grid cells, fnorm per layer, activation
sensitivity) on this machine, until stopped with Ctrl-C or SIGTERM (the job in hand is finished first).

A worker serves only the models it is started for. A job naming another path fails before any file of it is read
(both sides compared as real paths, so .. and links cannot leave them); a job's data is checked against a schema
(unknown or mistyped fields fail it for good); results carry the full content hash of the model read, and the
coordinator records only results that match the cell it planned. Whoever can write to the Redis can still make
jobs fail (deny service); it cannot make a worker read outside its models. Results are not signed: give only
trusted machines write access to the Redis.

  --queue <url>           redis://[user:password@]host:port/db, the coordinator's (credentials are never printed)
  --model <dir>           a model directory this worker serves (repeatable): a job naming it is read there, a job
                          naming another path is served by the --model directory with the job's content hash (a
                          copy of the coordinator's model at another path on this machine)
  --model-root <dir>      serve every model directory under <dir> (repeatable)
  --connect-timeout <s>   seconds to wait for Redis at start before an error (default 10)
  --concurrency <n>       jobs at a time in this process, each with its own model session (default 1)
  --stall-interval <s>    seconds without a lock renewal before another worker takes over a job of a worker that
                          died (default 30); every worker of a grid should use the same value
  --threads <n>           onnxruntime threads per model session (default: one per core)
  --plugin <module>       load allocators, quantizers and metrics from a module (a path or package name;
                          repeatable): give the coordinator's --plugin modules, so its cells run here too`;

export const workerCommand: Command = {
  name: 'worker',
  summary: 'run the jobs of `experiment --queue` (cells, statistics) from a Redis queue on this machine',
  usage: USAGE,
  async run({ argv, stderr, plugins }) {
    const { values, positionals } = parseCommandArgs(argv, {
      queue: { type: 'string' },
      concurrency: { type: 'string' },
      model: { type: 'string', multiple: true },
      'model-root': { type: 'string', multiple: true },
      'connect-timeout': { type: 'string' },
      'stall-interval': { type: 'string' },
      threads: { type: 'string' },
    });
    // Loaded here, not when the CLI starts: BullMQ and ioredis cost every other command about half a second.
    const { redactQueueUrl, startWorker } = await import('@layerquant/queue');
    // redactQueueUrl: a URL given without --queue may hold a password.
    if (positionals.length > 0) throw new InvalidOptionError(redactQueueUrl(positionals[0]!), 'the worker takes no positional arguments; give the Redis URL with --queue and the models with --model or --model-root');
    const url = requireString(values.queue, '--queue', 'the Redis URL the coordinator enqueues on, e.g. redis://127.0.0.1:6379/0');
    const concurrency = parseIntegerOption(stringOption(values, 'concurrency'), '--concurrency', 1, 1);
    const stallSeconds = parseNumberOption(stringOption(values, 'stall-interval'), '--stall-interval', 30, (n) => n >= 0.5 && n <= 86_400);
    const threadsText = stringOption(values, 'threads');
    const threads = threadsText === undefined ? undefined : parseIntegerOption(threadsText, '--threads', 0, 1);
    const models = (values.model as string[] | undefined) ?? [];
    const modelRoots = (values['model-root'] as string[] | undefined) ?? [];
    const connectTimeoutSeconds = parseNumberOption(stringOption(values, 'connect-timeout'), '--connect-timeout', 10, (n) => n > 0 && n <= 3600);
    const worker = await startWorker({
      url,
      concurrency,
      stallSeconds,
      models,
      modelRoots,
      connectTimeoutSeconds,
      ...(threads ? { threads } : {}),
      ...(plugins && plugins.modules.length > 0 ? { plugins: plugins.modules } : {}),
      log: (line) => stderr(`${line}\n`),
    });
    const stop = (signal: string) => {
      stderr(`worker ${process.pid}: ${signal}: finishing the job in hand, then stopping\n`);
      void worker.close();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
    await worker.closed;
  },
};
