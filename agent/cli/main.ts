#!/usr/bin/env node
// feather-agent: the device daemon and the local container CLI. A table of commands;
// each handler lives with its domain (containers.ts, images.ts, daemon.ts, info.ts).
import { loadAgentConfig } from '../../shared/config/agent.js';
import { configureLogging } from '../../shared/logging.js';
import { errnoCode, isFeatherError, messageOf } from '../../shared/errors.js';
import { DataPaths } from '../paths.js';
import { packageVersion } from '../../shared/version.js';
import type { CliContext, CommandHandler } from './context.js';

const USAGE = `usage: feather-agent <command> [options]

Containers:
  run --image NAME [--name N] [--shell PATH] [--memory 128Mi] [--cpus 0.5] [--pids 10]
      [--cpuset 0-1] [--network none|host] [--userns] [--init] [--rm] [-d] [-it] [-e K=V] [-- CMD ARGS...]
  start NAME [-a] [-t]       ps [--all] [--json]        stop NAME [--timeout S]
  rm NAME [--force]          logs NAME [--tail N] [-f]  gc
Images:
  images [--json]            pull URL --name NAME --sha256 HEX
  image import FILE --name NAME [--sha256 HEX]        image rm NAME
  image verify               image build RECIPE [--name N]   image build-all   image recipes
Fleet agent:
  info [--json] [--host-root DIR]   what this board can do (CPU, memory, accelerators, CDI devices)
  daemon [--broker URL] [--device-id ID] [--metrics-port N] [--username U --password P]
         [--telemetry-interval S] [--host-root DIR]
Global options: --data-dir DIR (env FEATHER_DATA_DIR), --config FILE (env FEATHER_CONFIG)
`;

// Each command's module is loaded only when it runs: a CLI call pays for what it uses.
type Loader = () => Promise<CommandHandler>;
const containers = (name: string): Loader => async () => (await import('./containers.js')).containerCommands[name] as CommandHandler;
const images = (name: string): Loader => async () => (await import('./images.js')).imageCommands[name] as CommandHandler;
const commands: Record<string, Loader> = {
  run: containers('run'), start: containers('start'), ps: containers('ps'), stop: containers('stop'),
  rm: containers('rm'), logs: containers('logs'), gc: containers('gc'),
  images: images('images'), image: images('image'), pull: images('pull'),
  daemon: async () => (await import('./daemon.js')).daemon,
  info: async () => (await import('./info.js')).info,
  version: async () => async (_argv, ctx) => { ctx.out(packageVersion()); return 0; },
  help: async () => async (_argv, ctx) => { ctx.out(USAGE.trimEnd()); return 0; },
};

/** Pulls the global options out of argv (before a `--`), wherever they stand. */
function extractGlobals(argv: string[]): { rest: string[]; dataDir?: string; config?: string } {
  const rest: string[] = [];
  const found: { dataDir?: string; config?: string } = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') { rest.push(...argv.slice(i)); break; }
    const m = /^--(data-dir|config)(?:=(.*))?$/.exec(arg);
    if (!m) { rest.push(arg); continue; }
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw Object.assign(new Error(`--${m[1]} needs a value`), { code: 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' });
    if (m[1] === 'data-dir') found.dataDir = value; else found.config = value;
  }
  return { rest, ...found };
}

export async function main(argv: string[]): Promise<number> {
  const out = (line: string): void => { process.stdout.write(line + '\n'); };
  const err = (line: string): void => { process.stderr.write(`feather-agent: ${line}\n`); };
  try {
    const { rest, dataDir, config: configFile } = extractGlobals(argv);
    const [name, ...args] = rest;
    if (!name || name === '--help' || name === '-h') { out(USAGE.trimEnd()); return name ? 0 : 2; }
    const load = commands[name];
    if (!load) { err(`unknown command "${name}"; feather-agent help lists the commands`); return 2; }
    if (name !== 'daemon') configureLogging({ level: (process.env['FEATHER_LOG_LEVEL'] as 'warn' | undefined) ?? 'warn' });
    const config = loadAgentConfig({ file: configFile, overrides: { dataDir } });
    const ctx: CliContext = { config, paths: new DataPaths(config.dataDir), out, err, isTTY: Boolean(process.stdout.isTTY), configFile };
    const handler = await load();
    return await handler(args, ctx);
  } catch (e: unknown) {
    if (isFeatherError(e)) {
      err(e.message);
      return e.code === 'BAD_REQUEST' ? 2 : 1;
    }
    const code = errnoCode(e);
    if (code?.startsWith('ERR_PARSE_ARGS')) { err(messageOf(e)); return 2; }
    err(`unexpected error: ${messageOf(e)}`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
