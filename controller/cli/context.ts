// What every featherctl command receives; a command returns the exit code.
import type { ApiClient } from './client.js';
import type { CommandLine, OptionSpecs, OutputFormat } from './args.js';
import type { Target } from './config.js';

export interface CtlContext {
  positionals: string[];
  values: CommandLine['values'];
  output: OutputFormat;
  /** One line (or block) on stdout. */
  out(text: string): void;
  /** One line on stderr (progress, hints); never parsed by scripts. */
  err(text: string): void;
  stdoutTTY: boolean;
  stderrTTY: boolean;
  env: NodeJS.ProcessEnv;
  now(): number;
  sleep(ms: number): Promise<void>;
  /** Server and token (flags, env, config file, local admin token). */
  target(): Target;
  client(): ApiClient;
  readStdin(): Promise<Buffer>;
}

export type CommandRun = (ctx: CtlContext) => Promise<number>;

export interface CommandDef {
  summary: string;
  usage: string;
  options: OptionSpecs;
  /** The handler, loaded only when the command runs. */
  load: () => Promise<CommandRun>;
}
