import { InvalidOptionError } from '@layerquant/core';
import { parseCommandArgs, parseIntegerOption, parseNumberOption, requireString, stringOption } from '../args.js';
import type { Command } from '../command.js';
import { startWorker } from '@layerquant/queue';

const USAGE = `layerquant worker --queue <url> [options]

Runs the jobs \`layerquant experiment --queue <url>\` enqueues (grid cells, fnorm per layer, activation
sensitivity) on this machine, until stopped with Ctrl-C or SIGTERM (the job in hand is finished first). Each job
carries the content hash of the coordinator's model; a worker whose model differs refuses it.

  --queue <url>           redis://[user:password@]host:port/db, the coordinator's (credentials are never printed)
  --concurrency <n>       jobs at a time in this process, each with its own model session (default 1)
  --model <dir>           read this copy of the model instead of the coordinator's path
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
      model: { type: 'string' },
      'stall-interval': { type: 'string' },
      threads: { type: 'string' },
    });
    if (positionals.length > 0) throw new InvalidOptionError(positionals[0]!, 'the worker takes no positional arguments; the jobs name the model');
    const url = requireString(values.queue, '--queue', 'the Redis URL the coordinator enqueues on, e.g. redis://127.0.0.1:6379/0');
    const concurrency = parseIntegerOption(stringOption(values, 'concurrency'), '--concurrency', 1, 1);
    const stallSeconds = parseNumberOption(stringOption(values, 'stall-interval'), '--stall-interval', 30, (n) => n >= 0.5 && n <= 86_400);
    const threadsText = stringOption(values, 'threads');
    const threads = threadsText === undefined ? undefined : parseIntegerOption(threadsText, '--threads', 0, 1);
    const modelDir = stringOption(values, 'model');
    const worker = await startWorker({
      url,
      concurrency,
      stallSeconds,
      ...(modelDir ? { modelDir } : {}),
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
