// The whole path with a real agent: a controller (the Controller class with the API extension,
// embedded broker, temp data dir) and a real `feather-agent daemon` that logs in with the token
// `featherctl device add` printed. featherctl pushes a busybox runtime and a model into the
// controller's blob store; a deployment naming those blob URLs is applied with --wait; the agent
// pulls both from the controller, runs the replica, and the deployment becomes Available.
// `featherctl logs` reads the container's output from the agent over MQTT; the Prometheus
// service discovery lists the agent, and a real Prometheus with one http_sd_configs entry scrapes
// it; delete removes the container, device rm disconnects the agent. Needs root and `npm run build`.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { createApiExtension } from '../../controller/api/index.js';
import { loadControllerConfig } from '../../controller/config.js';
import { Controller } from '../../controller/core/controller.js';
import { configureLogging, createLogger } from '../../shared/logging.js';
import { freePort, waitForPort } from '../helpers/brokers.js';
import { DaemonFixture, busyboxImageTarball, cannotRun, until } from '../helpers/daemon-fixture.js';

configureLogging({ level: process.env['FEATHER_LOG_LEVEL'] === 'debug' ? 'debug' : 'silent' });
const CTL = fileURLToPath(new URL('../../dist/controller/ctl.js', import.meta.url));
const PROMETHEUS = ['/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((p) => existsSync(p));
const skip = cannotRun() ?? (existsSync(CTL) ? undefined : `${CTL} is missing: npm run build`);

interface Run { code: number | null; stdout: string; stderr: string }

t.test('featherctl with a real agent pulling from the controller', { skip }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'featherctl-agent-'));
  const fx = await DaemonFixture.create();
  const config = loadControllerConfig({ env: {}, overrides: { dataDir: join(root, 'controller'), 'mqtt.host': '127.0.0.1', 'mqtt.port': 0, 'http.host': '127.0.0.1', 'http.port': 0 } });
  const controller = new Controller({ config, logger: createLogger('controller'), extensions: [createApiExtension] });
  let prometheus: ChildProcess | undefined;
  t.teardown(async () => {
    const p = prometheus;
    if (p !== undefined && p.exitCode === null) {
      const gone = new Promise((resolve) => p.once('exit', resolve));
      p.kill('SIGTERM');
      await gone;
    }
    await fx.cleanup();
    await controller.stop();
    rmSync(root, { recursive: true, force: true });
  });
  const ctx = await controller.start();
  const server = `http://127.0.0.1:${ctx.http.port}`;
  const env: NodeJS.ProcessEnv = { ...process.env, FEATHERCTL_SERVER: server, FEATHERCTL_TOKEN: ctx.credentials.admin, FEATHERCTL_CONFIG: join(root, 'none.json') };
  const ctl = (args: string[]): Promise<Run> => new Promise((resolve) => {
    const child = spawn(process.execPath, [CTL, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
  const ok = async (args: string[]): Promise<Run> => {
    const r = await ctl(args);
    if (r.code !== 0) throw new Error(`featherctl ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${fx.tails()}`);
    return r;
  };

  // The device's token from featherctl; the agent logs in with it.
  const id = `edge-${fx.tag}`;
  const { token } = JSON.parse((await ok(['device', 'add', id, '-o', 'json'])).stdout) as { token: string };
  const metricsPort = await freePort();
  const agent = await fx.startDaemon({
    broker: { url: `mqtt://127.0.0.1:${ctx.broker?.ports.mqtt ?? 0}` }, deviceId: id, metricsPort,
    env: { FEATHER_BROKER_USERNAME: id, FEATHER_BROKER_PASSWORD: token, FEATHER_TELEMETRY_INTERVAL: '1', FEATHER_LABELS: JSON.stringify({ 'feather/metrics-address': `127.0.0.1:${metricsPort}` }) },
  });
  const device = await until('the agent online with its inventory', async () => {
    const list = JSON.parse((await ok(['get', 'devices', '-o', 'json'])).stdout) as Array<{ id: string; online: boolean; arch: string | null }>;
    const d = list.find((x) => x.id === id);
    return d?.online === true && d.arch !== null && ctx.store.getDevice(id)?.capacity !== undefined && d;
  }, { context: () => fx.tails(), ms: 20_000 });

  // A runtime image and a model in the controller's blob store.
  const image = join(root, 'busybox.tar.gz');
  await busyboxImageTarball(image, { 'data/tag': fx.tag });
  const pushedImage = JSON.parse((await ok(['push', image, '--name', 'busybox', '-o', 'json'])).stdout) as { url: string; sha256: string };
  const model = join(root, 'tiny.onnx');
  writeFileSync(model, `not really onnx ${fx.tag}\n`);
  const pushedModel = JSON.parse((await ok(['push', model, '-o', 'json'])).stdout) as { url: string; sha256: string };
  t.match(pushedImage.url, new RegExp(`^${server}/blobs/sha256/[0-9a-f]{64}$`));

  const name = `det-${fx.tag}`;
  const file = join(root, 'det.yaml');
  writeFileSync(file, [
    `name: ${name}`,
    'model:',
    '  name: tiny',
    `  variants: [{ accelerator: cpu, precision: fp32, url: "${pushedModel.url}", sha256: "${pushedModel.sha256}" }]`,
    'runtime:',
    `  variants: [{ arch: ${device.arch ?? 'x86_64'}, image: bb, url: "${pushedImage.url}", sha256: "${pushedImage.sha256}" }]`,
    // A shell as pid 1 ignores SIGTERM unless it traps it: stop must not wait for the kill timeout.
    '  args: [sh, -c, "trap \'exit 0\' TERM; echo hello-from-$FEATHER_DEPLOYMENT; ls $FEATHER_MODEL_PATH; sleep 3600 & wait"]',
    'replicas: 1',
    'resources: { memory: 32Mi, cpus: 0.2, pids: 20 }',
  ].join('\n'));

  await t.test('apply --wait: pulled from the controller, running, Available', async (t) => {
    const r = await ctl(['apply', '-f', file, '--wait', '--timeout', '40s']);
    t.equal(r.code, 0, `apply --wait succeeded\n${r.stderr}\n${fx.tails()}`);
    t.equal(r.stdout, `deployment/${name} created (revision 1)\n`);
    t.match(r.stderr, new RegExp(`\\[ +\\d+s\\] ${name}: revision 1 `), 'progress lines');
    t.match(r.stderr, new RegExp(`deployment/${name} revision 1 is available\\n$`));
    const list = JSON.parse((await ok(['get', 'deployments', '-o', 'json'])).stdout) as Array<{ name: string; phase: string; running: number }>;
    t.match(list, [{ name, phase: 'Available', running: 1 }]);
    const described = (await ok(['describe', 'deployment', name])).stdout;
    t.match(described, new RegExp(`^ {2}0 +${id} +running +1 +cpu +fp32 `, 'm'), 'the replica runs on the agent');
    const agentSide = (await fx.ps()).find((c) => c.name === `${name}-0`);
    t.equal(agentSide?.status, 'running');
    const images = await fx.cli(['images', '--json']);
    const pulled = (JSON.parse(images.stdout) as Array<{ name: string; source?: string }>).find((i) => i.name.startsWith('bb-'));
    t.equal(pulled?.source, pushedImage.url, 'the agent pulled the image from the controller');
    const dev = JSON.parse((await ok(['describe', 'device', id, '-o', 'json'])).stdout) as { containers: Array<{ name: string; deployment: string | null; phase: string | null }> };
    t.match(dev.containers, [{ name: `${name}-0`, deployment: name, phase: 'running' }]);
  });

  await t.test('a new revision with the same workloads (only its rollout settings changed) becomes available, nothing restarts', async (t) => {
    const pidBefore = (await fx.ps()).find((c) => c.name === `${name}-0`)?.pid;
    writeFileSync(file, readFileSync(file, 'utf8') + '\nrollout: { minReadyS: 1 }\n');
    const r = await ctl(['apply', '-f', file, '--wait', '--timeout', '30s']);
    t.equal(r.code, 0, `apply --wait succeeded\n${r.stderr}\n${fx.tails()}`);
    t.equal(r.stdout, `deployment/${name} configured (revision 2)\n`);
    t.match(r.stderr, new RegExp(`deployment/${name} revision 2 is available\\n$`), 'the rollout did not wait for a report that never comes');
    const described = (await ok(['describe', 'deployment', name])).stdout;
    t.match(described, new RegExp(`^ {2}0 +${id} +running +2 +cpu +fp32 `, 'm'), 'the replica counts at revision 2');
    t.equal((await fx.ps()).find((c) => c.name === `${name}-0`)?.pid, pidBefore, 'the same container: nothing was sent to the agent');
  });

  await t.test('logs DEVICE CONTAINER: read from the agent over MQTT', async (t) => {
    const logs = await until('the container wrote its line', async () => {
      const r = await ok(['logs', id, `${name}-0`, '--tail', '10']);
      return r.stdout.includes(`hello-from-${name}`) && r;
    }, { context: () => fx.tails() });
    t.match(logs.stdout, new RegExp(`^hello-from-${name}$`, 'm'));
    t.match(logs.stdout, /^\/models\/tiny\/\S+$/m, 'the model is mounted where FEATHER_MODEL_PATH says');
    const missing = await ctl(['logs', id, 'no-such-container']);
    t.equal(missing.code, 1);
    t.match(missing.stderr, new RegExp(`^featherctl: ${id}: .*no-such-container`));
  });

  await t.test('service discovery lists the agent; Prometheus scrapes it through one http_sd_configs entry', async (t) => {
    const sd = await (await fetch(`${server}/sd/prometheus`, { headers: { authorization: `Bearer ${ctx.credentials.admin}` } })).json() as Array<{ targets: string[]; labels: Record<string, string> }>;
    t.match(sd, [{ targets: [`127.0.0.1:${metricsPort}`], labels: { device: id, __meta_feather_online: 'true' } }]);
    const metrics = await (await fetch(`http://${sd[0]?.targets[0] ?? ''}/metrics`)).text();
    t.match(metrics, /^feather_mqtt_connected 1$/m, 'the target is the agent\'s /metrics');
    if (PROMETHEUS === undefined) {
      t.comment('prometheus is not installed: the scrape through SD is not checked');
      return;
    }
    const dir = join(root, 'prometheus');
    mkdirSync(dir);
    writeFileSync(join(dir, 'token'), `${ctx.credentials.admin}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'prometheus.yml'), [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      'scrape_configs:',
      '  - job_name: feather-agents',
      '    http_sd_configs:',
      `      - url: ${server}/sd/prometheus`,
      '        refresh_interval: 1s',
      `        authorization: { credentials_file: ${join(dir, 'token')} }`,
      '    relabel_configs:',
      '      - { source_labels: [__meta_feather_online], regex: "true", action: keep }',
    ].join('\n'));
    const webPort = await freePort();
    let plog = '';
    prometheus = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${webPort}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    prometheus.stderr?.on('data', (d: Buffer) => { plog = (plog + d.toString()).slice(-4000); });
    await waitForPort(webPort, 20_000);
    const target = await until('Prometheus scraping the agent', async () => {
      const r = await fetch(`http://127.0.0.1:${webPort}/api/v1/targets`).catch(() => undefined);
      if (r === undefined || !r.ok) return undefined;
      const body = await r.json() as { data: { activeTargets: Array<{ labels: Record<string, string>; health: string; scrapeUrl: string }> } };
      return body.data.activeTargets.find((x) => x.health === 'up');
    }, { ms: 30_000, context: () => plog });
    t.equal(target.scrapeUrl, `http://127.0.0.1:${metricsPort}/metrics`);
    t.equal(target.labels['device'], id, 'the device label is kept on the series');
  });

  await t.test('delete: the container goes; device rm: the agent is cut off', async (t) => {
    t.equal((await ok(['delete', 'deployment', name])).stdout, `deployment/${name} deleted\n`);
    await until('the replica removed by the agent', async () => !(await fx.ps()).some((c) => c.name === `${name}-0`), { context: () => fx.tails(), ms: 30_000 });
    const mark = agent.mark();
    t.equal((await ok(['device', 'rm', id])).stdout, `device/${id} removed (1 token revoked)\n`);
    await agent.waitForLog('mqtt.connection_lost', { after: mark, ms: 10_000 });
    const refused = await agent.waitForLog('mqtt.error', { after: mark, ms: 15_000 });
    t.match(String(refused['error']), /not authori[sz]ed|bad user ?name or password/i, 'its reconnects are refused');
    await until('the device gone from the controller', async () => ctx.store.getDevice(id) === undefined && !ctx.registry.devices().some((d) => d.id === id && d.online));
    t.same(JSON.parse((await ok(['get', 'devices', '-o', 'json'])).stdout), [], 'no device left');
  });

  await t.test('cleanup', async (t) => {
    t.same(await fx.cleanup(), { cgroups: [], mounts: [], containers: [] }, 'nothing of ours is left on the host');
  });
});
