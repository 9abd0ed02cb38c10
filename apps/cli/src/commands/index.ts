import type { Command } from '../command.js';
import { allocateCommand } from './allocate.js';
import { compareCommand } from './compare.js';
import { evalCommand } from './eval.js';
import { experimentCommand } from './experiment.js';
import { exportCommand } from './export.js';
import { generateCommand } from './generate.js';
import { inspectCommand } from './inspect.js';
import { quantizeCommand } from './quantize.js';
import { sensitivityCommand } from './sensitivity.js';
import { workerCommand } from './worker.js';

/** Every command, in the order `layerquant --help` lists them. */
export const commands: readonly Command[] = [
  inspectCommand,
  sensitivityCommand,
  allocateCommand,
  quantizeCommand,
  exportCommand,
  evalCommand,
  compareCommand,
  generateCommand,
  experimentCommand,
  workerCommand,
];
