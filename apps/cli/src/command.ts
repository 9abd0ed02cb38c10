import type { PluginRegistries } from '@layerquant/pipeline';

/** What every command gets: its argv (after the command name and `--plugin` options), the registries, where to print. */
export interface CommandContext {
  readonly argv: string[];
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Built-in plug-ins and those of `--plugin` modules; built once per run (default: the built-ins). */
  readonly plugins?: PluginRegistries;
}

export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Help text; a function when it lists plug-ins (those of `--plugin` modules included). */
  readonly usage: string | ((plugins: PluginRegistries) => string);
  run(context: CommandContext): Promise<void>;
}
