// The feather-controller binary (dist/controller/main.js): flags and a config file, the admin
// token file (0600), JSON logs, /metrics through promtool, mqtts and MQTT over WebSocket
// listeners with the admin token, and a clean stop on SIGTERM. Needs `npm run build`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import t from 'tap';
import { freePort, waitForPort } from '../helpers/brokers.js';

const BIN = fileURLToPath(new URL('../../dist/controller/main.js', import.meta.url));
const skip = existsSync(BIN) ? false : `${BIN} is missing: npm run build`;

function run(cmd: string, args: string[], input?: string): { code: number | null; out: string } {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

t.test('feather-controller: start, serve, stop on SIGTERM', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'feather-ctl-bin-'));
  const data = join(dir, 'data');
  const [mqttPort, httpPort, tlsPort, wsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const gen = run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
  t.equal(gen.code, 0, `openssl made a self-signed certificate${gen.code === 0 ? '' : `: ${gen.out}`}`);
  writeFileSync(join(dir, 'controller.json'), JSON.stringify({
    mqtt: { host: '127.0.0.1', tls: { port: tlsPort, cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') }, ws: { port: wsPort } },
    http: { host: '127.0.0.1' },
  }));
  const child: ChildProcess = spawn(process.execPath, [BIN, '--config', join(dir, 'controller.json'), '--data-dir', data,
    '--mqtt-port', String(mqttPort), '--http-port', String(httpPort)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  t.teardown(async () => {
    if (child.exitCode === null) { child.kill('SIGKILL'); await exited; }
    rmSync(dir, { recursive: true, force: true });
  });
  await waitForPort(httpPort, 20_000);

  const tokenFile = join(data, 'admin-token');
  t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'admin-token is private');
  const token = readFileSync(tokenFile, 'utf8').trim();

  const pub = run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mqttPort), '-u', 'admin', '-P', token, '-q', '1', '-r',
    '-t', 'feather/v1/dev/edge-9/status', '-m', JSON.stringify({ online: true, ts: Date.now() })]);
  t.equal(pub.code, 0, `mosquitto_pub -u admin -P <admin token> works${pub.code === 0 ? '' : `: ${pub.out}`}`);
  const tls = run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(tlsPort), '--cafile', join(dir, 'cert.pem'), '-u', 'admin', '-P', token,
    '-q', '1', '-t', 'feather/v1/dev/edge-9/events', '-m', '{"type":"test.tls","ts":1}']);
  t.equal(tls.code, 0, `mqtts with the admin token works${tls.code === 0 ? '' : `: ${tls.out}`}`);
  const badTls = run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(tlsPort), '--cafile', join(dir, 'cert.pem'), '-u', 'admin', '-P', 'nope', '-t', 'x', '-m', 'y']);
  t.not(badTls.code, 0, 'mqtts refuses a wrong token too');

  const ws = await mqtt.connectAsync(`ws://127.0.0.1:${wsPort}`, { username: 'admin', password: token, protocolVersion: 4, reconnectPeriod: 0 });
  const got = new Promise<string>((resolve) => ws.once('message', (_topic, payload) => resolve(payload.toString())));
  await ws.subscribeAsync('feather/v1/dev/edge-9/status', { qos: 1 });
  t.match(await got, /"online":true/, 'MQTT over WebSocket with the admin token; retained status delivered');
  await ws.endAsync();
  await t.rejects(mqtt.connectAsync(`ws://127.0.0.1:${wsPort}`, { username: 'admin', password: 'nope', protocolVersion: 4, reconnectPeriod: 0 }), 'a wrong token over WebSocket is refused');

  let metrics = '';
  for (let i = 0; i < 50 && !/feather_fleet_devices\{state="online"\} 1/.test(metrics); i++) {
    metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    await sleep(50);
  }
  t.match(metrics, /feather_fleet_devices\{state="online"\} 1/, 'the registry counted the device');
  t.match(metrics, /feather_scheduler_placements_total 0/);
  t.match(metrics, /feather_scheduler_duration_seconds_count/);
  const check = run('promtool', ['check', 'metrics'], metrics);
  t.equal(check.code, 0, `promtool check metrics passes${check.code === 0 ? '' : `: ${check.out}`}`);
  const health = await (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).json() as { status: string; mqtt: { connected: boolean } };
  t.same([health.status, health.mqtt.connected], ['ok', true]);
  t.equal((await fetch(`http://127.0.0.1:${httpPort}/nope`)).status, 404);

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: a clean exit');
  const events = stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { event: string }).event);
  for (const e of ['store.migrated', 'admin_token.created', 'broker.listening', 'controller.started', 'controller.signal', 'controller.stopped']) {
    t.ok(events.includes(e), `logged ${e} as JSON`);
  }
  t.notMatch(stderr, new RegExp(token), 'the admin token is never logged');

  const usage = run(process.execPath, [BIN, '--bogus']);
  t.equal(usage.code, 2);
  t.match(usage.out, /usage: feather-controller/);
});
