// The container runtime over feather-shim: create, start, stop, remove, list, logs, gc.
// Containers outlive the agent: everything it knows is re-read from containers/<name>/.
import { mkdirSync, rmSync, writeFileSync, readFileSync, existsSync, chownSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FeatherError, errnoCode } from '../../shared/errors.js';
import { isPidAlive } from '../../shared/process.js';
import { createLogger, type Logger } from '../../shared/logging.js';
import type { DataPaths, ContainerPaths } from '../paths.js';
import type { ContainerRuntime, ContainerExit, GcReport } from './api.js';
import type { CgroupManager, CgroupUsage, DeviceFilter } from './cgroups/types.js';
import { parseCpus, parseCpuset, parseMemory, parsePids, validateName, type Limits } from '../../shared/limits.js';
import { encodeSpec, type ShimSpec } from './spec.js';
import { locateShim, runAttached, shimFeatures, startDetached, type ShimFeatures } from './shim.js';
import {
  containerInfo, containersUsingImage, isShimAlive, listContainerNames, readConfig, readState, writeFileAtomic,
  type ContainerConfig, type ShimState,
} from './state.js';
import type { BindMount, ContainerInfo, RunRequest, RunResult, StopResult } from './types.js';
import { shiftedLayer } from './userns.js';
import { ExitWatcher } from './exit-watcher.js';
// CDI (agent/devices/cdi): device-cgroup rules, env, binds and hooks from a container's devices.
import { applyDeviceCgroup, containerDeviceEdits } from '../devices/cdi/container.js';
import { runHostHooks, shimHooks, writeHookBundle } from '../devices/cdi/hooks.js';

/** What the runtime needs from the image store. */
export interface ImageLookup {
  get(name: string): { sha256: string } | undefined;
  /** Absolute path of the image's extracted, read-only layer. */
  ensureExtracted(name: string): Promise<string>;
}

export interface RuntimeOptions {
  paths: DataPaths;
  cgroups: CgroupManager;
  images: ImageLookup;
  defaults: { memory: string; cpus: number; pids: number };
  logMaxBytes: number;
  /**
   * Host directory whose containers/<name>/ is mounted at /run/feather in each container, where
   * the agent puts the container's statsd socket (contract: /run/feather/statsd.sock).
   */
  runDir?: string | undefined;
  shimPath?: string | undefined;
  /** Host id range that container root maps to under --userns. */
  usernsRange?: { uid: number; gid: number; size: number } | undefined;
  logger?: Logger | undefined;
}

/** What the daemon adds around a container's life (telemetry sockets). */
export interface RuntimeHooks {
  /** Before every start (first run, start, restart): extra bind mounts for this container. */
  beforeStart?(config: ContainerConfig): BindMount[];
  /** After the container and its files are removed. */
  afterRemove?(name: string): void;
}

const DEFAULT_RUN_DIR = '/run/feather';
/** Inside every container (contract "Inference telemetry"). */
const RUN_DIR_IN_CONTAINER = '/run/feather';

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const DEFAULT_USERNS = { uid: 100000, gid: 100000, size: 65536 };

export class ShimRuntime implements ContainerRuntime {
  private readonly log: Logger;
  private readonly shim: string;
  private readonly exits: ExitWatcher;
  private hooks: RuntimeHooks = {};
  private features: ShimFeatures | undefined;

  constructor(private readonly opts: RuntimeOptions) {
    this.log = opts.logger ?? createLogger('agent:runtime');
    this.shim = locateShim(opts.shimPath ?? '');
    this.exits = new ExitWatcher({
      running: () => this.list().map((c) => c.name),
      readState: (name) => readState(this.opts.paths.container(name).state),
      reap: (name, state) => this.reap(name, state),
      log: this.log,
    });
    for (const dir of [opts.paths.containers, opts.paths.tmp]) mkdirSync(dir, { recursive: true });
  }

  shimFeatures(): ShimFeatures {
    this.features ??= shimFeatures(this.shim);
    return this.features;
  }

  get cgroupMode(): CgroupManager['mode'] {
    return this.opts.cgroups.mode;
  }

  setHooks(hooks: RuntimeHooks): void {
    this.hooks = hooks;
  }

  /** Limits from a request, with the configured defaults for what it leaves out. */
  resolveLimits(partial: Partial<Limits> | undefined): Limits {
    const p = partial ?? {};
    return {
      memoryBytes: parseMemory(p.memoryBytes ?? this.opts.defaults.memory),
      cpus: parseCpus(p.cpus ?? this.opts.defaults.cpus),
      pids: parsePids(p.pids ?? this.opts.defaults.pids),
      cpuset: p.cpuset === undefined ? undefined : parseCpuset(p.cpuset),
    };
  }

  /** Create the container's directories and config; CONFLICT when the name is taken. */
  async create(req: RunRequest): Promise<ContainerConfig> {
    const name = validateName('container', req.name);
    const image = this.opts.images.get(req.image);
    if (!image) {
      throw new FeatherError('NOT_FOUND', `image "${req.image}" is not on this device; pull or import it first (feather-agent images lists what is here)`);
    }
    const limits = this.resolveLimits(req.limits);
    const cp = this.opts.paths.container(name);
    try {
      mkdirSync(cp.dir, { mode: 0o711 }); // traversable by a user-namespaced container root
    } catch (e: unknown) {
      if (errnoCode(e) === 'EEXIST') {
        throw new FeatherError('CONFLICT', `container name "${name}" is in use; remove it (feather-agent rm ${name}) or choose another name`);
      }
      throw e;
    }
    try {
      const imageLayer = await this.opts.images.ensureExtracted(req.image);
      const userns = req.userns ? (this.opts.usernsRange ?? DEFAULT_USERNS) : undefined;
      // Where the kernel has idmapped mounts the shim shifts ownership; else a chowned copy per mapping.
      const idmap = userns !== undefined && this.shimFeatures().idmap;
      const lowers = [...(req.extraLayers ?? []), imageLayer];
      const config: ContainerConfig = {
        version: 1,
        name,
        image: req.image,
        imageSha256: image.sha256,
        lowers: userns && !idmap ? lowers.map((l) => shiftedLayer(l, userns)) : lowers,
        args: req.args && req.args.length > 0 ? req.args : ['/bin/sh'],
        env: req.env ?? {},
        limits,
        network: req.network ?? 'none',
        restart: req.restart ?? 'no',
        userns,
        idmap,
        init: req.init ?? false,
        binds: req.binds ?? [],
        devices: req.devices ?? [],
        labels: req.labels ?? {},
        createdAt: Date.now(),
        restarts: 0,
      };
      for (const dir of [cp.upper, cp.work, cp.rootfs]) mkdirSync(dir, { mode: 0o755 });
      if (userns) for (const dir of [cp.upper, cp.work, cp.rootfs]) chownSync(dir, userns.uid, userns.gid);
      writeFileAtomic(cp.config, JSON.stringify(config, null, 2));
      return config;
    } catch (e: unknown) {
      rmSync(cp.dir, { recursive: true, force: true });
      throw e;
    }
  }

  async run(req: RunRequest): Promise<RunResult> {
    const config = await this.create(req);
    try {
      return await this.startDetachedContainer(config);
    } catch (e: unknown) {
      // A container that never ran leaves nothing behind, so the same request can be retried.
      this.removeFiles(config.name);
      throw e;
    }
  }

  /**
   * Foreground run for the CLI: the container shares the caller's terminal; resolves with its
   * exit code. With `remove`, the container is deleted afterwards (like `docker run --rm`).
   */
  async runAttached(req: RunRequest, opts: { remove?: boolean } = {}): Promise<number> {
    const config = await this.create(req);
    try {
      return await this.startAttached(config, req.tty ?? false);
    } finally {
      if (opts.remove) await this.deleteStopped(config);
    }
  }

  async start(name: string): Promise<RunResult> {
    const config = this.requireConfig(name);
    if (this.isRunning(name)) throw new FeatherError('CONFLICT', `container "${name}" is already running`);
    return this.startDetachedContainer(config);
  }

  /** Start a stopped container in the foreground. */
  async startAttachedByName(name: string, tty: boolean): Promise<number> {
    const config = this.requireConfig(name);
    if (this.isRunning(name)) throw new FeatherError('CONFLICT', `container "${name}" is already running`);
    return this.startAttached(config, tty);
  }

  private spec(config: ContainerConfig, cgroupDirs: string[], mode: { detach: boolean; tty: boolean }, deviceFilter?: DeviceFilter): ShimSpec {
    const cp = this.opts.paths.container(config.name);
    // CDI: the specs' env under the workload's own; their mounts after the binds; only real nodes as devices.
    const cdi = containerDeviceEdits(config.devices);
    const ownEnv = { ...cdi.env, ...config.env };
    const env = Object.entries(ownEnv).map(([k, v]) => `${k}=${v}`);
    if (!('PATH' in ownEnv)) env.unshift(DEFAULT_PATH);
    if (!('HOME' in ownEnv)) env.push('HOME=/root');
    if (mode.tty && !('TERM' in ownEnv)) env.push(`TERM=${process.env['TERM'] ?? 'xterm'}`);
    // Hooks get a bundle with an OCI-shaped config.json (written only for containers that have hooks).
    const hooks = shimHooks(cdi.hooks);
    const bundle = cdi.hooks.length > 0
      ? writeHookBundle(cp.bundle, { name: config.name, rootfs: cp.rootfs, args: config.args, env, cwd: '/' })
      : undefined;
    return {
      name: config.name,
      rootfs: cp.rootfs,
      lowers: config.lowers,
      upper: cp.upper,
      work: cp.work,
      args: config.args,
      env,
      network: config.network,
      cgroups: cgroupDirs,
      userns: config.userns,
      idmap: config.idmap,
      tty: mode.tty,
      detach: mode.detach,
      init: config.init,
      statePath: cp.state,
      logPath: mode.detach ? cp.log : undefined,
      logMaxBytes: mode.detach ? this.opts.logMaxBytes : undefined,
      binds: [...config.binds, ...cdi.binds, this.runDirBind(config.name), ...(this.hooks.beforeStart?.(config) ?? [])],
      devices: cdi.nodes,
      hooks,
      bundle,
      deviceFilter,
    };
  }

  /** The container's own run directory, created before each start: every container gets one. */
  containerRunDir(name: string): string {
    return join(this.opts.runDir ?? DEFAULT_RUN_DIR, 'containers', name);
  }

  private runDirBind(name: string): BindMount {
    // The directory, not a socket file, is mounted: an agent restarted later puts a new socket in it.
    const dir = this.containerRunDir(name);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    return { source: dir, target: RUN_DIR_IN_CONTAINER, readonly: false };
  }

  private prepareStart(config: ContainerConfig, mode: { detach: boolean; tty: boolean }): ContainerPaths {
    const cp = this.opts.paths.container(config.name);
    // A cgroup left by a killed supervisor would make create() fail with CONFLICT.
    this.opts.cgroups.remove(config.name);
    const cgroupDirs = this.opts.cgroups.create(config.name, config.limits);
    try {
      // CDI: device-cgroup rules (deny all, the shim's /dev basics, the container's nodes) before the workload
      // runs: v1 writes them; on v2 the shim attaches them as a BPF program.
      const devices = applyDeviceCgroup(this.opts.cgroups, config.name, config.devices, this.log);
      cgroupDirs.push(...devices.dirs);
      rmSync(cp.state, { force: true });
      writeFileSync(cp.spec, encodeSpec(this.spec(config, cgroupDirs, mode, devices.filter)), { mode: 0o600 });
    } catch (e: unknown) {
      this.opts.cgroups.remove(config.name);
      throw e;
    }
    return cp;
  }

  private async startDetachedContainer(config: ContainerConfig): Promise<RunResult> {
    const cp = this.prepareStart(config, { detach: true, tty: false });
    try {
      const started = await startDetached(this.shim, cp.spec);
      this.exits.watch(config.name);
      const state = readState(cp.state);
      const startedAt = state?.startedAt ?? Date.now();
      this.log.info('container.started', { name: config.name, pid: started.pid, image: config.image });
      // CDI: poststart hooks run on the host once the workload runs (failures are logged, never fatal).
      await runHostHooks(containerDeviceEdits(config.devices).hooks, 'poststart', { id: config.name, pid: started.pid, bundle: cp.bundle }, this.log);
      return { name: config.name, pid: started.pid, startedAt };
    } catch (e: unknown) {
      this.opts.cgroups.remove(config.name);
      throw e;
    }
  }

  private async startAttached(config: ContainerConfig, tty: boolean): Promise<number> {
    const cp = this.prepareStart(config, { detach: false, tty });
    try {
      return await runAttached(this.shim, cp.spec);
    } finally {
      // The shim removes the cgroups itself; this covers a shim that died before it could.
      this.opts.cgroups.remove(config.name);
    }
  }

  private requireConfig(name: string): ContainerConfig {
    validateName('container', name);
    const config = readConfig(this.opts.paths.container(name).config);
    if (!config) throw new FeatherError('NOT_FOUND', `no container named "${name}" (feather-agent ps --all lists them)`);
    return config;
  }

  private liveState(name: string): ShimState | undefined {
    const state = readState(this.opts.paths.container(name).state);
    if (state?.status === 'running' && !isShimAlive(state.shimPid)) {
      return { ...state, status: 'exited' };
    }
    return state;
  }

  private isRunning(name: string): boolean {
    return this.liveState(name)?.status === 'running';
  }

  async stop(name: string, timeoutS = 10): Promise<StopResult> {
    this.requireConfig(name);
    const state = this.liveState(name);
    if (!state || state.status !== 'running') {
      return { name, exitCode: state?.exitCode };
    }
    // SIGTERM reaches the container's PID 1 only if it handles it; SIGKILL always does.
    this.signal(state.pid, 'SIGTERM');
    if (!(await this.waitExit(name, timeoutS * 1000))) {
      this.signal(state.pid, 'SIGKILL');
      if (!(await this.waitExit(name, 5000))) {
        throw new FeatherError('RUNTIME_ERROR', `container "${name}" (pid ${state.pid}) did not exit after SIGKILL`);
      }
    }
    const final = readState(this.opts.paths.container(name).state);
    this.log.info('container.stopped', { name, exitCode: final?.exitCode });
    return { name, exitCode: final?.exitCode };
  }

  private signal(pid: number, sig: NodeJS.Signals): void {
    try {
      process.kill(pid, sig);
    } catch (e: unknown) {
      if (errnoCode(e) !== 'ESRCH') throw e;
    }
  }

  /** Waits until the supervisor has recorded the exit (or died). */
  private async waitExit(name: string, ms: number): Promise<boolean> {
    const statePath = this.opts.paths.container(name).state;
    const deadline = Date.now() + ms;
    for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
      const state = readState(statePath);
      if (!state || state.status === 'exited') return true;
      if (!isShimAlive(state.shimPid)) {
        this.reap(name, state);
        return true;
      }
      if (Date.now() > deadline) return false;
      await sleep(delay);
    }
  }

  /** Record the end of a container whose supervisor was killed, and free its cgroups. */
  private reap(name: string, state: ShimState): void {
    if (isPidAlive(state.pid) && !isShimAlive(state.shimPid)) {
      // PDEATHSIG should have killed it with its supervisor; make sure.
      this.signal(state.pid, 'SIGKILL');
    }
    const usage = this.opts.cgroups.usage(name);
    this.opts.cgroups.remove(name);
    const reaped: ShimState = { ...state, status: 'exited', finishedAt: Date.now(), oomKills: usage?.oomKills ?? 0, reaped: true };
    writeFileAtomic(this.opts.paths.container(name).state, JSON.stringify(reaped));
    this.log.warn('container.reaped', { name, pid: state.pid, reason: 'supervisor gone' });
  }

  async remove(name: string, opts: { force?: boolean } = {}): Promise<StopResult> {
    const config = this.requireConfig(name);
    if (this.isRunning(name)) {
      if (!opts.force) throw new FeatherError('CONFLICT', `container "${name}" is running; stop it first or remove with --force`);
      await this.stop(name, 0);
    }
    const state = readState(this.opts.paths.container(name).state);
    await this.deleteStopped(config);
    this.log.info('container.removed', { name });
    return { name, exitCode: state?.exitCode };
  }

  /** Delete a container that has run: its CDI poststop hooks (on the host, while the bundle exists), then its files. */
  private async deleteStopped(config: ContainerConfig): Promise<void> {
    const bundle = this.opts.paths.container(config.name).bundle;
    await runHostHooks(containerDeviceEdits(config.devices).hooks, 'poststop', { id: config.name, pid: 0, bundle }, this.log);
    this.removeFiles(config.name);
  }

  private removeFiles(name: string): void {
    this.opts.cgroups.remove(name);
    this.exits.forget(name);
    rmSync(this.opts.paths.container(name).dir, { recursive: true, force: true });
    rmSync(this.containerRunDir(name), { recursive: true, force: true });
    try {
      this.hooks.afterRemove?.(name);
    } catch (e: unknown) {
      this.log.warn('hook.failed', { name, hook: 'afterRemove', error: e });
    }
  }

  inspect(name: string): ContainerInfo {
    const config = this.requireConfig(name);
    return containerInfo(config, this.liveState(name));
  }

  list(opts: { all?: boolean } = {}): ContainerInfo[] {
    const out: ContainerInfo[] = [];
    for (const name of listContainerNames(this.opts.paths.containers)) {
      let config: ContainerConfig | undefined;
      try {
        config = readConfig(this.opts.paths.container(name).config);
      } catch {
        continue; // a corrupt config is reported by inspect and cleaned by gc, not here
      }
      if (!config) continue;
      const info = containerInfo(config, this.liveState(name));
      if (opts.all || info.status === 'running') out.push(info);
    }
    return out;
  }

  async logs(name: string, tail?: number): Promise<string[]> {
    this.requireConfig(name);
    const cp = this.opts.paths.container(name);
    const read = (p: string): string => (existsSync(p) ? readFileSync(p, 'utf8') : '');
    const lines = (read(`${cp.log}.1`) + read(cp.log)).split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return tail === undefined ? lines : lines.slice(Math.max(0, lines.length - tail));
  }

  /** Which containers use an image, by sha256 (for ImageStore.remove and gc). */
  containersUsing(sha256: string): string[] {
    return containersUsingImage(this.opts.paths.containers, sha256);
  }

  usage(name: string): CgroupUsage | undefined {
    return this.opts.cgroups.usage(name);
  }

  /** Bump the restart counter (used by restart policies). */
  recordRestart(name: string): void {
    const cp = this.opts.paths.container(name);
    const config = readConfig(cp.config);
    if (!config) return;
    config.restarts += 1;
    writeFileAtomic(cp.config, JSON.stringify(config, null, 2));
  }

  async gc(): Promise<GcReport> {
    const report: GcReport = { reaped: [], cgroups: [], tmp: [] };
    const names = new Set(listContainerNames(this.opts.paths.containers));
    for (const name of names) {
      const cp = this.opts.paths.container(name);
      let config: ContainerConfig | undefined;
      try { config = readConfig(cp.config); } catch { config = undefined; }
      if (!config) {
        // Half-created (killed between mkdir and config write) or corrupt: nothing trusts it.
        if (!isAnyShimUsing(cp.state)) {
          rmSync(cp.dir, { recursive: true, force: true });
          report.tmp.push(cp.dir);
        }
        continue;
      }
      const state = readState(cp.state);
      if (state?.status === 'running' && !isShimAlive(state.shimPid)) {
        this.reap(name, state);
        report.reaped.push(name);
      }
    }
    for (const name of this.opts.cgroups.list()) {
      // Cgroup names are per host: one of a container in another data dir is not ours to remove.
      if (!names.has(name)) continue;
      const state = readState(this.opts.paths.container(name).state);
      if (state?.status === 'running' && isShimAlive(state.shimPid)) continue;
      this.opts.cgroups.remove(name);
      report.cgroups.push(name);
    }
    // tmp/ belongs to the image store (partial downloads to resume): ImageStore.gc() cleans it.
    if (report.reaped.length + report.cgroups.length + report.tmp.length > 0) this.log.info('gc.done', { ...report });
    return report;
  }

  onExit(listener: (exit: ContainerExit) => void): () => void {
    return this.exits.subscribe(listener);
  }
}

function isAnyShimUsing(statePath: string): boolean {
  const state = readState(statePath);
  return state?.status === 'running' && isShimAlive(state.shimPid);
}

export function generateName(image: string): string {
  const base = image.replace(/[^a-zA-Z0-9_.-]/g, '-').replace(/^[^a-zA-Z0-9]+/, '').slice(0, 40) || 'c';
  return `${base}-${randomBytes(3).toString('hex')}`;
}
