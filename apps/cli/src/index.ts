export { runCli } from './cli.js';
export type { Command, CommandContext } from './command.js';
export {
  compareMethods,
  formatResultsCsv,
  formatResultsMarkdown,
  headline,
  pairedBootstrap,
  rowInterval,
  verdict,
  type BootstrapOptions,
  type Comparison,
  type ExperimentRow,
  type Headline,
  type PairedInterval,
  type ReportContext,
} from './experiment/report.js';
