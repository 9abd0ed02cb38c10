export { runCli } from './cli.js';
export type { Command, CommandContext } from './command.js';
