// controller/config.ts: defaults, then a file, then FEATHER_CONTROLLER_* variables, then flags.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { isExternalBroker, loadControllerConfig } from '../../controller/config.js';

t.test('defaults are the contract: MQTT 1883, HTTP 8080, embedded broker', async (t) => {
  const c = loadControllerConfig({ env: {} });
  t.equal(c.dataDir, '/var/lib/feather-controller');
  t.equal(c.mqtt.port, 1883);
  t.equal(c.mqtt.tls.port, 8883);
  t.equal(c.mqtt.ws.port, 0);
  t.equal(c.http.port, 8080);
  t.equal(c.topicPrefix, 'feather/v1');
  t.equal(c.broker.url, '');
  t.notOk(isExternalBroker(c));
  t.equal(c.offlineGraceS, 60);
});

t.test('file < environment < flags', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'feather-ctl-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ dataDir: '/from/file', mqtt: { port: 1000 }, http: { port: 1001 }, offlineGraceS: 5 }));
  const env = { FEATHER_CONTROLLER_CONFIG: file, FEATHER_CONTROLLER_MQTT_PORT: '2000', FEATHER_CONTROLLER_BROKER_URL: 'mqtt://b:1883' };
  const c = loadControllerConfig({ env, overrides: { 'http.port': 3001, dataDir: undefined } });
  t.equal(c.dataDir, '/from/file');
  t.equal(c.mqtt.port, 2000);
  t.equal(c.http.port, 3001);
  t.equal(c.offlineGraceS, 5);
  t.ok(isExternalBroker(c));
});

t.test('bad values are refused with BAD_REQUEST naming the key', async (t) => {
  t.throws(() => loadControllerConfig({ env: {}, overrides: { 'mqtt.port': 70000 } }), { code: 'BAD_REQUEST' });
  t.throws(() => loadControllerConfig({ env: {}, file: '/nonexistent.json' }), { code: 'BAD_REQUEST', message: /does not exist/ });
  t.throws(() => loadControllerConfig({ env: {}, overrides: { 'broker.url': 'http://x' } }), { code: 'BAD_REQUEST', message: /broker.url/ });
  t.throws(() => loadControllerConfig({ env: {}, overrides: { 'mqtt.tls.cert': '/c.pem' } }), { code: 'BAD_REQUEST', message: /go together/ });
  t.throws(() => loadControllerConfig({ env: {}, overrides: { nope: 1 } }), { code: 'BAD_REQUEST' });
});
