// One logger, namespaced ("agent:runtime"), one JSON object per line on stderr.
// Level from FEATHER_LOG_LEVEL (debug, info, warn, error, silent); default info.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  readonly ns: string;
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  child(ns: string): Logger;
}

export type LogSink = (line: string) => void;

function parseLevel(value: string | undefined): LogLevel {
  return value !== undefined && value in RANK ? (value as LogLevel) : 'info';
}

let defaultSink: LogSink = (line) => process.stderr.write(line + '\n');
let defaultLevel: LogLevel = parseLevel(process.env['FEATHER_LOG_LEVEL']);

/** For tests and the CLI (which keeps stderr for user-facing lines unless asked). */
export function configureLogging(opts: { level?: LogLevel; sink?: LogSink }): void {
  if (opts.level !== undefined) defaultLevel = opts.level;
  if (opts.sink !== undefined) defaultSink = opts.sink;
}

function serialise(value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return code === undefined ? { message: value.message } : { code, message: value.message };
  }
  return value;
}

export function createLogger(ns: string): Logger {
  const emit = (level: LogLevel, event: string, fields?: Record<string, unknown>): void => {
    if (RANK[level] < RANK[defaultLevel]) return;
    const record: Record<string, unknown> = { ts: new Date().toISOString(), level, ns, event };
    if (fields) for (const [k, v] of Object.entries(fields)) record[k] = serialise(v);
    defaultSink(JSON.stringify(record));
  };
  return {
    ns,
    debug: (e, f) => emit('debug', e, f),
    info: (e, f) => emit('info', e, f),
    warn: (e, f) => emit('warn', e, f),
    error: (e, f) => emit('error', e, f),
    child: (sub) => createLogger(`${ns}:${sub}`),
  };
}
