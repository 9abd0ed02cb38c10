// MXQ speed and quality: our multiple-choice knapsack solver (proven gap <= 1e-6) against the authors'
// formulation in scipy.optimize.milp (HiGHS, default gap) from ../shared/anchors/mxq_scipy_anchor.py.
// Tables: Llama-2-7B (224 matrices x 12 configs) at every budget stop, Llama-3.1-405B (882 matrices).
// Usage: pnpm build && node bench/mxq.mjs [--highs]   (--highs adds the highs npm package asked for gap 0; slow)
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildMxqProblem, solveMxq } from '@layerquant/allocators';
import { loadStatsDirectory } from '@layerquant/allocators/node';
import { llama2PaperDir, llama405bPaperDir } from '@layerquant/fixtures';
import { pythonHas, runPython } from './lib/anchor.mjs';
import { checkArguments } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { flags: ['highs'] });

const ANCHOR = fileURLToPath(new URL('../../shared/anchors/mxq_scipy_anchor.py', import.meta.url));
const withHighs = process.argv.includes('--highs');
const haveScipy = existsSync(ANCHOR) && pythonHas('scipy', 'numpy');
if (!haveScipy) console.log(`(no scipy anchor: needs /usr/bin/python3 with scipy and ${ANCHOR}; reporting our figures alone)\n`);

/** Median of `runs` solves after one warm-up (the first call also pays JIT compilation, reported apart). */
function timeOurs(problem, budget, runs = 5) {
  const first = solveMxq(problem, { budget });
  const seconds = [];
  let last = first;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    last = solveMxq(problem, { budget });
    seconds.push((performance.now() - start) / 1000);
  }
  seconds.sort((a, b) => a - b);
  return { allocation: last, firstSeconds: first.solver.seconds, seconds: seconds[Math.floor(runs / 2)] };
}

function scipyAnchor(csv, budget) {
  if (!haveScipy) return undefined;
  const out = runPython([ANCHOR, csv, String(budget)]).trim().split('\n').pop();
  return JSON.parse(out.replace(/'/g, '"').replace(/\bnan\b/g, 'null'));
}

async function highsGapZero(problem, budget) {
  const { default: loadHighs } = await import('highs');
  const highs = await loadHighs();
  const terms = [];
  const memory = [];
  const rows = [];
  const binaries = [];
  problem.fnorm.forEach((costs, i) => {
    const names = [];
    costs.forEach((cost, j) => {
      terms.push(`+ ${cost} x${i}_${j}`);
      memory.push(`+ ${problem.memoryMB[i][j]} x${i}_${j}`);
      names.push(`x${i}_${j}`);
      binaries.push(`x${i}_${j}`);
    });
    rows.push(` c${i}: ${names.join(' + ')} = 1`);
  });
  const limit = (budget * problem.totalParams) / 8 / 2 ** 20;
  const lp = ['Minimize', ` obj: ${terms.join(' ')}`, 'Subject To', ` mem: ${memory.join(' ')} <= ${limit}`, ...rows, 'Binary', ` ${binaries.join(' ')}`, 'End'].join('\n');
  const start = performance.now();
  const result = highs.solve(lp, { output_flag: false, mip_rel_gap: 0, time_limit: 120 });
  return { seconds: (performance.now() - start) / 1000, objective: result.ObjectiveValue, status: result.Status };
}

const header = ['table', 'budget', 'ours (median)', 'ours (1st call)', 'our objective', 'our gap', 'nodes', 'scipy milp', 'scipy objective', 'speed-up'];
if (withHighs) header.push('highs-js gap 0', 'highs-js objective');
console.log(`| ${header.join(' | ')} |\n| ${header.map(() => '---').join(' | ')} |`);

const tables = [
  { name: 'Llama-2-7B', dir: llama2PaperDir, budgets: [2.13, 2.25, 2.51, 3.13, 3.25, 3.51, 4.13, 4.25, 4.51, 8.13, 8.25, 8.51] },
  { name: 'Llama-3.1-405B', dir: llama405bPaperDir, budgets: [2.25, 3.13, 3.25, 4.13, 4.25, 4.51] },
];
const worst = {};
for (const table of tables) {
  const stats = await loadStatsDirectory(table.dir);
  const problem = buildMxqProblem(stats.fnorm);
  worst[table.name] = 0;
  for (const budget of table.budgets) {
    const ours = timeOurs(problem, budget);
    const s = ours.allocation.solver;
    worst[table.name] = Math.max(worst[table.name], ours.seconds);
    const anchor = scipyAnchor(`${table.dir}/fnorm.csv`, budget);
    const row = [
      table.name,
      budget,
      `${(ours.seconds * 1000).toFixed(1)} ms`,
      `${(ours.firstSeconds * 1000).toFixed(1)} ms`,
      s.objective.toFixed(4),
      s.gap.toExponential(1),
      s.nodes,
      anchor ? `${anchor.seconds.toFixed(3)} s` : '-',
      anchor ? Number(anchor.objective).toFixed(4) : '-',
      anchor ? `${(anchor.seconds / ours.seconds).toFixed(1)}x` : 'n/a (no anchor)',
    ];
    if (withHighs) {
      const h = await highsGapZero(problem, budget);
      row.push(`${h.seconds.toFixed(2)} s (${h.status})`, Number(h.objective).toFixed(4));
    }
    console.log(`| ${row.join(' | ')} |`);
  }
}
console.log(`\nworst median time: ${Object.entries(worst).map(([k, v]) => `${k} ${(v * 1000).toFixed(1)} ms`).join(', ')} (goal: < 100 ms for 7B, < 1 s for 405B)`);
