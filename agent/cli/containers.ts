// CLI commands for containers: run, start, ps, stop, rm, logs, gc.
import { parseArgs } from 'node:util';
import { openSync, readSync, closeSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { FeatherError } from '../../shared/errors.js';
import { formatBytes, parseCpuset, parseMemory } from '../../shared/limits.js';
import { generateName } from '../runtime/runtime.js';
import type { ContainerInfo, RunRequest } from '../runtime/types.js';
import type { NetworkMode, RestartPolicy } from '../../shared/protocol/types.js';
import type { CommandHandler, CliContext } from './context.js';
import { openImages, openRuntime, requireRoot } from './open.js';
import { table, relativeTime } from '../../shared/format.js';

function parseEnv(list: string[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new FeatherError('BAD_REQUEST', `-e ${item}: expected KEY=VALUE`);
    env[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return env;
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new FeatherError('BAD_REQUEST', `--${flag} ${value}: expected one of ${allowed.join(', ')}`);
  }
  return value as T;
}

export const run: CommandHandler = async (argv, ctx) => {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      image: { type: 'string' },
      name: { type: 'string' },
      shell: { type: 'string' },
      memory: { type: 'string' },
      cpus: { type: 'string' },
      pids: { type: 'string' },
      cpuset: { type: 'string' },
      network: { type: 'string' },
      restart: { type: 'string' },
      userns: { type: 'boolean' },
      init: { type: 'boolean' },
      rm: { type: 'boolean' },
      detach: { type: 'boolean', short: 'd' },
      interactive: { type: 'boolean', short: 'i' },
      tty: { type: 'boolean', short: 't' },
      env: { type: 'string', short: 'e', multiple: true },
    },
  });
  if (!values.image) throw new FeatherError('BAD_REQUEST', 'run needs --image NAME (feather-agent images lists them)');
  requireRoot('feather-agent run');
  const args = positionals.length > 0 ? positionals : values.shell ? [values.shell] : ['/bin/sh'];
  const tty = Boolean(values.tty);
  if (tty && values.detach) throw new FeatherError('BAD_REQUEST', '-t and -d cannot be combined: a detached container has no terminal');
  const req: RunRequest = {
    name: values.name ?? generateName(values.image),
    image: values.image,
    args,
    env: parseEnv(values.env),
    limits: {
      ...(values.memory !== undefined ? { memoryBytes: parseMemory(values.memory) } : {}),
      ...(values.cpus !== undefined ? { cpus: Number(values.cpus) } : {}),
      ...(values.pids !== undefined ? { pids: Number(values.pids) } : {}),
      ...(values.cpuset !== undefined ? { cpuset: parseCpuset(values.cpuset) } : {}),
    },
    network: oneOf<NetworkMode>('network', values.network, ['none', 'host']),
    restart: oneOf<RestartPolicy>('restart', values.restart, ['no', 'on-failure', 'always']),
    userns: values.userns,
    init: values.init,
    tty,
  };
  const runtime = openRuntime(ctx);
  if (values.detach) {
    const result = await runtime.run(req);
    ctx.out(result.name);
    return 0;
  }
  return runtime.runAttached(req, { remove: values.rm ?? false });
};

export const start: CommandHandler = async (argv, ctx) => {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { attach: { type: 'boolean', short: 'a' }, tty: { type: 'boolean', short: 't' }, interactive: { type: 'boolean', short: 'i' } },
  });
  const name = requireName('start', positionals);
  requireRoot('feather-agent start');
  const runtime = openRuntime(ctx);
  if (values.attach || values.tty) return runtime.startAttachedByName(name, Boolean(values.tty));
  await runtime.start(name);
  ctx.out(name);
  return 0;
};

function requireName(cmd: string, positionals: string[]): string {
  const name = positionals[0];
  if (!name || positionals.length > 1) throw new FeatherError('BAD_REQUEST', `${cmd} takes exactly one container name`);
  return name;
}

function statusText(c: ContainerInfo): string {
  if (c.status === 'running') return `running ${relativeTime(c.startedAt)}`;
  if (c.status === 'exited') return `exited (${c.exitCode ?? '?'})${c.oomKilled ? ' oom' : ''} ${relativeTime(c.finishedAt)}`;
  return 'created';
}

export const ps: CommandHandler = async (argv, ctx) => {
  const { values } = parseArgs({ args: argv, options: { all: { type: 'boolean', short: 'a' }, json: { type: 'boolean' } } });
  const list = openRuntime(ctx).list({ all: values.all ?? false });
  if (values.json) {
    ctx.out(JSON.stringify(list));
    return 0;
  }
  ctx.out(table(['NAME', 'IMAGE', 'STATUS', 'PID', 'MEMORY', 'CPUS', 'PIDS', 'COMMAND'], list.map((c) => [
    c.name, c.image, statusText(c), c.pid === undefined ? '-' : String(c.pid),
    formatBytes(c.limits.memoryBytes), String(c.limits.cpus), String(c.limits.pids), c.args.join(' '),
  ])));
  return 0;
};

export const stop: CommandHandler = async (argv, ctx) => {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { timeout: { type: 'string', short: 't' } } });
  const name = requireName('stop', positionals);
  requireRoot('feather-agent stop');
  const timeout = values.timeout === undefined ? 10 : Number(values.timeout);
  if (!Number.isFinite(timeout) || timeout < 0) throw new FeatherError('BAD_REQUEST', `--timeout ${values.timeout}: expected seconds >= 0`);
  const result = await openRuntime(ctx).stop(name, timeout);
  ctx.out(`${name} exited (${result.exitCode ?? '?'})`);
  return 0;
};

export const rm: CommandHandler = async (argv, ctx) => {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { force: { type: 'boolean', short: 'f' } } });
  if (positionals.length === 0) throw new FeatherError('BAD_REQUEST', 'rm takes one or more container names');
  requireRoot('feather-agent rm');
  const runtime = openRuntime(ctx);
  for (const name of positionals) {
    await runtime.remove(name, { force: values.force ?? false });
    ctx.out(name);
  }
  return 0;
};

export const logs: CommandHandler = async (argv, ctx) => {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { tail: { type: 'string', short: 'n' }, follow: { type: 'boolean', short: 'f' } },
  });
  const name = requireName('logs', positionals);
  const tail = values.tail === undefined ? undefined : Number(values.tail);
  if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) throw new FeatherError('BAD_REQUEST', `--tail ${values.tail}: expected a whole number`);
  const runtime = openRuntime(ctx);
  for (const line of await runtime.logs(name, tail)) ctx.out(line);
  if (values.follow) await follow(ctx, runtime, name);
  return 0;
};

/** Print what is appended to the log until the container exits. */
async function follow(ctx: CliContext, runtime: ReturnType<typeof openRuntime>, name: string): Promise<void> {
  const path = ctx.paths.container(name).log;
  let offset = sizeOf(path);
  let pending = '';
  for (;;) {
    const running = runtime.inspect(name).status === 'running';
    const size = sizeOf(path);
    if (size < offset) offset = 0; // rotated
    if (size > offset) {
      const fd = openSync(path, 'r');
      try {
        const buf = Buffer.alloc(size - offset);
        readSync(fd, buf, 0, buf.length, offset);
        offset = size;
        pending += buf.toString('utf8');
      } finally { closeSync(fd); }
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) ctx.out(line);
    }
    if (!running) break;
    await sleep(200);
  }
  if (pending) ctx.out(pending);
}

function sizeOf(path: string): number {
  try { return statSync(path).size; } catch { return 0; }
}

export const gc: CommandHandler = async (_argv, ctx) => {
  requireRoot('feather-agent gc');
  const images = openImages(ctx);
  const runtime = openRuntime(ctx, images);
  const report = await runtime.gc();
  const imageReport = await images.gc({ inUseBy: (sha) => runtime.containersUsing(sha) });
  ctx.out(`reaped ${report.reaped.length} container(s), removed ${report.cgroups.length} cgroup(s), ${report.tmp.length + imageReport.removedTmp.length} temp item(s), ${imageReport.removedCache.length} unused layer(s)`);
  return 0;
};

export const containerCommands: Record<string, CommandHandler> = { run, start, ps, stop, rm, logs, gc };
