// Where featherctl finds its controller and token, in falling precedence:
//   --server / --token            flags
//   FEATHERCTL_SERVER / _TOKEN    environment
//   the config file               {"server","token"} (or "tokenFile"), written by `featherctl login`:
//                                 --config FILE, FEATHERCTL_CONFIG, else
//                                 $XDG_CONFIG_HOME/feather/featherctl.json (~/.config/feather/…)
//   on the controller's machine   http://127.0.0.1:8080 and the admin token file
//                                 $FEATHER_CONTROLLER_DATA_DIR/admin-token
//                                 (default /var/lib/feather-controller/admin-token), read only
//                                 when the server is this machine: the token never goes elsewhere.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { errnoCode, FeatherError, messageOf } from '../../shared/errors.js';

export const DEFAULT_SERVER = 'http://127.0.0.1:8080';
export const DEFAULT_CONTROLLER_DATA_DIR = '/var/lib/feather-controller';

export interface CtlConfigFile {
  server?: string;
  token?: string;
  /** A file holding the token (read at each run). */
  tokenFile?: string;
}

export type TokenSource = 'flag' | 'env' | 'config' | 'admin-token-file' | 'none';

export interface Target {
  server: string;
  token: string | undefined;
  tokenSource: TokenSource;
  configFile: string;
  /** Why no token was found (for the message when the controller asks for one). */
  tokenNote: string | undefined;
}

export interface ResolveInput {
  flags: { server?: string | undefined; token?: string | undefined; config?: string | undefined };
  env: NodeJS.ProcessEnv;
  home?: string;
  readFile?: (path: string) => string;
}

export function defaultConfigFile(env: NodeJS.ProcessEnv, home = homedir()): string {
  const base = env['XDG_CONFIG_HOME'] !== undefined && env['XDG_CONFIG_HOME'] !== '' ? env['XDG_CONFIG_HOME'] : join(home, '.config');
  return join(base, 'feather', 'featherctl.json');
}

/** "host:8080" -> "http://host:8080"; no trailing slash; BAD_REQUEST when it is no http(s) URL. */
export function normalizeServer(s: string): string {
  const raw = /^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s.trim() : `http://${s.trim()}`;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new FeatherError('BAD_REQUEST', `server "${s}" is not a URL: use e.g. http://controller:8080`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new FeatherError('BAD_REQUEST', `server "${s}" must be an http:// or https:// URL`);
  if (u.search !== '' || u.hash !== '') throw new FeatherError('BAD_REQUEST', `server "${s}" must not have a query or fragment`);
  return u.href.replace(/\/+$/, '');
}

/** True when the URL's host is this machine (loopback or localhost). */
export function isLocalServer(server: string): boolean {
  const host = new URL(server).hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

function readTokenFile(path: string, read: (p: string) => string): string {
  const t = read(path).trim();
  if (t === '') throw new FeatherError('BAD_REQUEST', `the token file ${path} is empty`);
  return t;
}

export function readConfigFile(path: string, read: (p: string) => string = (p) => readFileSync(p, 'utf8')): CtlConfigFile | undefined {
  let text: string;
  try {
    text = read(path);
  } catch (e: unknown) {
    if (errnoCode(e) === 'ENOENT') return undefined;
    throw new FeatherError('BAD_REQUEST', `cannot read the featherctl config ${path}: ${messageOf(e)}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e: unknown) {
    throw new FeatherError('BAD_REQUEST', `the featherctl config ${path} is not JSON (${messageOf(e)}); fix it or run featherctl login again`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FeatherError('BAD_REQUEST', `the featherctl config ${path} must be a JSON object {"server","token"}`);
  const o = v as Record<string, unknown>;
  const out: CtlConfigFile = {};
  for (const k of ['server', 'token', 'tokenFile'] as const) {
    const x = o[k];
    if (x === undefined) continue;
    if (typeof x !== 'string') throw new FeatherError('BAD_REQUEST', `the featherctl config ${path}: ${k} must be a string`);
    out[k] = x;
  }
  return out;
}

export function resolveTarget(input: ResolveInput): Target {
  const { flags, env } = input;
  const read = input.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);
  const configFile = nonEmpty(flags.config) ?? nonEmpty(env['FEATHERCTL_CONFIG']) ?? defaultConfigFile(env, input.home);
  const file = readConfigFile(configFile, read);
  if (nonEmpty(flags.config) !== undefined && file === undefined) throw new FeatherError('BAD_REQUEST', `the featherctl config ${configFile} does not exist`);
  const server = normalizeServer(nonEmpty(flags.server) ?? nonEmpty(env['FEATHERCTL_SERVER']) ?? nonEmpty(file?.server) ?? DEFAULT_SERVER);

  const explicit: Array<[string | undefined, TokenSource]> = [[nonEmpty(flags.token), 'flag'], [nonEmpty(env['FEATHERCTL_TOKEN']), 'env'], [nonEmpty(file?.token), 'config']];
  for (const [token, source] of explicit) if (token !== undefined) return { server, token, tokenSource: source, configFile, tokenNote: undefined };
  if (nonEmpty(file?.tokenFile) !== undefined) {
    return { server, token: readTokenFile(file?.tokenFile as string, read), tokenSource: 'config', configFile, tokenNote: undefined };
  }
  const adminFile = join(nonEmpty(env['FEATHER_CONTROLLER_DATA_DIR']) ?? DEFAULT_CONTROLLER_DATA_DIR, 'admin-token');
  if (!isLocalServer(server)) {
    return { server, token: undefined, tokenSource: 'none', configFile, tokenNote: `no token for ${server}: run featherctl login --server ${server} --token TOKEN, or set FEATHERCTL_TOKEN` };
  }
  try {
    const token = read(adminFile).trim();
    if (token !== '') return { server, token, tokenSource: 'admin-token-file', configFile, tokenNote: undefined };
    return { server, token: undefined, tokenSource: 'none', configFile, tokenNote: `${adminFile} is empty` };
  } catch (e: unknown) {
    const why = errnoCode(e) === 'EACCES' ? `cannot read ${adminFile} (permission denied: run as root, or featherctl login)` : `no token: ${adminFile} is not readable (${errnoCode(e) ?? messageOf(e)}); pass --token, set FEATHERCTL_TOKEN or run featherctl login`;
    return { server, token: undefined, tokenSource: 'none', configFile, tokenNote: why };
  }
}

/** Write the config file (0600, its directory 0700), replacing it whole. */
export function writeConfigFile(path: string, config: CtlConfigFile): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}
