// What TCP_NODELAY buys: QoS 1 request/reply round trips (ping -> reply) through aedes and
// mosquitto, with TCP_NODELAY on every socket (agent, broker, requester) and with Nagle left on
// everywhere. Prints the figures; asserts only that the NODELAY path stays well under the
// 40 ms delayed-ACK stall that Nagle causes.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startControlPlane } from '../../agent/control/index.js';
import { ImageStore } from '../../agent/images/store.js';
import { DataPaths } from '../../agent/paths.js';
import { detectCgroups } from '../../agent/runtime/cgroups/detect.js';
import { ShimRuntime } from '../../agent/runtime/runtime.js';
import { loadAgentConfig } from '../../shared/config/agent.js';
import { configureLogging, createLogger } from '../../shared/logging.js';
import { Topics } from '../../shared/protocol/topics.js';
import { BROKERS, until } from '../helpers/brokers.js';

const ROUNDS = Number(process.env['FEATHER_LATENCY_ROUNDS'] ?? 300);
// Each round costs ~90 ms with Nagle on: fewer of them say as much.
const NAGLE_ROUNDS = Math.max(20, Math.round(ROUNDS / 6));

configureLogging({ level: 'silent' });
const root = mkdtempSync(join(tmpdir(), 'feather-latency-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

const table: string[] = ['| broker | TCP_NODELAY | rounds | p50 ms | p95 ms | max ms |', '| --- | --- | --- | --- | --- | --- |'];
t.teardown(() => { t.comment(`QoS 1 ping round trips:\n${table.join('\n')}`); });

for (const { kind, start } of BROKERS) {
  for (const noDelay of [true, false]) {
    t.test(`${kind}, TCP_NODELAY ${noDelay ? 'on' : 'off'}`, async (t) => {
      const broker = await start({ noDelay });
      t.teardown(() => broker.close());
      const deviceId = `lat-${kind}-${noDelay ? 'on' : 'off'}`;
      const dataDir = join(root, deviceId);
      const config = loadAgentConfig({ env: {}, overrides: { deviceId, dataDir, 'broker.url': broker.url } });
      const paths = new DataPaths(dataDir);
      const images = new ImageStore(paths);
      const runtime = new ShimRuntime({ paths, images, cgroups: detectCgroups(config.cgroupRoot), defaults: config.defaults, logMaxBytes: config.logMaxBytes });
      const plane = await startControlPlane({
        config, runtime, images, inventory: () => ({}), logger: createLogger('agent'),
        options: { tcpNoDelay: noDelay, replyCacheCapacity: 10 * ROUNDS },
      });
      t.teardown(() => plane.stop());

      const topics = new Topics(config.topicPrefix, deviceId);
      const client = await mqtt.connectAsync(broker.url, { protocolVersion: broker.maxProtocol, clientId: `${deviceId}-requester` });
      t.teardown(() => client.endAsync());
      if (noDelay && client.stream instanceof Socket) client.stream.setNoDelay(true);
      const waiting = new Map<string, () => void>();
      client.on('message', (topic) => {
        const id = topic.slice(topic.lastIndexOf('/') + 1);
        waiting.get(id)?.();
      });
      await client.subscribeAsync(topics.replyFilter, { qos: 1 });
      await until('agent connected', () => plane.connected);

      const ask = (id: string): Promise<number> => new Promise((resolve) => {
        const t0 = performance.now();
        waiting.set(id, () => { waiting.delete(id); resolve(performance.now() - t0); });
        client.publish(topics.cmd('ping'), JSON.stringify({ requestId: id }), { qos: 1 });
      });
      for (let i = 0; i < 10; i++) await ask(`warm-${i}`);
      const samples: number[] = [];
      const rounds = noDelay ? ROUNDS : NAGLE_ROUNDS;
      for (let i = 0; i < rounds; i++) samples.push(await ask(`r-${i}`));
      samples.sort((a, b) => a - b);
      const [p50, p95, max] = [quantile(samples, 0.5), quantile(samples, 0.95), samples[samples.length - 1] ?? NaN];
      table.push(`| ${kind} | ${noDelay ? 'on' : 'off'} | ${rounds} | ${p50.toFixed(3)} | ${p95.toFixed(3)} | ${max.toFixed(3)} |`);
      t.comment(`${kind} TCP_NODELAY ${noDelay ? 'on' : 'off'}: p50 ${p50.toFixed(3)} ms, p95 ${p95.toFixed(3)} ms, max ${max.toFixed(3)} ms`);
      if (noDelay) t.ok(p50 < 10, `p50 ${p50.toFixed(3)} ms is far below the 40 ms delayed-ACK stall`);
      else t.pass('measured');
    });
  }
}
