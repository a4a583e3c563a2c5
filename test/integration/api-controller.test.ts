// The HTTP API of a real controller (the Controller class with the API extension, its embedded
// broker and HTTP listener on free loopback ports, a temp data dir), driven over real HTTP and
// with the real mosquitto_pub/mosquitto_sub: auth, a device token that works on the broker and
// stops working after rm (its retained topics cleared), service discovery listing a registered
// agent, the blob store (Range, a wrong digest refused and nothing left), a deployment file
// applied and described.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createApiExtension } from '../../controller/api/index.js';
import type { DeploymentDetail, DeploymentSummary, DeviceSummary } from '../../controller/api/views.js';
import { loadControllerConfig } from '../../controller/config.js';
import { Controller } from '../../controller/core/controller.js';
import { configureLogging, createLogger } from '../../shared/logging.js';
import { until } from '../helpers/daemon-fixture.js';

configureLogging({ level: process.env['FEATHER_LOG_LEVEL'] === 'debug' ? 'debug' : 'silent' });

interface Proc { code: number | null; stdout: string; stderr: string }

function exec(cmd: string, args: string[], timeoutMs = 10_000): Promise<Proc> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

t.test('the API of a running controller', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'feather-api-int-'));
  const config = loadControllerConfig({ env: {}, overrides: { dataDir: dir, 'mqtt.host': '127.0.0.1', 'mqtt.port': 0, 'http.host': '127.0.0.1', 'http.port': 0 } });
  const controller = new Controller({ config, logger: createLogger('controller'), extensions: [createApiExtension] });
  t.teardown(async () => { await controller.stop(); rmSync(dir, { recursive: true, force: true }); });
  const ctx = await controller.start();
  const base = `http://127.0.0.1:${ctx.http.port}`;
  const mqttPort = String(ctx.broker?.ports.mqtt ?? 0);
  const admin = ctx.credentials.admin;
  const api = async <T>(path: string, init: RequestInit = {}): Promise<{ status: number; body: T }> => {
    const headers = new Headers(init.headers);
    if (!headers.has('authorization')) headers.set('authorization', `Bearer ${admin}`);
    const r = await fetch(base + path, { ...init, headers });
    const text = await r.text();
    return { status: r.status, body: (text === '' ? undefined : JSON.parse(text)) as T };
  };
  const pub = (user: string, password: string, topic: string, message: string, retain = false): Promise<Proc> =>
    exec('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, '-u', user, '-P', password, '-q', '1', '-t', topic, '-m', message, ...(retain ? ['-r'] : [])]);

  await t.test('auth: the API refuses requests without the admin token; /metrics and /healthz stay open', async (t) => {
    const r = await fetch(`${base}/api/v1/devices`);
    t.equal(r.status, 401);
    t.match(await r.json(), { error: { code: 'UNAUTHORIZED' } });
    t.equal((await api('/api/v1/devices', { headers: { authorization: 'Bearer wrong' } })).status, 401);
    t.equal((await fetch(`${base}/sd/prometheus`)).status, 401);
    t.equal((await fetch(`${base}/healthz`)).status, 200);
    t.match(await (await fetch(`${base}/metrics`)).text(), /feather_fleet_devices/);
    t.equal((await api('/api/v1/devices')).status, 200);
  });

  await t.test('device add: the token works on the broker; SD lists the agent; rm revokes it and clears its retained state', async (t) => {
    const add = await api<{ id: string; token: string }>('/api/v1/devices', { method: 'POST', body: JSON.stringify({ id: 'dev-a' }) });
    t.equal(add.status, 201);
    const { token } = add.body;
    const status = JSON.stringify({ online: true, ts: Date.now(), agentVersion: 'test' });
    t.equal((await pub('dev-a', token, 'feather/v1/dev/dev-a/status', status, true)).code, 0, 'mosquitto_pub with the new token');
    const inventory = {
      id: 'dev-a', arch: 'x86_64', cpu: { model: 'test', cores: 2, flags: [] }, memoryBytes: 2 ** 30, disk: { freeBytes: 2 ** 30 }, kernel: '6', cgroup: 'v2',
      accelerators: [], labels: { 'feather/metrics-address': '127.0.0.1:19464', zone: 'z1' }, runtimes: ['shim'],
    };
    t.equal((await pub('dev-a', token, 'feather/v1/dev/dev-a/inventory', JSON.stringify(inventory), true)).code, 0);
    const bad = await pub('dev-a', 'not-the-token', 'feather/v1/dev/dev-a/status', status);
    t.not(bad.code, 0, 'a wrong token is refused');
    await until('dev-a online with its inventory', async () => {
      const d = (await api<{ items: DeviceSummary[] }>('/api/v1/devices')).body.items.find((x) => x.id === 'dev-a');
      return d?.online === true && d.arch === 'x86_64' && d;
    });
    const sd = (await api<Array<{ targets: string[]; labels: Record<string, string> }>>('/sd/prometheus')).body;
    t.same(sd.map((g) => g.targets), [['127.0.0.1:19464']], 'the registered agent is a target');
    t.match(sd[0]?.labels, { device: 'dev-a', __meta_feather_online: 'true', __meta_feather_label_zone: 'z1', __meta_feather_agent_version: 'test' });

    const rm = await api<{ revoked: number }>('/api/v1/devices/dev-a', { method: 'DELETE' });
    t.match(rm, { status: 200, body: { revoked: 1, removed: true, retainedCleared: true } });
    const after = await pub('dev-a', token, 'feather/v1/dev/dev-a/status', status);
    t.not(after.code, 0, 'the revoked token is refused');
    t.match(after.stderr, /not authori[sz]ed|Connection Refused/i);
    t.same((await api<{ items: DeviceSummary[] }>('/api/v1/devices')).body.items, []);
    const retained = await exec('mosquitto_sub', ['-h', '127.0.0.1', '-p', mqttPort, '-u', 'admin', '-P', admin, '-t', 'feather/v1/dev/dev-a/+', '-C', '1', '-W', '1', '-v']);
    t.equal(retained.stdout, '', 'nothing retained for the removed device');
    t.same((await api('/sd/prometheus')).body, []);
  });

  await t.test('blobs: upload verified against the digest, Range downloads, a wrong digest leaves nothing', async (t) => {
    const data = randomBytes(256 * 1024 + 17);
    const digest = createHash('sha256').update(data).digest('hex');
    const wrong = createHash('sha256').update('other').digest('hex');
    const refused = await api<{ error: { code: string } }>(`/blobs/sha256/${wrong}`, { method: 'PUT', body: data });
    t.match(refused, { status: 400, body: { error: { code: 'CHECKSUM_MISMATCH' } } });
    t.same(readdirSync(join(dir, 'blobs', 'tmp')), [], 'no temp file');
    t.same(readdirSync(join(dir, 'blobs', 'sha256')), [], 'nothing stored');
    t.equal((await fetch(`${base}/blobs/sha256/${digest}`, { method: 'PUT', body: data })).status, 401, 'uploads need the token');

    const up = await api<{ url: string; size: number; created: boolean }>(`/blobs/sha256/${digest}?name=data.bin`, { method: 'PUT', body: data });
    t.match(up, { status: 201, body: { size: data.length, created: true, url: `${base}/blobs/sha256/${digest}` } });
    const part = await fetch(up.body.url, { headers: { range: 'bytes=1000-4999' } });
    t.equal(part.status, 206);
    t.equal(part.headers.get('content-range'), `bytes 1000-4999/${data.length}`);
    t.same(Buffer.from(await part.arrayBuffer()), data.subarray(1000, 5000), 'the 206 bytes match');
    const whole = Buffer.from(await (await fetch(up.body.url)).arrayBuffer());
    t.equal(createHash('sha256').update(whole).digest('hex'), digest, 'a plain GET without a token (agents pull like this)');
    const past = await fetch(up.body.url, { headers: { range: `bytes=${data.length}-` } });
    t.equal(past.status, 416);
    await past.arrayBuffer();
    const listed = (await api<{ items: Array<{ digest: string; names: string[] }> }>('/api/v1/blobs')).body.items;
    t.same(listed.map((b) => [b.digest, b.names]), [[digest, ['data.bin']]]);
  });

  await t.test('apply a deployment file (YAML): listed, described, deleted', async (t) => {
    const sha = (c: string): string => c.repeat(64);
    const yaml = [
      'name: det',
      'model:',
      '  name: resnet',
      `  variants: [{ accelerator: cpu, precision: fp32, url: "${base}/blobs/sha256/${sha('a')}", sha256: "${sha('a')}" }]`,
      'runtime:',
      `  variants: [{ arch: x86_64, image: rt, url: "${base}/blobs/sha256/${sha('b')}", sha256: "${sha('b')}" }]`,
      'replicas: 2',
      'resources: { memory: 64Mi, cpus: 0.25 }',
      'p95LatencyMs: 30',
    ].join('\n');
    const applied = await api<{ items: Array<{ name: string; action: string; revision: number }> }>('/api/v1/deployments', { method: 'POST', body: yaml, headers: { 'content-type': 'application/yaml' } });
    t.match(applied, { status: 201, body: { items: [{ name: 'det', action: 'created', revision: 1 }] } });
    t.match((await api<{ items: DeploymentSummary[] }>('/api/v1/deployments')).body.items, [{ name: 'det', revision: 1, desired: 2, objectiveMs: 30, model: 'resnet' }]);
    const d = (await api<DeploymentDetail>('/api/v1/deployments/det')).body;
    t.equal(d.spec.replicas, 2);
    t.equal(d.replicas.length, 2, 'both replicas shown (unschedulable: no device)');
    t.match(d.replicas[0], { state: 'unschedulable' });
    t.match((await api('/api/v1/deployments/det', { method: 'DELETE' })), { status: 200, body: { deleted: true } });
    t.equal((await api('/api/v1/deployments/det')).status, 404);
  });
});
