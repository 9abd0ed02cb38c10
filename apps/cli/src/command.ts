/** What every command gets: its argv (after the command name) and where to print. */
export interface CommandContext {
  readonly argv: string[];
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  run(context: CommandContext): Promise<void>;
}
