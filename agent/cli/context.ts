// What every CLI command handler receives. Handlers return the process exit code.
import type { AgentConfig } from '../../shared/config/agent.js';
import type { DataPaths } from '../paths.js';

export interface CliContext {
  config: AgentConfig;
  paths: DataPaths;
  /** User-facing output (stdout). */
  out: (line: string) => void;
  /** One clear line of error for a person (stderr). */
  err: (line: string) => void;
  /** Whether stdout is a terminal (progress bars, tables). */
  isTTY: boolean;
  /** The --config file, for commands that load the configuration again with their own flags. */
  configFile?: string | undefined;
}

export type CommandHandler = (argv: string[], ctx: CliContext) => Promise<number>;
