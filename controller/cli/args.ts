// featherctl's command line: global options anywhere, one command word (two for
// `rollout status`, `device add`: the rest are positionals), the command's own options.
//   featherctl [--server URL] [--token T] [--config FILE] [-o table|json|yaml] <command> ...
// Parsing is node:util parseArgs in strict mode: an unknown option or a missing value is a usage
// error (exit 2), reported in one line.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { FeatherError } from '../../shared/errors.js';

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;
export type OptionValues = Record<string, string | boolean | undefined>;

export const OUTPUTS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUTS)[number];

export const GLOBAL_OPTIONS: OptionSpecs = {
  server: { type: 'string' },
  token: { type: 'string' },
  config: { type: 'string' },
  output: { type: 'string', short: 'o' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
};

export interface CommandLine {
  /** The command word ("get"), or undefined (no command: usage). */
  command: string | undefined;
  positionals: string[];
  values: OptionValues;
  output: OutputFormat;
}

function takesValue(specs: OptionSpecs, arg: string): boolean {
  if (arg.includes('=')) return false;
  if (arg.startsWith('--')) return specs[arg.slice(2)]?.type === 'string';
  if (arg.length === 2) return Object.values(specs).some((s) => s.short === arg[1] && s.type === 'string');
  return false;
}

/** Index of the command word: the first argument that is neither a global option nor its value. */
export function findCommand(argv: readonly string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') return i + 1 < argv.length ? i + 1 : -1;
    if (a.startsWith('-') && a !== '-') {
      if (takesValue(GLOBAL_OPTIONS, a)) i++;
      continue;
    }
    return i;
  }
  return -1;
}

/** A usage error (exit 2). */
export function usageError(message: string): FeatherError {
  return new FeatherError('BAD_REQUEST', message);
}

/**
 * Parse argv given the command's own options (looked up by command word). Throws BAD_REQUEST
 * for unknown options, missing values and a bad -o.
 */
export function parseCommandLine(argv: readonly string[], optionsOf: (command: string) => OptionSpecs | undefined): CommandLine {
  const at = findCommand(argv);
  const command = at >= 0 ? argv[at] : undefined;
  const own = command === undefined ? {} : optionsOf(command);
  if (command !== undefined && own === undefined) throw usageError(`unknown command "${command}"; featherctl --help lists the commands`);
  const rest = at >= 0 ? [...argv.slice(0, at), ...argv.slice(at + 1)] : [...argv];
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: { ...GLOBAL_OPTIONS, ...own }, allowPositionals: true, strict: true });
  } catch (e: unknown) {
    const msg = e instanceof Error ? e.message.split('\n')[0] ?? e.message : String(e);
    throw usageError(`${msg.replace(/\. To specify a positional argument.*$/, '')}${command ? `; featherctl ${command} --help` : ''}`);
  }
  const values = parsed.values as OptionValues;
  const out = values['output'] ?? 'table';
  if (typeof out !== 'string' || !(OUTPUTS as readonly string[]).includes(out)) {
    throw usageError(`-o ${String(out)}: use one of ${OUTPUTS.join(', ')}`);
  }
  return { command, positionals: parsed.positionals, values, output: out as OutputFormat };
}

/** A string option's value, or undefined. */
export function str(values: OptionValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function flag(values: OptionValues, name: string): boolean {
  return values[name] === true;
}

/** Check the count of positionals and name what is missing or extra. */
export function expectPositionals(positionals: readonly string[], names: readonly string[], usage: string, optional = 0): string[] {
  const min = names.length - optional;
  if (positionals.length < min) throw usageError(`missing ${names.slice(positionals.length, min).join(' and ')}; usage: ${usage}`);
  if (positionals.length > names.length) throw usageError(`unexpected argument "${positionals[names.length] ?? ''}"; usage: ${usage}`);
  return [...positionals];
}

/** "90s", "5m", "1h", "1500ms", or plain seconds -> milliseconds. */
export function parseDuration(v: string, what = 'duration'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(v);
  if (m === null) throw usageError(`${what} "${v}" is not a duration: use e.g. 90s, 5m, 1h`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n * 3_600_000;
  if (!Number.isFinite(ms) || ms <= 0) throw usageError(`${what} "${v}" must be above 0`);
  return Math.round(ms);
}

/** A whole number option within [min, max]. */
export function parseCount(v: string, what: string, min: number, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) throw usageError(`${what} "${v}" must be a whole number from ${min} to ${max}`);
  return n;
}
