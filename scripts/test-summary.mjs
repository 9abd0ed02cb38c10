// Sums the vitest JSON reports that every package writes, and prints one closing line for CI. Each failed test is
// named above that line with the start of its message: CI shows only the end of a long log, and the suites that
// failed may have printed their failures far above it.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { execSync } from 'node:child_process';

const reports = execSync("git ls-files --others --ignored --exclude-standard -- '*/.vitest-report.json' '*/*/.vitest-report.json'", { encoding: 'utf8' })
  .split('\n')
  .filter(Boolean);
let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];
for (const file of reports) {
  if (!existsSync(file)) continue;
  const report = JSON.parse(readFileSync(file, 'utf8'));
  passed += report.numPassedTests ?? 0;
  failed += report.numFailedTests ?? 0;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  for (const suite of report.testResults ?? []) {
    const where = suite.name ?? file;
    const failedTests = (suite.assertionResults ?? []).filter((test) => test.status === 'failed');
    for (const test of failedTests) failures.push({ where, name: test.fullName ?? test.title, message: (test.failureMessages ?? []).join('\n') });
    // A suite that failed to load (syntax error, a failing beforeAll) has no failed test but a message of its own.
    if (suite.status === 'failed' && failedTests.length === 0 && suite.message) failures.push({ where, name: '(the file itself)', message: suite.message });
  }
  if (process.argv.includes('--clean')) rmSync(file);
}
for (const { where, name, message } of failures) {
  console.log(`FAILED ${where} > ${name}`);
  const lines = message.split('\n');
  for (const line of lines.slice(0, 12)) console.log(`    ${line}`);
  if (lines.length > 12) console.log(`    … ${lines.length - 12} more lines`);
}
console.log(`Tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exitCode = failed > 0 || passed === 0 || failures.length > 0 ? 1 : 0;
