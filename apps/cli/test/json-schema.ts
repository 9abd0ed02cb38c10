import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { expect } from 'vitest';

/** The one schema definition of the --json output (apps/cli/schema/output.schema.json), compiled once. */
export const outputSchema = JSON.parse(readFileSync(new URL('../schema/output.schema.json', import.meta.url), 'utf8')) as Record<string, unknown>;
const validate = new Ajv({ allErrors: true, strict: false }).compile(outputSchema);

/** Parses one line of --json output and asserts it matches the schema (with the errors in the message). */
export function parseValid<T = Record<string, unknown>>(stdout: string, command: string): T {
  const lines = stdout.trim().split('\n');
  expect(lines, 'one JSON object on one line').toHaveLength(1);
  const value = JSON.parse(lines[0]!) as Record<string, unknown>;
  const ok = validate(value);
  expect(ok, JSON.stringify(validate.errors, null, 1)).toBe(true);
  expect(value.command).toBe(command);
  return value as T;
}

export function schemaErrors(value: unknown): string[] {
  return validate(value) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
}
