// featherctl: the operators' CLI for a Feather controller (docs/featherctl.md). A table of
// commands; each handler's module is loaded only when it runs. Errors are one line on stderr;
// the exit status is 2 for a bad request (usage, a refused file), 1 for anything else.
import { setTimeout as sleep } from 'node:timers/promises';
import { errnoCode, isFeatherError, messageOf } from '../../shared/errors.js';
import { packageVersion } from '../../shared/version.js';
import { parseCommandLine, str, type OptionSpecs } from './args.js';
import { ApiClient } from './client.js';
import { resolveTarget, type Target } from './config.js';
import type { CommandDef, CtlContext } from './context.js';

const WAIT_OPTIONS: OptionSpecs = { wait: { type: 'boolean', short: 'w' }, timeout: { type: 'string' } };

export const COMMANDS: Readonly<Record<string, CommandDef>> = {
  login: {
    summary: 'check a server and token, and save them in the config file',
    usage: 'featherctl login [--server URL] [--token TOKEN | --token-file FILE]',
    options: { 'token-file': { type: 'string' } },
    load: async () => (await import('./login.js')).login,
  },
  get: {
    summary: 'list devices, deployments, models, events or blobs',
    usage: 'featherctl get devices|deployments|models|events|blobs [NAME] [--device ID] [--type T] [--limit N]',
    options: { device: { type: 'string' }, type: { type: 'string' }, limit: { type: 'string' } },
    load: async () => (await import('./fleet.js')).get,
  },
  describe: {
    summary: 'everything about one device or deployment',
    usage: 'featherctl describe device|deployment NAME',
    options: {},
    load: async () => (await import('./fleet.js')).describe,
  },
  logs: {
    summary: "a container's output, read from its agent",
    usage: 'featherctl logs DEVICE CONTAINER [--tail N]',
    options: { tail: { type: 'string' }, timeout: { type: 'string' } },
    load: async () => (await import('./fleet.js')).logs,
  },
  apply: {
    summary: 'create or update deployments from a YAML or JSON file',
    usage: 'featherctl apply -f FILE|- [--wait] [--timeout 5m]',
    options: { filename: { type: 'string', short: 'f' }, ...WAIT_OPTIONS },
    load: async () => (await import('./deploy.js')).apply,
  },
  delete: {
    summary: 'delete a deployment, or a blob from the blob store',
    usage: 'featherctl delete deployment|blob NAME',
    options: {},
    load: async () => (await import('./deploy.js')).remove,
  },
  rollout: {
    summary: "a deployment's rollout: status, or undo (back to the previous revision)",
    usage: 'featherctl rollout status|undo NAME [--to-revision N] [--wait] [--timeout 5m]',
    options: { 'to-revision': { type: 'string' }, ...WAIT_OPTIONS },
    load: async () => (await import('./deploy.js')).rollout,
  },
  device: {
    summary: 'issue a device token (add) or revoke it and forget the device (rm)',
    usage: 'featherctl device add|rm ID [--rotate]',
    options: { rotate: { type: 'boolean' } },
    load: async () => (await import('./device.js')).device,
  },
  push: {
    summary: "upload an image or model to the controller's blob store",
    usage: 'featherctl push FILE [--name NAME]',
    options: { name: { type: 'string' } },
    load: async () => (await import('./push.js')).push,
  },
  'mosquitto-files': {
    summary: 'write the password and ACL files of an external Mosquitto',
    usage: 'featherctl mosquitto-files [--out DIR] [--mode 600] [--data-dir DIR [--topic-prefix P]]',
    options: { out: { type: 'string' }, mode: { type: 'string' }, 'data-dir': { type: 'string' }, 'topic-prefix': { type: 'string' } },
    load: async () => (await import('./mosquitto.js')).mosquittoFiles,
  },
  version: {
    summary: 'the featherctl version',
    usage: 'featherctl version',
    options: {},
    load: async () => async (ctx) => { ctx.out(packageVersion()); return 0; },
  },
  help: {
    summary: 'this help',
    usage: 'featherctl help',
    options: {},
    load: async () => async (ctx) => { ctx.out(usage()); return 0; },
  },
};

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length)) + 2;
  return [
    'usage: featherctl [--server URL] [--token TOKEN] [--config FILE] [-o table|json|yaml] <command> ...',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`),
    '',
    'Server and token: --server/--token, FEATHERCTL_SERVER/FEATHERCTL_TOKEN, the config file',
    '(--config, FEATHERCTL_CONFIG, ~/.config/feather/featherctl.json, written by featherctl login),',
    'else http://127.0.0.1:8080 with /var/lib/feather-controller/admin-token. More: docs/featherctl.md',
  ].join('\n');
}

export interface MainIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  stdoutTTY: boolean;
  stderrTTY: boolean;
  env: NodeJS.ProcessEnv;
  readStdin: () => Promise<Buffer>;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return Buffer.concat(chunks);
}

export function processIo(): MainIo {
  return {
    stdout: (t) => { process.stdout.write(t); },
    stderr: (t) => { process.stderr.write(t); },
    stdoutTTY: process.stdout.isTTY === true,
    stderrTTY: process.stderr.isTTY === true,
    env: process.env,
    readStdin: () => readAll(process.stdin),
  };
}

export async function main(argv: readonly string[], io: MainIo = processIo()): Promise<number> {
  const fail = (message: string, code: number): number => { io.stderr(`featherctl: ${message}\n`); return code; };
  try {
    const line = parseCommandLine(argv, (c) => COMMANDS[c]?.options);
    if (line.command === undefined) {
      if (line.values['version'] === true) { io.stdout(`${packageVersion()}\n`); return 0; }
      if (line.values['help'] === true) { io.stdout(`${usage()}\n`); return 0; }
      io.stderr(`${usage()}\n`);
      return 2;
    }
    const def = COMMANDS[line.command] as CommandDef;
    if (line.values['help'] === true) {
      io.stdout(`usage: ${def.usage.replace(/^featherctl /, 'featherctl ')}\n  ${def.summary}\n`);
      return 0;
    }
    let target: Target | undefined;
    let client: ApiClient | undefined;
    const ctx: CtlContext = {
      positionals: line.positionals,
      values: line.values,
      output: line.output,
      out: (t) => io.stdout(`${t}\n`),
      err: (t) => io.stderr(`${t}\n`),
      stdoutTTY: io.stdoutTTY,
      stderrTTY: io.stderrTTY,
      env: io.env,
      now: () => Date.now(),
      sleep: (ms) => sleep(ms),
      target: () => {
        target ??= resolveTarget({ flags: { server: str(line.values, 'server'), token: str(line.values, 'token'), config: str(line.values, 'config') }, env: io.env });
        return target;
      },
      client: () => {
        const t = ctx.target();
        client ??= new ApiClient(t.server, t.token, t.tokenNote);
        return client;
      },
      readStdin: io.readStdin,
    };
    const run = await def.load();
    return await run(ctx);
  } catch (e: unknown) {
    if (isFeatherError(e)) return fail(e.message, e.code === 'BAD_REQUEST' ? 2 : 1);
    if (errnoCode(e)?.startsWith('ERR_PARSE_ARGS') === true) return fail(messageOf(e), 2);
    return fail(`unexpected error: ${messageOf(e)}`, 1);
  }
}
