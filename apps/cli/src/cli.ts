import { LayerquantError } from '@layerquant/core';
import type { Command, CommandContext } from './command.js';
import { commands } from './commands/index.js';
import { loadPlugins, splitPluginArgs, type PluginRegistries } from './plugins.js';

function help(): string {
  const lines = ['layerquant: layer-sensitive mixed-precision quantization of LLM weights', '', 'Commands:'];
  for (const c of commands) lines.push(`  ${c.name.padEnd(12)} ${c.summary}`);
  lines.push('', 'Run `layerquant <command> --help` for the options of a command.');
  return lines.join('\n');
}

/**
 * Runs the CLI; returns the exit code. Errors become one line on stderr. `--plugin <module>` (repeatable, any
 * command) loads plug-ins into the registries every command reads; they are built once, before the command runs.
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
    io.stderr(`layerquant: error: ${(error instanceof Error ? error.message : String(error)).split('\n')[0]}\n`);
    return 1;
  }
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(`${help()}\n`);
    return name ? 0 : 1;
  }
  const command: Command | undefined = commands.find((c) => c.name === name);
  if (!command) {
    io.stderr(`layerquant: error: unknown command "${name}"; commands: ${commands.map((c) => c.name).join(', ')}\n`);
    return 1;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(`${typeof command.usage === 'function' ? command.usage(plugins) : command.usage}\n`);
    return 0;
  }
  try {
    await command.run({ argv: rest, ...io, plugins });
    return 0;
  } catch (error) {
    if (error instanceof LayerquantError) {
      io.stderr(`layerquant: error: ${error.message.split('\n')[0]}\n`);
      return 1;
    }
    const message = error instanceof Error ? error.message : String(error);
    io.stderr(`layerquant: internal error: ${message.split('\n')[0]}\n`);
    if (process.env.LAYERQUANT_DEBUG && error instanceof Error) io.stderr(`${error.stack}\n`);
    return 2;
  }
}
