// Preloaded into a measured child (`node --import ./bench/lib/report-peak.mjs ...`): at exit, writes the process's
// peak resident memory (VmHWM of /proc/self/status, in bytes) to $LAYERQUANT_PEAK_FILE. VmHWM rather than
// getrusage's maxRSS, which Linux carries over fork + exec from the parent.
import { readFileSync, writeFileSync } from 'node:fs';

const target = process.env.LAYERQUANT_PEAK_FILE;
if (target) {
  process.on('exit', () => {
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (hwm) writeFileSync(target, String(Number(hwm[1]) * 1024));
  });
}
