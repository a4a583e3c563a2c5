// One executor per verb of the contract (../shared/DESIGN.md, "Commands"): validated body in,
// result out, over the ContainerRuntime and the image store. Executors throw FeatherErrors; the
// dispatcher turns them into replies.
import { FeatherError, toFeatherError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { CommandBodies, ModelRef } from '../../shared/protocol/commands.js';
import type { Verb } from '../../shared/protocol/types.js';
import type { ContainerRuntime } from '../runtime/api.js';
import type { BindMount, ContainerInfo, DeviceNode } from '../runtime/types.js';
import type { ImageStore } from '../images/store.js';
import { ensureLayers } from '../images/layers.js';
import type { EventPublisher } from './events.js';

/** What the control plane uses of the image store. */
export type ImagesApi = Pick<ImageStore, 'list' | 'get' | 'pull' | 'remove' | 'ensureModel'>;

/** Resolves CDI names ("vendor.com/class=name") to device nodes; agent/devices will provide one. */
export type DeviceResolver = (names: string[]) => Promise<DeviceNode[]>;

export interface ExecutorContext {
  runtime: ContainerRuntime;
  images: ImagesApi;
  inventory: () => unknown;
  events: EventPublisher;
  devices: DeviceResolver | undefined;
  logger: Logger;
  /** Aborted when the control plane stops (pulls in progress give up). */
  signal: AbortSignal;
}

export interface Executor<V extends Verb> {
  /** Changes state on the device: a started marker is logged so a restart never runs it twice. */
  mutating: boolean;
  /** Commands sharing a key run one at a time ("container:web1", "image:busybox"). */
  keys: (body: CommandBodies[V]) => string[];
  run: (body: CommandBodies[V], ctx: ExecutorContext) => Promise<unknown>;
}

/** Where a model named in container.run appears inside the container. */
export const MODELS_MOUNT = '/models';

const container = (name: string): string => `container:${name}`;
const image = (name: string): string => `image:${name}`;

/** A container as container.list shows it (undefined fields become null, so JSON keeps them). */
export function listEntry(c: ContainerInfo): Record<string, unknown> {
  return {
    name: c.name,
    image: c.image,
    imageSha256: c.imageSha256,
    state: c.status,
    pid: c.pid ?? null,
    exitCode: c.exitCode ?? null,
    oomKilled: c.oomKilled,
    createdAt: c.createdAt,
    startedAt: c.startedAt ?? null,
    finishedAt: c.finishedAt ?? null,
    limits: { memoryBytes: c.limits.memoryBytes, cpus: c.limits.cpus, pids: c.limits.pids, cpuset: c.limits.cpuset ?? null },
    args: c.args,
    restart: c.restart,
    restarts: c.restarts,
    labels: c.labels,
  };
}

async function modelBinds(models: ModelRef[] | undefined, ctx: ExecutorContext): Promise<BindMount[]> {
  const binds: BindMount[] = [];
  for (const m of models ?? []) {
    let dir: string;
    try {
      dir = await ctx.images.ensureModel(m.url, m.sha256, { signal: ctx.signal });
    } catch (e: unknown) {
      const err = toFeatherError(e, 'PULL_FAILED');
      ctx.events.publish('pull.failed', { model: m.name, url: m.url, sha256: m.sha256, code: err.code, message: err.message });
      throw new FeatherError(err.code, `model ${m.name}: ${err.message}`, undefined, { cause: e });
    }
    binds.push({ source: dir, target: `${MODELS_MOUNT}/${m.name}`, readonly: true });
  }
  return binds;
}

async function resolveDevices(names: string[] | undefined, ctx: ExecutorContext): Promise<DeviceNode[] | undefined> {
  if (names === undefined || names.length === 0) return undefined;
  if (ctx.devices === undefined) {
    throw new FeatherError('NOT_FOUND', `devices ${names.join(', ')} cannot be given to the container: this agent has no device registry yet; remove "devices" from the command`);
  }
  return ctx.devices(names);
}

export const EXECUTORS: { [V in Verb]: Executor<V> } = {
  'ping': {
    mutating: false,
    keys: () => [],
    run: async () => ({ pong: true, ts: Date.now() }),
  },
  'inventory': {
    mutating: false,
    keys: () => [],
    run: async (_b, ctx) => ctx.inventory(),
  },
  'image.pull': {
    mutating: true,
    keys: (b) => [image(b.name)],
    run: async (b, ctx) => {
      try {
        const r = await ctx.images.pull(b.url, { name: b.name, sha256: b.sha256, signal: ctx.signal });
        const result = { name: r.name, sha256: r.sha256, bytes: r.bytes, durationMs: r.durationMs };
        ctx.events.publish('image.pulled', result);
        return result;
      } catch (e: unknown) {
        const err = toFeatherError(e, 'PULL_FAILED');
        ctx.events.publish('pull.failed', { name: b.name, url: b.url, sha256: b.sha256, code: err.code, message: err.message });
        throw err;
      }
    },
  },
  'image.list': {
    mutating: false,
    keys: () => [],
    run: async (_b, ctx) => (await ctx.images.list()).map((i) => ({ name: i.name, sha256: i.sha256, size: i.size, source: i.source, pulledAt: i.pulledAt, cached: i.cached })),
  },
  'image.rm': {
    mutating: true,
    keys: (b) => [image(b.name)],
    run: async (b, ctx) => {
      const inUseBy = (sha256: string): string[] => ctx.runtime.list({ all: true }).filter((c) => c.imageSha256 === sha256).map((c) => c.name);
      await ctx.images.remove(b.name, { inUseBy });
      return {};
    },
  },
  'container.run': {
    mutating: true,
    keys: (b) => [container(b.name), image(b.image)],
    run: async (b, ctx) => {
      const devices = await resolveDevices(b.devices, ctx);
      const binds = await modelBinds(b.models, ctx);
      // Layers: pulled and verified like images, extracted once, stacked above the image (topmost first).
      const extraLayers = b.layers !== undefined && b.layers.length > 0
        ? await ensureLayers(ctx.images, b.layers, { signal: ctx.signal, imageSha256: ctx.images.get(b.image)?.sha256 })
        : undefined;
      const r = await ctx.runtime.run({
        name: b.name, image: b.image, args: b.args, env: b.env, limits: b.limits,
        network: b.network, restart: b.restart, detach: true,
        ...(binds.length > 0 ? { binds } : {}),
        ...(devices !== undefined ? { devices } : {}),
        ...(extraLayers !== undefined ? { extraLayers } : {}),
      });
      return { name: r.name, pid: r.pid, startedAt: r.startedAt };
    },
  },
  'container.stop': {
    mutating: true,
    keys: (b) => [container(b.name)],
    run: async (b, ctx) => {
      const r = await ctx.runtime.stop(b.name, b.timeoutS);
      return { name: r.name, exitCode: r.exitCode ?? null };
    },
  },
  'container.rm': {
    mutating: true,
    keys: (b) => [container(b.name)],
    run: async (b, ctx) => {
      // The contract's rm takes timeoutS: a running container is stopped (SIGTERM, SIGKILL
      // after timeoutS) and then removed, in one command.
      if (ctx.runtime.inspect(b.name).status === 'running') await ctx.runtime.stop(b.name, b.timeoutS);
      const r = await ctx.runtime.remove(b.name, { force: true });
      return { name: r.name, exitCode: r.exitCode ?? null };
    },
  },
  'container.list': {
    mutating: false,
    keys: () => [],
    run: async (b, ctx) => ctx.runtime.list({ all: b.all }).map(listEntry),
  },
  'container.logs': {
    mutating: false,
    keys: (b) => [container(b.name)],
    run: async (b, ctx) => ({ lines: await ctx.runtime.logs(b.name, b.tail) }),
  },
};
