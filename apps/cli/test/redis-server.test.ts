import { describe, expect, it } from 'vitest';
import { missingRedis } from './redis-server.js';

describe('a missing redis-server', () => {
  it('skips the queue suites outside CI and fails them in CI', () => {
    expect(missingRedis(undefined)).toBe(false);
    expect(missingRedis('false')).toBe(false);
    expect(() => missingRedis('true')).toThrow(/redis-server is missing and CI=true: the queue tests must run in CI/);
    expect(() => missingRedis('1')).toThrow(/must run in CI/);
  });
});
