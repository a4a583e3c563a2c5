// The controller's broker security with the real mosquitto_pub and mosquitto_sub, in both modes:
// the embedded aedes broker, and an external Mosquitto run with deploy/mosquitto/mosquitto.conf
// and the password and ACL files generated from the controller's database. The same checks run
// against both: admin with the admin token works, a wrong token is refused, device A can use its
// own topics and can neither publish to nor read device B's.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { mosquittoAclFile, mosquittoPasswordFile } from '../../controller/broker/mosquitto.js';
import { loadControllerConfig } from '../../controller/config.js';
import { Controller } from '../../controller/core/controller.js';
import type { ControllerContext } from '../../controller/core/context.js';
import { configureLogging, createLogger } from '../../shared/logging.js';
import { freePort, waitForPort } from '../helpers/brokers.js';

configureLogging({ level: process.env['FEATHER_LOG_LEVEL'] === 'debug' ? 'debug' : 'silent' });
const CONF = fileURLToPath(new URL('../../deploy/mosquitto/mosquitto.conf', import.meta.url));

interface Creds { user: string; password: string; clientId?: string }

/** mosquitto_pub with credentials; resolves with its exit code and stderr. */
async function pub(port: number, c: Creds, topic: string, payload: string, extra: string[] = []): Promise<{ code: number | null; stderr: string }> {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-u', c.user, '-P', c.password, '-q', '1', '-t', topic, '-m', payload, ...extra];
  if (c.clientId !== undefined) args.push('-i', c.clientId);
  const child = spawn('mosquitto_pub', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  return { code, stderr };
}

/** mosquitto_sub with credentials in the background; lines are "topic payload". */
class Sub {
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  private constructor(private readonly child: ChildProcess) {
    let partial = '';
    child.stdout?.on('data', (d: Buffer) => {
      partial += d.toString();
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) { this.lines.push(partial.slice(0, nl)); partial = partial.slice(nl + 1); }
    });
    child.stderr?.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    this.exited = new Promise((resolve) => child.once('exit', (c) => resolve(c)));
  }

  static start(port: number, c: Creds, topics: string[]): Sub {
    const args = ['-h', '127.0.0.1', '-p', String(port), '-u', c.user, '-P', c.password, '-q', '1', '-v'];
    if (c.clientId !== undefined) args.push('-i', c.clientId);
    for (const topic of topics) args.push('-t', topic);
    return new Sub(spawn('mosquitto_sub', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  async waitFor(line: string, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.lines.includes(line)) {
      if (Date.now() > deadline) throw new Error(`mosquitto_sub did not get "${line}"; got ${JSON.stringify(this.lines)}; stderr ${this.stderr}`);
      await sleep(20);
    }
  }

  /** Publish `marker` (as `by`) until this subscriber has it: then its subscriptions are live. */
  async ready(port: number, by: Creds, topic: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    const marker = `ready-${Math.random().toString(36).slice(2)}`;
    while (!this.lines.includes(`${topic} ${marker}`)) {
      if (Date.now() > deadline) throw new Error(`subscriber never ready; stderr ${this.stderr}`);
      await pub(port, by, topic, marker);
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await this.exited;
  }
}

interface Mode {
  name: 'embedded' | 'mosquitto';
  port: number;
  ctx: ControllerContext;
  admin: Creds;
  /** Make the broker see the credentials as they are in the store now. */
  reload(): Promise<void>;
  close(): Promise<void>;
}

function config(dataDir: string, over: Record<string, unknown>): ReturnType<typeof loadControllerConfig> {
  return loadControllerConfig({ env: {}, overrides: { dataDir, 'mqtt.host': '127.0.0.1', 'http.host': '127.0.0.1', 'http.port': 0, ...over } });
}

async function embedded(): Promise<Mode> {
  const dir = mkdtempSync(join(tmpdir(), 'feather-ctl-broker-'));
  const controller = new Controller({ config: config(dir, { 'mqtt.port': 0 }), logger: createLogger('controller') });
  const ctx = await controller.start();
  return {
    name: 'embedded', port: ctx.broker?.ports.mqtt ?? 0, ctx, admin: { user: 'admin', password: ctx.credentials.admin },
    reload: async () => undefined,
    close: async () => { await controller.stop(); rmSync(dir, { recursive: true, force: true }); },
  };
}

/** deploy/mosquitto/mosquitto.conf with this run's port and paths (and `user root`: the temp files are root's). */
function mosquittoConf(port: number, dir: string): string {
  return readFileSync(CONF, 'utf8')
    .replace(/^listener 1883$/m, `listener ${port} 127.0.0.1`)
    .replace(/^persistence_location .*$/m, `persistence_location ${dir}/data/`)
    .replace(/^password_file .*$/m, `password_file ${dir}/passwd`)
    .replace(/^acl_file .*$/m, `acl_file ${dir}/acl`)
    .replace(/^log_dest syslog$/m, 'log_dest stderr')
    .concat('\nuser root\n');
}

async function external(): Promise<Mode> {
  const dir = mkdtempSync(join(tmpdir(), 'feather-ctl-mosquitto-'));
  mkdirSync(join(dir, 'data'));
  const port = await freePort();
  const controller = new Controller({ config: config(join(dir, 'controller'), { 'broker.url': `mqtt://127.0.0.1:${port}` }), logger: createLogger('controller') });
  const ctx = await controller.start();
  const writeFiles = (): void => {
    writeFileSync(join(dir, 'passwd'), mosquittoPasswordFile(ctx.store), { mode: 0o600 });
    writeFileSync(join(dir, 'acl'), mosquittoAclFile(ctx.store, { topicPrefix: ctx.config.topicPrefix }), { mode: 0o600 });
  };
  writeFiles();
  writeFileSync(join(dir, 'mosquitto.conf'), mosquittoConf(port, dir));
  const child = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000); });
  await waitForPort(port);
  await ctx.mqtt.waitConnected(15_000);
  return {
    name: 'mosquitto', port, ctx, admin: { user: 'admin', password: ctx.credentials.admin },
    reload: async () => { writeFiles(); child.kill('SIGHUP'); await sleep(300); },
    close: async () => {
      await controller.stop();
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await gone;
      if (process.env['FEATHER_LOG_LEVEL'] === 'debug') process.stderr.write(log);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

for (const start of [embedded, external]) {
  t.test(`broker security (${start.name === 'embedded' ? 'embedded aedes' : 'external mosquitto'})`, async (t) => {
    const m = await start();
    const subs: Sub[] = [];
    t.teardown(async () => { await Promise.all(subs.map((s) => s.stop())); await m.close(); });
    const sub = (c: Creds, topics: string[]): Sub => { const s = Sub.start(m.port, c, topics); subs.push(s); return s; };
    const a = await m.ctx.credentials.issue('A');
    const b = await m.ctx.credentials.issue('B');
    await m.reload();
    const A: Creds = { user: 'A', password: a.token };
    const B: Creds = { user: 'B', password: b.token };
    const P = 'feather/v1/dev';

    // The admin, with the admin token, sees everything.
    const watch = sub(m.admin, ['feather/v1/#']);
    await watch.ready(m.port, m.admin, 'feather/v1/probe');

    await t.test('wrong credentials are refused', async (t) => {
      for (const c of [{ user: 'admin', password: 'wrong' }, { user: 'A', password: b.token }, { user: 'nobody', password: a.token }, { user: 'A', password: '' }]) {
        const r = await pub(m.port, c, `${P}/A/status`, 'x');
        t.not(r.code, 0, `${c.user} with a wrong token`);
        t.match(r.stderr, /not authori[sz]ed|bad user name or password|Connection Refused/i);
      }
    });

    await t.test('a device publishes its own topics; admin receives them', async (t) => {
      for (const leaf of ['status', 'inventory', 'reported', 'telemetry', 'events', 'reply/r1']) {
        t.equal((await pub(m.port, A, `${P}/A/${leaf}`, `own-${leaf}`)).code, 0, leaf);
        await watch.waitFor(`${P}/A/${leaf} own-${leaf}`);
      }
    });

    await t.test('a device cannot publish to another device or to commands', async (t) => {
      for (const topic of [`${P}/B/status`, `${P}/B/reply/r1`, `${P}/A/desired`, `${P}/A/cmd/ping`, `${P}/B/cmd/container.run`, 'feather/v1/fleet/cmd/ping']) {
        await pub(m.port, A, topic, 'forged'); // embedded: connection closed; mosquitto: dropped silently
      }
      t.equal((await pub(m.port, A, `${P}/A/events`, 'after-forgery')).code, 0);
      await watch.waitFor(`${P}/A/events after-forgery`);
      await sleep(200);
      t.same(watch.lines.filter((l) => l.endsWith(' forged')), [], 'none of the forged messages reached anyone');
    });

    await t.test('a device reads its own cmd/#, desired and fleet/cmd/#, and nothing of another device', async (t) => {
      const mine = sub(A, [`${P}/A/cmd/#`, `${P}/A/desired`, 'feather/v1/fleet/cmd/#']);
      const theirs = sub(A, [`${P}/B/cmd/#`, `${P}/B/desired`, `${P}/+/status`, `${P}/A/desired`]);
      await mine.ready(m.port, m.admin, `${P}/A/desired`);
      await theirs.ready(m.port, m.admin, `${P}/A/desired`);
      for (const [topic, body] of [[`${P}/B/cmd/ping`, 'for-B'], [`${P}/B/desired`, 'desired-B'], [`${P}/B/status`, 'status-B'],
        [`${P}/A/cmd/ping`, 'for-A'], ['feather/v1/fleet/cmd/ping', 'for-all']] as const) {
        t.equal((await pub(m.port, m.admin, topic, body)).code, 0);
      }
      await mine.waitFor(`${P}/A/cmd/ping for-A`);
      await mine.waitFor('feather/v1/fleet/cmd/ping for-all');
      await pub(m.port, m.admin, `${P}/A/desired`, 'last');
      await theirs.waitFor(`${P}/A/desired last`);
      t.same(theirs.lines.filter((l) => /for-B|desired-B|status-B/.test(l)), [], 'A never receives B\'s commands, desired state or status');
      // B, with its own token, does receive its command (the test is not vacuous).
      const bSub = sub(B, [`${P}/B/cmd/#`]);
      await bSub.ready(m.port, m.admin, `${P}/B/cmd/probe`);
    });

    if (m.name === 'embedded') {
      await t.test('embedded: a device cannot use another client\'s id', async (t) => {
        const r = await pub(m.port, { ...A, clientId: 'feather-agent-B' }, `${P}/A/status`, 'x');
        t.not(r.code, 0);
        t.match(r.stderr, /identifier rejected/i);
        t.equal((await pub(m.port, { ...A, clientId: 'A/tool-1' }, `${P}/A/status`, 'with-id')).code, 0);
      });
    }

    await t.test('revoking a device refuses it (and closes its connections on the embedded broker)', async (t) => {
      const live = sub(A, [`${P}/A/cmd/#`]);
      await live.ready(m.port, m.admin, `${P}/A/cmd/probe2`);
      m.ctx.credentials.revoke('A');
      await m.reload();
      const r = await pub(m.port, A, `${P}/A/status`, 'revoked');
      t.not(r.code, 0, 'a revoked token no longer connects');
      if (m.name === 'embedded') {
        const code = await Promise.race([live.exited, sleep(5000).then(() => 'still running')]);
        t.not(code, 'still running', 'the live subscriber was disconnected');
      }
    });
  });
}
