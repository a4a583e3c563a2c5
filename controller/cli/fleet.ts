// featherctl get | describe | logs: reading the fleet.
import type { BlobView } from '../api/fleet.js';
import type { DeploymentDetail, DeploymentSummary, DeviceDetail, DeviceSummary, ModelView } from '../api/views.js';
import type { EventRecord } from '../store/types.js';
import { expectPositionals, parseCount, parseDuration, str, usageError } from './args.js';
import type { CommandRun, CtlContext } from './context.js';
import {
  blobsTable, deploymentsTable, describeDeployment, describeDevice, devicesTable, eventsTable, modelsTable, serialize,
} from './render.js';

/** Print `data` as -o asks, or the table `text()` for people. */
export function print(ctx: CtlContext, data: unknown, text: () => string): void {
  ctx.out(serialize(data, ctx.output) ?? text());
}

/** A list: as -o asks, or its table; an empty table is one line on stderr ("no devices"). */
function printList(ctx: CtlContext, items: readonly unknown[], what: string, text: () => string): void {
  if (ctx.output === 'table' && items.length === 0) ctx.err(`no ${what}`);
  else print(ctx, items, text);
}

type Kind = 'devices' | 'deployments' | 'models' | 'events' | 'blobs';

const KINDS: Readonly<Record<string, Kind>> = {
  device: 'devices', devices: 'devices', dev: 'devices',
  deployment: 'deployments', deployments: 'deployments', deploy: 'deployments',
  model: 'models', models: 'models',
  event: 'events', events: 'events',
  blob: 'blobs', blobs: 'blobs',
};

function kindOf(word: string | undefined, allowed: readonly Kind[], usage: string): Kind {
  const k = word === undefined ? undefined : KINDS[word];
  if (k === undefined || !allowed.includes(k)) throw usageError(`${word === undefined ? 'missing what to show' : `cannot show "${word}"`}: use ${allowed.join(', ')}; usage: ${usage}`);
  return k;
}

const enc = encodeURIComponent;

export const get: CommandRun = async (ctx) => {
  const usage = 'featherctl get devices|deployments|models|events|blobs [NAME]';
  const [word, name] = expectPositionals(ctx.positionals, ['KIND', 'NAME'], usage, 1);
  const kind = kindOf(word, ['devices', 'deployments', 'models', 'events', 'blobs'], usage);
  const client = ctx.client();
  const now = ctx.now();
  switch (kind) {
    case 'devices': {
      const items = name === undefined
        ? (await client.get<{ items: DeviceSummary[] }>('/api/v1/devices')).items
        : [await client.get<DeviceDetail>(`/api/v1/devices/${enc(name)}`)];
      if (name === undefined) printList(ctx, items, 'devices', () => devicesTable(items, now));
      else print(ctx, items[0], () => devicesTable(items, now));
      return 0;
    }
    case 'deployments': {
      const items = name === undefined
        ? (await client.get<{ items: DeploymentSummary[] }>('/api/v1/deployments')).items
        : [await client.get<DeploymentDetail>(`/api/v1/deployments/${enc(name)}`)];
      if (name === undefined) printList(ctx, items, 'deployments', () => deploymentsTable(items, now));
      else print(ctx, items[0], () => deploymentsTable(items, now));
      return 0;
    }
    case 'models': {
      const items = name === undefined
        ? (await client.get<{ items: ModelView[] }>('/api/v1/models')).items
        : [await client.get<ModelView>(`/api/v1/models/${enc(name)}`)];
      if (name === undefined) printList(ctx, items, 'models', () => modelsTable(items));
      else print(ctx, items[0], () => modelsTable(items));
      return 0;
    }
    case 'events': {
      if (name !== undefined) throw usageError('get events takes no NAME; use --device ID or --type TYPE');
      const limit = str(ctx.values, 'limit');
      const items = (await client.get<{ items: EventRecord[] }>('/api/v1/events', {
        device: str(ctx.values, 'device'), type: str(ctx.values, 'type'), limit: limit === undefined ? undefined : parseCount(limit, '--limit', 1, 10_000),
      })).items;
      printList(ctx, items, 'events', () => eventsTable(items));
      return 0;
    }
    case 'blobs': {
      const all = (await client.get<{ items: BlobView[] }>('/api/v1/blobs')).items;
      const items = name === undefined ? all : all.filter((b) => b.names.includes(name) || b.digest.startsWith(name.replace(/^sha256:/, '')));
      printList(ctx, items, 'blobs', () => blobsTable(items, now));
      return 0;
    }
  }
};

export const describe: CommandRun = async (ctx) => {
  const usage = 'featherctl describe device|deployment NAME';
  const [word, name] = expectPositionals(ctx.positionals, ['KIND', 'NAME'], usage);
  const kind = kindOf(word, ['devices', 'deployments'], usage);
  const client = ctx.client();
  if (kind === 'devices') {
    const d = await client.get<DeviceDetail>(`/api/v1/devices/${enc(name as string)}`);
    print(ctx, d, () => describeDevice(d, ctx.now()));
  } else {
    const d = await client.get<DeploymentDetail>(`/api/v1/deployments/${enc(name as string)}`);
    print(ctx, d, () => describeDeployment(d, ctx.now()));
  }
  return 0;
};

export const logs: CommandRun = async (ctx) => {
  const [device, container] = expectPositionals(ctx.positionals, ['DEVICE', 'CONTAINER'], 'featherctl logs DEVICE CONTAINER [--tail N]');
  const tail = str(ctx.values, 'tail');
  const timeout = str(ctx.values, 'timeout');
  const r = await ctx.client().call<{ device: string; container: string; lines: string[] }>('GET', `/api/v1/devices/${enc(device as string)}/containers/${enc(container as string)}/logs`, {
    query: {
      tail: tail === undefined ? undefined : parseCount(tail, '--tail', 1, 10_000),
      timeoutMs: timeout === undefined ? undefined : parseDuration(timeout, '--timeout'),
    },
    timeoutMs: 130_000,
  });
  if (ctx.output !== 'table') print(ctx, r, () => '');
  else if (r.lines.length > 0) ctx.out(r.lines.join('\n'));
  return 0;
};
