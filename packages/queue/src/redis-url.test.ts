import { InvalidOptionError } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { parseQueueUrl, redactQueueUrl } from './redis-url.js';

const PW = 'Hunter2-pw';

/** The message parseQueueUrl throws for a URL (an InvalidOptionError), or '' when it parses. */
function refusal(url: string): string {
  try {
    parseQueueUrl(url);
    return '';
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidOptionError);
    return (error as Error).message;
  }
}

describe('--queue URLs: the password is never shown', () => {
  it('refuses malformed forms with a typed error that holds no part of the password', () => {
    const cases: [string, RegExp][] = [
      [`redis//:${PW}@127.0.0.1:6390/1`, /"redis\/\/\*\*\*@127\.0\.0\.1:6390\/1" is not a URL/],
      [`redis:/:${PW}@127.0.0.1:6390/1`, /"redis:\/\*\*\*@127\.0\.0\.1:6390\/1" names no host/],
      [`redis:${PW}@127.0.0.1:6390/1`, /"redis:\*\*\*@127\.0\.0\.1:6390\/1" names no host/],
      [`redis://:${PW}@127.0.0.1:99999/1`, /"redis:\/\/\*\*\*@127\.0\.0\.1:99999\/1" is not a URL/],
      [`redis://:${PW}@127.0.0.1:0/1`, /the port must be 1 to 65535/],
      [`redis://:${PW}@127.0.0.1:port/1`, /is not a URL/],
      [`redis://:${PW}@127.0.0.1:6390/x`, /the database "x" must be a number/],
      [`redis://127.0.0.1:6390/:${PW}@0`, /the database "\*\*\*@0" must be a number/],
      [`redis://:${PW.slice(0, 4)}/${PW.slice(4)}@127.0.0.1:6390/1`, /\*\*\*@127\.0\.0\.1:6390\/1/],
      [`http://:${PW}@127.0.0.1:6390/1`, /"http:\/\/\*\*\*@127\.0\.0\.1:6390\/1" is not a redis:\/\/ or rediss:\/\/ URL/],
      [`:${PW}@127.0.0.1:6390`, /"\*\*\*@127\.0\.0\.1:6390" is not a URL/],
      [`user:${PW}@127.0.0.1`, /"\*\*\*@127\.0\.0\.1" is not a redis:\/\/ or rediss:\/\/ URL/],
      [`redis://:%E0%A4%A${PW}@127.0.0.1:6390/1`, /malformed %-escape/],
    ];
    for (const [url, expected] of cases) {
      const message = refusal(url);
      expect(message, url).toMatch(expected);
      for (const part of [PW, PW.slice(0, 4), PW.slice(4)]) expect(message, url).not.toContain(part);
    }
  });

  it('parses the good forms and redacts them', () => {
    const a = parseQueueUrl(`redis://:${PW}@127.0.0.1:6390/1`);
    expect(a.connection).toMatchObject({ host: '127.0.0.1', port: 6390, db: 1, password: PW });
    expect(a.redacted).toBe('redis://***@127.0.0.1:6390/1');
    // A space in the password parses (the URL parser escapes it).
    expect(parseQueueUrl(`redis://:a ${PW}@h:1/0`).connection.password).toBe(`a ${PW}`);
    expect(parseQueueUrl('rediss://h').connection).toMatchObject({ port: 6379, db: 0, tls: {} });
    expect(redactQueueUrl('redis://127.0.0.1:6390/0')).toBe('redis://127.0.0.1:6390/0');
  });
});
