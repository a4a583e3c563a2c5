// MqttConnection on its own, against real sockets: capped backoff while nothing answers, the
// bounded outbox while offline, and a stop() that does not hang without a broker.
import t from 'tap';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { MqttConnection, type MqttConnectionOptions } from '../../agent/control/mqtt.js';
import { configureLogging, createLogger } from '../../shared/logging.js';
import { freePort, startAedes } from '../helpers/brokers.js';

configureLogging({ level: 'silent' });

function connection(url: string, extra: Partial<MqttConnectionOptions> = {}): MqttConnection {
  return new MqttConnection({
    settings: { url, protocolVersion: 5, clientId: `conn-test-${Math.random().toString(36).slice(2)}` },
    logger: createLogger('conn'),
    subscriptions: [],
    will: () => ({ topic: 'conn-test/status', payload: '{"online":false}' }),
    onMessage: () => undefined,
    onConnect: async () => undefined,
    ...extra,
  });
}

t.test('nothing answering: retries back off and stay capped', async (t) => {
  // A listener that hangs up on every connection, so each attempt fails at once.
  const attempts: number[] = [];
  const server = net.createServer((s) => { attempts.push(performance.now()); s.destroy(); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;
  const conn = connection(`mqtt://127.0.0.1:${port}`, { reconnect: { minMs: 100, maxMs: 400 } });
  conn.start();
  await sleep(3000);
  await conn.stop();
  const gaps = attempts.slice(1).map((a, i) => a - (attempts[i] ?? 0));
  t.comment(`attempts: ${attempts.length}, gaps ms: ${gaps.map((g) => g.toFixed(0)).join(' ')}`);
  t.ok(attempts.length >= 6 && attempts.length <= 14, `${attempts.length} attempts in 3 s (a fixed 100 ms period would make ~30)`);
  t.ok(gaps.every((g) => g >= 75), 'never faster than minMs (less timer slack)');
  t.ok(gaps.every((g) => g <= 400 * 1.2 + 150), 'never slower than the cap');
  t.ok(Math.max(...gaps.slice(-3)) >= 300, 'reached the cap');
});

t.test('offline: queued messages wait (the newest 1,000), dropped ones do not; all sent on connect', async (t) => {
  const port = await freePort();
  const conn = connection(`mqtt://127.0.0.1:${port}`, { reconnect: { minMs: 100, maxMs: 200 }, outboxLimit: 1000 });
  conn.start();
  t.teardown(() => conn.stop());
  for (let i = 0; i < 1200; i++) await conn.publish('conn-test/q', String(i), { qos: 1, whenOffline: 'queue' });
  await conn.publish('conn-test/q', 'dropped', { qos: 1, whenOffline: 'drop' });

  const broker = await startAedes({ port });
  t.teardown(() => broker.close());
  const sub = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
  t.teardown(() => sub.endAsync());
  const got: string[] = [];
  sub.on('message', (_topic, payload) => got.push(payload.toString()));
  await sub.subscribeAsync('conn-test/q', { qos: 1 });
  const deadline = Date.now() + 10_000;
  while (got.length < 1000 && Date.now() < deadline) await sleep(20);
  await sleep(200);
  t.equal(got.length, 1000);
  t.equal(got[0], '200', 'the oldest 200 were dropped');
  t.equal(got[999], '1199');
  t.notOk(got.includes('dropped'));
});

t.test('stop() without ever reaching a broker returns promptly', async (t) => {
  const conn = connection(`mqtt://127.0.0.1:${await freePort()}`);
  conn.start();
  await sleep(200);
  const t0 = performance.now();
  await conn.stop({ topic: 'conn-test/status', payload: '{"online":false}' });
  t.ok(performance.now() - t0 < 3000, `stopped in ${(performance.now() - t0).toFixed(0)} ms`);
  t.equal(conn.connected, false);
});
