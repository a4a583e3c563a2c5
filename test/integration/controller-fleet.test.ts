// A real feather-agent daemon registering with a real controller, in both broker modes (the
// embedded aedes broker; an external Mosquitto run with deploy/mosquitto/mosquitto.conf and the
// generated password and ACL files): the agent logs in with its device token, the controller
// sees it online with its inventory and telemetry, a desired state it publishes is run and
// reported, and a controller restart loses nothing, publishes the same desired state again and
// starts no duplicate container. Needs root and `npm run build` (the daemon runs from dist/).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { mosquittoAclFile, mosquittoPasswordFile } from '../../controller/broker/mosquitto.js';
import { loadControllerConfig, type ControllerConfig } from '../../controller/config.js';
import type { ControllerContext } from '../../controller/core/context.js';
import { Controller } from '../../controller/core/controller.js';
import { configureLogging, createLogger } from '../../shared/logging.js';
import { freePort, waitForPort } from '../helpers/brokers.js';
import { DaemonFixture, cannotRun, until, type AgentProcess } from '../helpers/daemon-fixture.js';

configureLogging({ level: process.env['FEATHER_LOG_LEVEL'] === 'debug' ? 'debug' : 'silent' });
const CONF = fileURLToPath(new URL('../../deploy/mosquitto/mosquitto.conf', import.meta.url));

const skip = cannotRun();

/** The broker under test: the controller's own, or Mosquitto with files from the controller's database. */
interface Setup {
  url: string;
  config: ControllerConfig;
  /** Write the password and ACL files from the store and (re)load Mosquitto; nothing for the embedded broker. */
  sync(ctx: ControllerContext): Promise<void>;
  close(): Promise<void>;
}

function controllerConfig(dataDir: string, over: Record<string, unknown>): ControllerConfig {
  return loadControllerConfig({ env: {}, overrides: { dataDir, 'mqtt.host': '127.0.0.1', 'http.host': '127.0.0.1', 'http.port': 0, ...over } });
}

async function embeddedSetup(root: string): Promise<Setup> {
  const port = await freePort();
  return {
    url: `mqtt://127.0.0.1:${port}`,
    config: controllerConfig(join(root, 'controller'), { 'mqtt.port': port }),
    sync: async () => undefined,
    close: async () => undefined,
  };
}

async function mosquittoSetup(root: string): Promise<Setup> {
  const port = await freePort();
  const dir = join(root, 'mosquitto');
  mkdirSync(join(dir, 'data'), { recursive: true });
  writeFileSync(join(dir, 'mosquitto.conf'), readFileSync(CONF, 'utf8')
    .replace(/^listener 1883$/m, `listener ${port} 127.0.0.1`)
    .replace(/^persistence_location .*$/m, `persistence_location ${dir}/data/`)
    .replace(/^password_file .*$/m, `password_file ${dir}/passwd`)
    .replace(/^acl_file .*$/m, `acl_file ${dir}/acl`)
    .replace(/^log_dest syslog$/m, 'log_dest stderr')
    .concat('\nuser root\n'));
  let child: ChildProcess | undefined;
  let log = '';
  return {
    url: `mqtt://127.0.0.1:${port}`,
    config: controllerConfig(join(root, 'controller'), { 'broker.url': `mqtt://127.0.0.1:${port}` }),
    sync: async (ctx) => {
      writeFileSync(join(dir, 'passwd'), mosquittoPasswordFile(ctx.store), { mode: 0o600 });
      writeFileSync(join(dir, 'acl'), mosquittoAclFile(ctx.store, { topicPrefix: ctx.config.topicPrefix }), { mode: 0o600 });
      if (child === undefined) {
        child = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
        child.stderr?.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000); });
        await waitForPort(port);
      } else {
        child.kill('SIGHUP');
      }
    },
    close: async () => {
      const c = child;
      if (c === undefined || c.exitCode !== null) return;
      const gone = new Promise((resolve) => c.once('exit', resolve));
      c.kill('SIGTERM');
      await gone;
      if (process.env['FEATHER_LOG_LEVEL'] === 'debug') process.stderr.write(log);
    },
  };
}

for (const [mode, setupFor] of [['embedded aedes', embeddedSetup], ['external mosquitto', mosquittoSetup]] as const) {
  t.test(`a feather-agent registers and runs its desired state (${mode})`, { skip }, async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'feather-ctl-fleet-'));
    const fx = await DaemonFixture.create();
    const setup = await setupFor(root);
    let controller = new Controller({ config: setup.config, logger: createLogger('controller') });
    t.teardown(async () => {
      await fx.cleanup();
      await controller.stop();
      await setup.close();
      rmSync(root, { recursive: true, force: true });
    });
    let ctx = await controller.start();
    const id = `edge-${fx.tag}`;
    const { token } = await ctx.credentials.issue(id);
    await setup.sync(ctx);
    await ctx.mqtt.waitConnected(15_000);

    const agent: AgentProcess = await fx.startDaemon({
      broker: { url: setup.url }, deviceId: id,
      env: { FEATHER_BROKER_USERNAME: id, FEATHER_BROKER_PASSWORD: token, FEATHER_TELEMETRY_INTERVAL: '1' },
    });
    const context = (): string => fx.tails();
    await until('the device online with its inventory', () => { const d = ctx.store.getDevice(id); return d?.online === true && d.inventory !== undefined && d; }, { context });
    const device = ctx.store.getDevice(id);
    t.equal(device?.inventory?.id, id);
    t.ok(['x86_64', 'aarch64', 'riscv64'].includes(device?.inventory?.arch ?? ''), 'inventory stored');
    t.ok((device?.status?.agentVersion ?? '') !== '', 'status with the agent version');
    await until('telemetry: capacity', () => ctx.store.getDevice(id)?.capacity !== undefined, { context });
    t.ok((ctx.store.getDevice(id)?.capacity?.memoryTotalBytes ?? 0) > 0, 'capacity from telemetry');
    t.same(ctx.registry.counts(), { online: 1, offline: 0 });

    // Desired state -> the agent runs it and reports it.
    const name = fx.name('web');
    // A shell as PID 1 ignores SIGTERM unless it traps it: trap it so a replacement is quick.
    const sleeper = (s: number): string[] => ['sh', '-c', `trap 'exit 0' TERM; sleep ${s} & wait`];
    const workloads = [{ name, image: 'busybox', args: sleeper(3600), limits: { memory: '32Mi', pids: 5 } }];
    const published = await ctx.desired.publishDesired(id, workloads);
    t.same([published.generation, published.changed], [1, true]);
    await until('the workload reported running', () => {
      const r = ctx.store.getDevice(id)?.reported;
      return r?.generation === 1 && r.workloads[0]?.name === name && r.workloads[0].phase === 'running';
    }, { context, ms: 30_000 });
    const before = (await fx.ps()).filter((c) => c.name === name);
    t.equal(before.length, 1);
    t.equal(before[0]?.status, 'running');
    t.equal(before[0]?.labels['feather.owner'], 'desired');

    // Restart the controller: the store keeps everything; the desired state goes out again,
    // unchanged, and the agent starts nothing new.
    const mark = agent.mark();
    await controller.stop();
    controller = new Controller({ config: setup.config, logger: createLogger('controller') });
    ctx = await controller.start();
    await ctx.mqtt.waitConnected(15_000);
    t.equal(ctx.store.getDevice(id)?.inventory?.id, id, 'the inventory survived the restart');
    t.equal(ctx.store.getDesired(id)?.generation, 1, 'the generation survived the restart');
    t.equal(ctx.store.activeCredentials(id).length, 1, 'the device token survived the restart');
    await until('the device online again', () => ctx.store.getDevice(id)?.online === true, { context, ms: 30_000 });
    await agent.waitForLog('desired.accepted', { after: mark, match: (l) => l['generation'] === 1, ms: 20_000 });
    await until('reported again', () => ctx.store.getDevice(id)?.reported?.generation === 1, { context });
    const after = (await fx.ps()).filter((c) => c.name === name);
    t.equal(after.length, 1, 'still one container');
    t.equal(after[0]?.pid, before[0]?.pid, 'the same process: not restarted, not duplicated');
    t.same(agent.logs.slice(mark).filter((l) => l.event === 'reconcile.plan'), [], 'the agent planned no step after the re-publish');
    t.same(await ctx.desired.publishDesired(id, workloads), { deviceId: id, generation: 1, changed: false });

    // A change after the restart gets the next generation and is applied.
    const changed = await ctx.desired.publishDesired(id, [{ ...workloads[0]!, args: sleeper(3601) }]);
    t.equal(changed.generation, 2);
    await until('generation 2 running', () => {
      const r = ctx.store.getDevice(id)?.reported;
      return r?.generation === 2 && r.workloads[0]?.phase === 'running';
    }, { context, ms: 30_000 });
    t.equal((await fx.ps()).filter((c) => c.name === name).length, 1, 'replaced, not added');

    t.same(await fx.cleanup(), { cgroups: [], mounts: [], containers: [] }, 'nothing of ours is left on the host');
  });
}
