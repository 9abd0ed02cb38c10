// The layerquant command as a function (the library it runs is @layerquant/pipeline, /experiment and /queue).
export { runCli } from './cli.js';
export type { Command, CommandContext } from './command.js';
