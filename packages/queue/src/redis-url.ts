import { InvalidOptionError } from '@layerquant/core';

/** ioredis connection options for BullMQ (which opens its own connections from them). */
export interface RedisConnection {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username?: string;
  readonly password?: string;
  readonly tls?: Record<string, never>;
  /** BullMQ workers need commands to wait for a reconnect instead of failing after a few retries. */
  readonly maxRetriesPerRequest: null;
}

export interface QueueAddress {
  readonly connection: RedisConnection;
  /** The URL with any user and password replaced by `***`: the only form ever printed or stored. */
  readonly redacted: string;
}

/** Replaces credentials in any text that may hold the URL (error messages of the client, say). */
export function redactCredentials(text: string, address?: QueueAddress): string {
  let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^@/\s]*@/gi, '$1***@');
  const password = address?.connection.password;
  if (password) out = out.split(password).join('***');
  return out;
}

/**
 * The form of a `--queue` value that messages may show, whether or not it parses: everything before its last `@`
 * (where a password is, in any typo of the URL: `redis//:pw@h`, `redis:/:pw@h`, a password holding `/` or a space)
 * becomes `***`, keeping only a scheme-like prefix that ends in `/` or is redis: or rediss:.
 */
export function redactQueueUrl(url: string): string {
  const at = url.lastIndexOf('@');
  if (at < 0) return url;
  const prefix = /^([a-z][a-z0-9+.-]*:?\/+|rediss?:)/i.exec(url)?.[0] ?? '';
  return `${prefix}***@${url.slice(at + 1)}`;
}

/**
 * Parses `redis://[user:password@]host[:port][/db]` (or `rediss://` for TLS). Messages never repeat the URL
 * itself, only its redacted form, so a password cannot reach a log through a typo.
 */
export function parseQueueUrl(url: string, option = '--queue'): QueueAddress {
  const redactedInput = redactQueueUrl(url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidOptionError(option, `"${redactedInput}" is not a URL; use redis://host:port/db, e.g. redis://127.0.0.1:6379/0`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new InvalidOptionError(option, `"${redactedInput}" is not a redis:// or rediss:// URL; use redis://host:port/db`);
  }
  if (!parsed.hostname) throw new InvalidOptionError(option, `"${redactedInput}" names no host; use redis://host:port/db`);
  const port = parsed.port ? Number(parsed.port) : 6379;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidOptionError(option, `"${redactedInput}": the port must be 1 to 65535`);
  const dbText = parsed.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0) throw new InvalidOptionError(option, `"${redactedInput}": the database "${redactQueueUrl(dbText)}" must be a number, e.g. /0`);
  let username: string;
  let password: string;
  try {
    username = decodeURIComponent(parsed.username);
    password = decodeURIComponent(parsed.password);
  } catch {
    throw new InvalidOptionError(option, `"${redactedInput}": the user or password holds a malformed %-escape; encode special characters as %XX`);
  }
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  const auth = username || password ? '***@' : '';
  return {
    connection: {
      host,
      port,
      db,
      ...(username ? { username } : {}),
      ...(password ? { password } : {}),
      ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
      maxRetriesPerRequest: null,
    },
    redacted: `${parsed.protocol}//${auth}${parsed.host}/${db}`,
  };
}

/** Errors no reconnect can cure: a wrong or missing password, a user without access. */
export function isAuthenticationError(error: Error): boolean {
  return /WRONGPASS|NOAUTH|NOPERM|invalid password|invalid username-password/i.test(error.message);
}
