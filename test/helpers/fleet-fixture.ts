// A small fleet on this machine for end-to-end tests (test/integration/fleet*.test.ts):
// - one feather-controller in this process (embedded broker on a fixed free port, so a restart
//   keeps the agents' URL; temp data dir; short offline grace), stopped and started at will;
// - real `feather-agent daemon` processes, each with its own data dir, run dir, device token and
//   fake host root (test/helpers/fake-host.ts: an arm64 Jetson, an x86 box with a Coral, …), so
//   their inventories differ in architecture, accelerators and labels while the containers all
//   run on this x86 host; an accelerator's node can be a real character device (charNodes), so
//   the agent's CDI spec for it gives it to containers;
// - artifacts (a busybox runtime tarball, tiny model files) served over node:http;
// - cleanup: agents SIGTERMed, every container `rm -f`, controller stopped, temp dirs removed, and
//   a report of the cgroups and mounts left for the container names the test used.
// Uses daemon-fixture.ts (AgentProcess, ImageServer, busybox tarball) as it is.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadControllerConfig, type ControllerConfig } from '../../controller/config.js';
import type { ControllerContext } from '../../controller/core/context.js';
import { Controller } from '../../controller/core/controller.js';
import { createLogger } from '../../shared/logging.js';
import { freePort } from './brokers.js';
import {
  AgentProcess, CLI, ImageServer, busyboxImageTarball, sha256, type CliResult, type Leftovers, type PsEntry,
} from './daemon-fixture.js';
import { buildFakeHost, type FakeAccelerator, type FakeBox, type FakeHost } from './fake-host.js';
import { cgroupLeftovers, hostMountsUnder } from './runtime-fixture.js';

export interface AgentSpec {
  /** Suffix of the device id (the fixture's tag is prepended: hosts run other suites too). */
  name: string;
  box: FakeBox;
  accelerators: FakeAccelerator[];
  labels: Record<string, string>;
  /**
   * Nodes of the fake host (as on the host, e.g. /dev/apex_0) made real character devices with
   * /dev/null's numbers (1:3, harmless to open and write), so the agent's CDI spec for them
   * resolves and a container can open them. Needs root, as the fleet tests do.
   */
  charNodes?: string[];
}

/** A file served over HTTP: what a deployment names as `url` and `sha256`. */
export interface Served {
  url: string;
  sha256: string;
}

/** One simulated board: a real agent daemon with its own data dir, run dir and fake host root. */
export class FleetAgent {
  readonly dataDir: string;
  readonly runDir: string;
  proc: AgentProcess | undefined;
  private starts = 0;

  constructor(readonly id: string, readonly spec: AgentSpec, readonly root: string, readonly host: FakeHost, readonly token: string) {
    this.dataDir = join(root, 'data');
    this.runDir = join(root, 'run');
    mkdirSync(this.runDir, { recursive: true });
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  /** Spawn `feather-agent daemon` (metrics off) and wait until it is up and connected. */
  async start(brokerUrl: string): Promise<AgentProcess> {
    if (this.running) throw new Error(`${this.id} is already running`);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      FEATHER_RUN_DIR: this.runDir,
      FEATHER_LOG_LEVEL: 'info',
      FEATHER_LABELS: JSON.stringify(this.spec.labels),
      FEATHER_BROKER_USERNAME: this.id,
      FEATHER_BROKER_PASSWORD: this.token,
      FEATHER_TELEMETRY_INTERVAL: '2',
    };
    for (const k of ['FEATHER_DATA_DIR', 'FEATHER_CONFIG', 'FEATHER_DEVICE_ID', 'FEATHER_BROKER_URL', 'FEATHER_HOST_ROOT']) delete env[k];
    const child = spawn(process.execPath, [
      CLI, '--data-dir', this.dataDir, 'daemon', '--broker', brokerUrl, '--device-id', this.id,
      '--metrics-port', '0', '--host-root', this.host.root,
    ], { stdio: ['ignore', 'pipe', 'pipe'], env });
    const proc = new AgentProcess(child, 0, `agent ${this.id} #${++this.starts}`);
    this.proc = proc;
    await proc.waitForLog('agent.started', { ms: 30_000 });
    await proc.waitForLog('mqtt.connected', { ms: 30_000 });
    return proc;
  }

  /** SIGKILL the daemon (its containers keep running, as on a real board whose agent crashed). */
  async kill(): Promise<void> {
    await this.proc?.kill('SIGKILL');
  }

  /** SIGTERM the daemon and wait for it (SIGKILL after 15 s). */
  async stop(): Promise<void> {
    await this.proc?.stop();
  }

  /** `feather-agent --data-dir <this board's> ...args`. */
  async cli(args: string[], timeoutMs = 60_000): Promise<CliResult> {
    const child = spawn(process.execPath, [CLI, '--data-dir', this.dataDir, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FEATHER_RUN_DIR: this.runDir },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearTimeout(timer);
    return { code, stdout, stderr };
  }

  /** `feather-agent ps --all --json` on this board's data dir. */
  async ps(): Promise<PsEntry[]> {
    const r = await this.cli(['ps', '--all', '--json']);
    if (r.code !== 0) throw new Error(`feather-agent ps on ${this.id} failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as PsEntry[];
  }

  /** The container's log lines (`feather-agent logs NAME`). */
  async logs(name: string): Promise<string[]> {
    const r = await this.cli(['logs', name]);
    if (r.code !== 0) throw new Error(`feather-agent logs ${name} on ${this.id} failed (${r.code}): ${r.stderr}`);
    return r.stdout.split('\n').filter((l) => l !== '');
  }

  /** `rm -f` every container of this board; returns the names, and the errors of those it could not remove. */
  async removeAll(): Promise<{ names: string[]; errors: string[] }> {
    const names: string[] = [];
    const errors: string[] = [];
    const list = await this.ps().catch(() => [] as PsEntry[]);
    for (const c of list) {
      names.push(c.name);
      const r = await this.cli(['rm', '-f', c.name]);
      if (r.code !== 0) errors.push(`${this.id}/${c.name}: ${r.stderr.trim()}`);
    }
    return { names, errors };
  }

  tail(n = 30): string {
    return this.proc?.tail(n) ?? `--- ${this.id}: never started`;
  }
}

export interface FleetOptions {
  /** Controller config offlineGraceS (default 3). */
  offlineGraceS?: number;
}

export class FleetFixture {
  /** A short random tag in device ids, deployment and container names (cgroups are host-wide). */
  readonly tag: string;
  readonly agents: FleetAgent[] = [];
  readonly config: ControllerConfig;
  private controller: Controller | undefined;
  private ctxValue: ControllerContext | undefined;
  private readonly names = new Set<string>();
  private cleaned: Leftovers | undefined;

  private constructor(readonly root: string, readonly mqttPort: number, readonly server: ImageServer, opts: FleetOptions) {
    this.tag = `f${Math.random().toString(16).slice(2, 7)}`;
    this.config = loadControllerConfig({
      env: {},
      overrides: {
        dataDir: join(root, 'controller'), 'mqtt.host': '127.0.0.1', 'mqtt.port': mqttPort,
        'http.host': '127.0.0.1', 'http.port': 0, offlineGraceS: opts.offlineGraceS ?? 3,
      },
    });
  }

  static async create(opts: FleetOptions = {}): Promise<FleetFixture> {
    const root = mkdtempSync(join(tmpdir(), 'feather-fleet-'));
    const server = await ImageServer.start();
    return new FleetFixture(root, await freePort(), server, opts);
  }

  get brokerUrl(): string {
    return `mqtt://127.0.0.1:${this.mqttPort}`;
  }

  get ctx(): ControllerContext {
    if (this.ctxValue === undefined) throw new Error('the controller is not running');
    return this.ctxValue;
  }

  /** Start the controller on the fixture's data dir and port (again after stopController()). */
  async startController(): Promise<ControllerContext> {
    if (this.controller !== undefined) throw new Error('the controller is already running');
    const controller = new Controller({ config: this.config, logger: createLogger('controller') });
    this.controller = controller;
    this.ctxValue = await controller.start();
    return this.ctxValue;
  }

  async stopController(): Promise<void> {
    const c = this.controller;
    this.controller = undefined;
    this.ctxValue = undefined;
    await c?.stop();
  }

  /** A busybox root filesystem tarball (with `files` added), served; sha256 and URL. */
  async serveImage(path: string, files: Record<string, string> = {}): Promise<Served> {
    const dest = join(this.root, `image-${path.replace(/[^A-Za-z0-9_.-]+/g, '_')}.tar.gz`);
    const { sha256: sum } = await busyboxImageTarball(dest, files);
    return { url: this.server.serve(path, readFileSync(dest)), sha256: sum };
  }

  /** Serve `content` at `path` (model files). */
  serveFile(path: string, content: string): Served {
    return { url: this.server.serve(path, Buffer.from(content)), sha256: sha256(content) };
  }

  /** Issue a token for `<tag>-<name>` and build its fake host; the agent is not started. */
  async addAgent(spec: AgentSpec): Promise<FleetAgent> {
    const id = `${this.tag}-${spec.name}`;
    const { token } = await this.ctx.credentials.issue(id);
    const root = join(this.root, 'agents', spec.name);
    mkdirSync(root, { recursive: true });
    const host = buildFakeHost(spec.box, { accelerators: spec.accelerators });
    for (const node of spec.charNodes ?? []) {
      const path = join(host.root, node);
      rmSync(path, { force: true });
      mkdirSync(dirname(path), { recursive: true });
      execFileSync('mknod', ['-m', '0666', path, 'c', '1', '3']);
    }
    const agent = new FleetAgent(id, spec, root, host, token);
    this.agents.push(agent);
    return agent;
  }

  /** Remember a container name for the leftover checks. */
  name(n: string): string {
    this.names.add(n);
    return n;
  }

  /** Every running agent's last log lines, for failure messages. */
  tails(n = 25): string {
    return this.agents.map((a) => a.tail(n)).join('\n');
  }

  /** Containers of every board, by device id. */
  async psAll(): Promise<Map<string, PsEntry[]>> {
    const out = new Map<string, PsEntry[]>();
    for (const a of this.agents) out.set(a.id, await a.ps());
    return out;
  }

  /**
   * Stop every agent (SIGTERM), `rm -f` every container, stop the controller and the file server,
   * remove the fake hosts and the temp root, and report what is left of ours on the host: cgroups
   * of the containers' names, mounts under the temp roots, containers that could not be removed.
   * Safe to call twice.
   */
  async cleanup(): Promise<Leftovers> {
    if (this.cleaned) return this.cleaned;
    await Promise.all(this.agents.map((a) => a.stop()));
    const keep = process.env['FEATHER_TEST_DAEMON_LOGS'];
    if (keep) {
      mkdirSync(keep, { recursive: true });
      for (const a of this.agents) writeFileSync(join(keep, `${a.id}.log`), (a.proc?.lines ?? []).join('\n') + '\n');
    }
    const containers: string[] = [];
    for (const a of this.agents) {
      const r = await a.removeAll();
      for (const n of r.names) this.names.add(n);
      containers.push(...r.errors);
    }
    await this.stopController();
    await this.server.close();
    const cgroups = [...this.names].flatMap((n) => cgroupLeftovers(n));
    const mounts = [this.root, ...this.agents.map((a) => a.host.root)].flatMap((p) => hostMountsUnder(p));
    for (const a of this.agents) if (hostMountsUnder(a.host.root).length === 0) a.host.cleanup();
    if (hostMountsUnder(this.root).length === 0) rmSync(this.root, { recursive: true, force: true });
    this.cleaned = { cgroups, mounts, containers };
    return this.cleaned;
  }
}
