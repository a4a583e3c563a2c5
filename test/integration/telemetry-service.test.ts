// The telemetry extension wired as the agent wires it: config in, HTTP up, a container's socket
// opened before it starts and removed with it, samples handed to publish.
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { decodeTelemetry } from '../../shared/protocol/telemetry.js';
import { TelemetryService, type TelemetryServiceDeps } from '../../agent/telemetry/service.js';
import { configureLogging } from '../../shared/logging.js';
import { FakeContainers } from '../helpers/fake-host.js';

configureLogging({ level: 'error' });

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const a = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return typeof a === 'object' && a !== null ? a.port : 0;
}

function config(root: string, port: number): TelemetryServiceDeps['config'] {
  return {
    deviceId: 'edge-07', dataDir: root, runDir: join(root, 'run'), hostRoot: '/',
    metrics: { port, host: '127.0.0.1' }, telemetry: { intervalS: 0.1, encoding: 'protobuf' },
  };
}

t.test('start, a container with its socket, a published sample with its latency, stop', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'feather-tsvc-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const fake = new FakeContainers();
  fake.add('cam');
  const payloads: Buffer[] = [];
  const port = await freePort();
  const svc = new TelemetryService({
    config: config(root, port), registry: new Registry(), runtime: fake,
    publish: (_topic, payload) => { payloads.push(payload); }, topic: 'feather/v1/dev/edge-07/telemetry', mqttConnected: () => true,
  });
  await svc.start();
  t.teardown(() => svc.stop());

  const sock = svc.containerStarting('cam');
  t.equal(sock, join(root, 'run', 'containers', 'cam', 'statsd.sock'));
  await new Promise<void>((resolve, reject) => execFile('python3', ['-c',
    'import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.sendto(b"inference.latency:8|ms|#model:tiny",sys.argv[1])', sock],
  (e) => (e ? reject(e) : resolve())));

  const deadline = Date.now() + 10_000;
  let found = false;
  while (!found && Date.now() < deadline) {
    found = payloads.some((p) => decodeTelemetry(p).containers.some((c) => c.latency.some((l) => l.model === 'tiny' && l.count === 1)));
    if (!found) await sleep(50);
  }
  t.ok(found, 'a published sample carries the latency sent to the socket');
  t.same(await (await fetch(`http://127.0.0.1:${port}/healthz`)).json(), { status: 'ok', mqtt: { connected: true } });
  t.match(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), /feather_inference_requests_total\{container="cam",model="tiny"\} 1/);

  svc.containerRemoved('cam');
  t.notOk(existsSync(sock));
  t.same(svc.latency.snapshot('cam'), []);
  await svc.stop();
  await t.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
});

t.test('metrics.port 0 disables the HTTP endpoint', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'feather-tsvc-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const svc = new TelemetryService({
    config: config(root, 0), registry: new Registry(), runtime: new FakeContainers(),
    publish: () => undefined, topic: 't', mqttConnected: () => false,
  });
  t.equal(svc.http, undefined);
  await svc.start();
  await svc.stop();
});
