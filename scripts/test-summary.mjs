// Sums the vitest JSON reports that every package writes, and prints one closing line for CI.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { execSync } from 'node:child_process';

const reports = execSync("git ls-files --others --ignored --exclude-standard -- '*/.vitest-report.json' '*/*/.vitest-report.json'", { encoding: 'utf8' })
  .split('\n')
  .filter(Boolean);
let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of reports) {
  if (!existsSync(file)) continue;
  const report = JSON.parse(readFileSync(file, 'utf8'));
  passed += report.numPassedTests ?? 0;
  failed += report.numFailedTests ?? 0;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  if (process.argv.includes('--clean')) rmSync(file);
}
console.log(`Tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
