import { createRequire } from 'node:module';
import { LayerquantError } from '@layerquant/core';
import type { Command, CommandContext } from './command.js';
import { commands } from './commands/index.js';
import { loadPlugins, settledOrIdle, type PluginRegistries } from '@layerquant/pipeline';
import { closestName, splitPluginArgs } from './args.js';
import { SCHEMA_VERSION, formatRows, jsonError } from './output.js';

/** The version of the layerquant package (package.json sits one folder above src/ and dist/). */
export const VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

function help(): string {
  const lines = ['layerquant: layer-sensitive mixed-precision quantization of LLM weights', '', 'Commands:'];
  lines.push(formatRows(commands.map((c) => [c.name, c.summary]), { indent: '  ', keyWidth: 12 }).trimEnd());
  lines.push('', 'Run `layerquant <command> --help` (or `layerquant help <command>`) for the options of a command; `layerquant --version` prints the version.');
  lines.push('Every command takes --json: one JSON object on stdout (schema: docs/json-schema.md), errors included.');
  return lines.join('\n');
}

/**
 * Runs the CLI; returns the exit code: 0 done, 1 bad input (a LayerquantError), 2 internal error. Errors become one
 * line on stderr; under --json also `{ command, schemaVersion, error: { code, message } }` on stdout.
 * `--plugin <module>` (repeatable, any command) loads plug-ins into the registries every command reads; they are
 * built once, before the command runs.
 */
export async function runCli(argv: string[], io: Pick<CommandContext, 'stdout' | 'stderr'> = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
}): Promise<number> {
  let plugins: PluginRegistries;
  try {
    const split = splitPluginArgs(argv);
    argv = split.argv;
    plugins = await loadPlugins(split.plugins);
  } catch (error) {
    const message = (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
    if (argv.includes('--json')) io.stdout(jsonError(commands.find((c) => argv.includes(c.name))?.name ?? null, error instanceof LayerquantError ? error.code : 'INTERNAL', message));
    io.stderr(`layerquant: error: ${message}\n`);
    return 1;
  }
  const [name, ...rest] = argv;
  const json = argv.includes('--json');
  if (name === '--version' || name === '-V' || name === 'version') {
    io.stdout(json ? `${JSON.stringify({ command: 'version', schemaVersion: SCHEMA_VERSION, version: VERSION })}\n` : `layerquant ${VERSION}\n`);
    return 0;
  }
  // `help <command>` is `<command> --help`; `help` alone (or no command) the general help.
  const helpTopic = name === 'help' ? rest.find((arg) => !arg.startsWith('-')) : undefined;
  if (!name || name === '--help' || name === '-h' || (name === 'help' && helpTopic === undefined)) {
    io.stdout(`${help()}\n`);
    return name ? 0 : 1;
  }
  const commandName = helpTopic ?? name;
  const command: Command | undefined = commands.find((c) => c.name === commandName);
  if (!command) {
    const suggestion = closestName(commandName, commands.map((c) => c.name));
    const message = `unknown command "${commandName}"${suggestion ? `; did you mean ${suggestion}?` : ''}; commands: ${commands.map((c) => c.name).join(', ')}`;
    if (json) io.stdout(jsonError(null, 'UNKNOWN_COMMAND', message));
    io.stderr(`layerquant: error: ${message}\n`);
    return 1;
  }
  if (helpTopic !== undefined || rest.includes('--help') || rest.includes('-h')) {
    io.stdout(`${typeof command.usage === 'function' ? command.usage(plugins) : command.usage}\n`);
    return 0;
  }
  try {
    // A promise nothing can settle (a plug-in's metric or quantizer that never returns) ends the event loop: named
    // here instead of Node's silent exit 13.
    await settledOrIdle(command.run({ argv: rest, ...io, plugins }), () => new LayerquantError('STALLED', `${command.name} stopped with work that nothing can finish (a plug-in whose promise never settles?)`));
    return 0;
  } catch (error) {
    if (error instanceof LayerquantError) {
      const message = error.message.split('\n')[0]!;
      if (json) io.stdout(jsonError(command.name, error.code, message));
      io.stderr(`layerquant: error: ${message}\n`);
      return 1;
    }
    const message = (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
    if (json) io.stdout(jsonError(command.name, 'INTERNAL', message));
    io.stderr(`layerquant: internal error: ${message}\n`);
    if (process.env.LAYERQUANT_DEBUG && error instanceof Error) io.stderr(`${error.stack}\n`);
    return 2;
  }
}
