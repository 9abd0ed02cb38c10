import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Debian's redis-server, the real thing (never a mock); CI installs it (scripts/ensure-redis.sh, run by `pnpm test:all`). */
export const REDIS_SERVER = '/usr/bin/redis-server';
/**
 * Whether the queue suites can run here. In CI (`CI` set, as CI services set it) they must: a missing redis-server
 * fails the test files that import this (an error at import), never a silent skip; elsewhere they are skipped.
 */
export const haveRedis = existsSync(REDIS_SERVER) || missingRedis(process.env.CI);

export function missingRedis(ci: string | undefined): false {
  if (ci && ci !== 'false' && ci !== '0') {
    throw new Error(`${REDIS_SERVER} is missing and CI=${ci}: the queue tests must run in CI; install Debian's redis-server (scripts/ensure-redis.sh)`);
  }
  return false;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** True once something answers PING on the port (+PONG, or -NOAUTH with a password). */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('error', () => resolve(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(/^(\+PONG|-NOAUTH)/.test(data.toString()));
    });
  });
}

export interface TestRedis {
  readonly port: number;
  readonly dir: string;
  /** redis://[:password@]127.0.0.1:port/0 */
  readonly url: string;
  stop(): Promise<void>;
  /** Stops the server and starts a new one on the same port (data lost unless appendonly). */
  restart(): Promise<void>;
}

/** Starts redis-server on a free loopback port in a temporary directory; no snapshots. */
export async function startRedis(options: { password?: string; appendonly?: boolean } = {}): Promise<TestRedis> {
  if (!haveRedis) throw new Error(`${REDIS_SERVER} is missing: the queue tests need Debian's redis-server (apt-get install redis-server, or bash scripts/ensure-redis.sh as root)`);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'redis-'));
  let child: ChildProcess | undefined;
  const start = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', options.appendonly ? 'yes' : 'no', '--dir', dir];
    if (options.password) args.push('--requirepass', options.password);
    child = spawn(REDIS_SERVER, args, { cwd: dir, stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      if (await answers(port)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`redis-server did not start on 127.0.0.1:${port}`);
  };
  const stop = async () => {
    const c = child;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGTERM');
    });
  };
  await start();
  return {
    port,
    dir,
    url: `redis://${options.password ? `:${options.password}@` : ''}127.0.0.1:${port}/0`,
    stop,
    async restart() {
      await stop();
      await start();
    },
  };
}
