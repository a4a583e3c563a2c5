// featherctl end to end: the compiled `node dist/controller/ctl.js` against the
// `feather-controller` bin (dist/controller/main.js) on free loopback ports with a temp data dir.
// The admin token is found in the data dir like on the controller's machine, then login saves a
// config file; device add/rm against the broker (mosquitto_pub), get/describe/apply/rollout/delete,
// push and a Range download, mosquitto-files from the API and from the database, and failures:
// one line on stderr, exit 1 or 2. Needs `npm run build`.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { freePort, waitForPort } from '../helpers/brokers.js';
import { until } from '../helpers/daemon-fixture.js';

const CTL = fileURLToPath(new URL('../../dist/controller/ctl.js', import.meta.url));
const CONTROLLER = fileURLToPath(new URL('../../dist/controller/main.js', import.meta.url));
const skip = existsSync(CTL) && existsSync(CONTROLLER) ? undefined : 'npm run build first (dist/controller/ctl.js)';

interface Run { code: number | null; stdout: string; stderr: string }

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.stdin.end(input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/** The environment of a person's shell, without anything featherctl or the controller would read. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('FEATHERCTL_') || k.startsWith('FEATHER_')) delete env[k];
  return { ...env, ...extra };
}

t.test('featherctl against feather-controller', { skip }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'featherctl-e2e-'));
  const dataDir = join(root, 'controller');
  const home = join(root, 'home');
  mkdirSync(home);
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  let controller: ChildProcess | undefined;
  let log = '';
  t.teardown(async () => {
    const c = controller;
    if (c !== undefined && c.exitCode === null) {
      const gone = new Promise((resolve) => c.once('exit', resolve));
      c.kill('SIGTERM');
      await gone;
    }
    if (process.env['FEATHER_LOG_LEVEL'] === 'debug') process.stderr.write(log);
    rmSync(root, { recursive: true, force: true });
  });
  controller = spawn(process.execPath, [CONTROLLER, '--data-dir', dataDir, '--mqtt-port', String(mqttPort), '--http-port', String(httpPort)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: cleanEnv({ FEATHER_CONTROLLER_MQTT_HOST: '127.0.0.1', FEATHER_CONTROLLER_HTTP_HOST: '127.0.0.1', FEATHER_LOG_LEVEL: 'info' }),
  });
  controller.stderr?.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-20_000); });
  await waitForPort(httpPort, 20_000);
  await until('the API mounted', () => log.includes('api.mounted'), { context: () => log });
  const server = `http://127.0.0.1:${httpPort}`;

  // On the controller's machine: the server's default port differs here, the token comes from the data dir.
  const local = cleanEnv({ HOME: home, XDG_CONFIG_HOME: join(home, '.config'), FEATHERCTL_SERVER: server, FEATHER_CONTROLLER_DATA_DIR: dataDir });
  // Elsewhere: only the config file written by login.
  const remote = cleanEnv({ HOME: home, XDG_CONFIG_HOME: join(home, '.config'), FEATHER_CONTROLLER_DATA_DIR: join(root, 'nowhere') });
  const ctl = (args: string[], env = remote, input?: string): Promise<Run> => exec(process.execPath, [CTL, ...args], env, input);
  const ok = async (args: string[], env = remote, input?: string): Promise<Run> => {
    const r = await ctl(args, env, input);
    if (r.code !== 0) throw new Error(`featherctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r;
  };
  const pub = (user: string, password: string, topic: string, message: string, retain = false): Promise<Run> =>
    exec('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mqttPort), '-u', user, '-P', password, '-q', '1', '-t', topic, '-m', message, ...(retain ? ['-r'] : [])], process.env);

  await t.test('login: the local admin token, then the config file', async (t) => {
    const before = await ctl(['get', 'devices'], remote);
    t.equal(before.code, 1, 'no server or token known elsewhere');
    t.match(before.stderr, /^featherctl: cannot reach the controller at http:\/\/127\.0\.0\.1:8080|^featherctl: the controller at/);
    t.equal((await ok(['get', 'devices'], local)).stderr, 'no devices\n', 'on the controller machine: found the admin token');
    const login = await ok(['login'], local);
    t.match(login.stdout, new RegExp(`^logged in to ${server} \\(feather-controller `));
    const file = join(home, '.config', 'feather', 'featherctl.json');
    t.same(JSON.parse(readFileSync(file, 'utf8')), { server, token: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim() });
    t.equal(statSync(file).mode & 0o777, 0o600);
    t.equal((await ok(['get', 'devices'], remote)).code, 0, 'now from the config file');
    const wrong = await ctl(['get', 'devices', '--token', 'wrong'], remote);
    t.same([wrong.code, wrong.stderr.split('\n').length], [1, 2], 'a refused token: exit 1, one line');
    t.match(wrong.stderr, /refused the token/);
  });

  let token = '';
  await t.test('device add -o json: the token works on the broker; get devices -o json; events', async (t) => {
    const add = await ok(['device', 'add', 'edge-01', '-o', 'json']);
    const issued = JSON.parse(add.stdout) as { id: string; token: string };
    t.equal(issued.id, 'edge-01');
    token = issued.token;
    t.equal((await pub('edge-01', token, 'feather/v1/dev/edge-01/status', JSON.stringify({ online: true, ts: Date.now(), agentVersion: 'sim' }), true)).code, 0);
    t.equal((await pub('edge-01', token, 'feather/v1/dev/edge-01/events', JSON.stringify({ type: 'container.exited', ts: Date.now(), name: 'web', exitCode: 3 }))).code, 0);
    const again = await ctl(['device', 'add', 'edge-01']);
    t.same([again.code, again.stderr.split('\n').length], [1, 2]);
    t.match(again.stderr, /already has a token.*--rotate/);
    const devices = await until('edge-01 online', async () => {
      const list = JSON.parse((await ok(['get', 'devices', '-o', 'json'])).stdout) as Array<{ id: string; online: boolean; agentVersion: string | null }>;
      return list[0]?.online === true && list;
    });
    t.match(devices, [{ id: 'edge-01', online: true, agentVersion: 'sim', token: true }]);
    t.match((await ok(['get', 'devices'])).stdout, /^NAME +STATUS +LAST SEEN.*\nedge-01 +online +\d+s ago/);
    const events = JSON.parse((await ok(['get', 'events', '--device', 'edge-01', '-o', 'json'])).stdout) as Array<{ type: string; body: Record<string, unknown> }>;
    t.match(events, [{ type: 'container.exited', body: { name: 'web', exitCode: 3 } }]);
    t.match((await ok(['get', 'events', '-o', 'yaml'])).stdout, /type: container\.exited/);
    t.match((await ok(['describe', 'device', 'edge-01'])).stdout, /^Name: +edge-01\nStatus: +online/);
    const offline = await ctl(['logs', 'edge-01', 'nope', '--timeout', '1s']);
    t.equal(offline.code, 1, 'no agent answers: a 504 in one line');
    t.match(offline.stderr, /^featherctl: no reply to container\.logs to edge-01 within 1000 ms/);
  });

  await t.test('apply -f (YAML), get, describe, rollout status/undo, delete', async (t) => {
    const sha = (c: string): string => c.repeat(64);
    const file = join(root, 'det.yaml');
    const spec = (memory: string): string => [
      'name: det',
      'model:',
      '  name: resnet',
      `  variants: [{ accelerator: cpu, precision: fp32, url: "${server}/blobs/sha256/${sha('a')}", sha256: "${sha('a')}" }]`,
      'runtime:',
      `  variants: [{ arch: x86_64, image: rt, url: "${server}/blobs/sha256/${sha('b')}", sha256: "${sha('b')}" }]`,
      'replicas: 1',
      `resources: { memory: ${memory}, cpus: 0.25 }`,
    ].join('\n');
    writeFileSync(file, spec('64Mi'));
    t.equal((await ok(['apply', '-f', file])).stdout, 'deployment/det created (revision 1)\n');
    t.equal((await ok(['apply', '-f', file])).stdout, 'deployment/det unchanged (revision 1)\n');
    t.equal((await ok(['apply', '-f', '-'], remote, spec('96Mi'))).stdout, 'deployment/det configured (revision 2)\n', 'from stdin');
    const list = JSON.parse((await ok(['get', 'deployments', '-o', 'json'])).stdout) as Array<{ name: string; revision: number }>;
    t.match(list, [{ name: 'det', revision: 2, model: 'resnet' }]);
    t.match((await ok(['get', 'deployments'])).stdout, /^NAME +REVISION +PHASE.*\ndet +2 /);
    const described = (await ok(['describe', 'deployment', 'det'])).stdout;
    t.match(described, /^Name: +det$/m);
    t.match(described, /^Revision: +2 \(revisions 1, 2\)$/m);
    t.match(described, /^Resources: +memory 96Mi, cpus 0.25, pids 256$/m);
    t.match(described, /Replicas:\n {2}REPLICA +DEVICE +STATE/);
    t.match((await ok(['rollout', 'status', 'det'])).stdout, /^deployment\/det revision 2: /);
    t.equal((await ok(['rollout', 'undo', 'det'])).stdout, 'deployment/det rolled back to the spec of revision 1 (now revision 3, was 2)\n');
    t.match(JSON.parse((await ok(['get', 'deployment', 'det', '-o', 'json'])).stdout), { revision: 3, spec: { resources: { memory: '64Mi' } } });
    const bad = await ctl(['apply', '-f', '-'], remote, 'name: det\nreplicas: many\n');
    t.equal(bad.code, 2, 'a refused file: exit 2');
    t.match(bad.stderr, /^featherctl: deployment rejected: .*replicas.*\n$/);
    const wait = await ctl(['apply', '-f', file, '--wait', '--timeout', '2s']);
    t.equal(wait.code, 1, 'nowhere to run it: --wait fails');
    t.match(wait.stderr, /\[ +\d+s\] det: revision \d+ /);
    t.equal((await ok(['delete', 'deployment', 'det'])).stdout, 'deployment/det deleted\n');
    const gone = await ctl(['describe', 'deployment', 'det']);
    t.same([gone.code, gone.stderr], [1, 'featherctl: no deployment det; featherctl get deployments lists them\n']);
  });

  await t.test('push a file: URL and sha256; a Range download of it; pushed again it is not sent', async (t) => {
    const data = randomBytes(300_000);
    const digest = createHash('sha256').update(data).digest('hex');
    const file = join(root, 'model.onnx');
    writeFileSync(file, data);
    const pushed = await ok(['push', file, '--name', 'resnet.onnx']);
    t.equal(pushed.stdout, `pushed resnet.onnx (293Ki)\nurl: ${server}/blobs/sha256/${digest}\nsha256: ${digest}\n`);
    const part = await fetch(`${server}/blobs/sha256/${digest}`, { headers: { range: 'bytes=100-299' } });
    t.equal(part.status, 206);
    t.same(Buffer.from(await part.arrayBuffer()), data.subarray(100, 300));
    const again = JSON.parse((await ok(['push', file, '-o', 'json'])).stdout) as { uploaded: boolean; name: string; sha256: string };
    t.same([again.uploaded, again.name, again.sha256], [false, 'model.onnx', digest], 'named after the file, not uploaded twice');
    const blobs = JSON.parse((await ok(['get', 'blobs', '-o', 'json'])).stdout) as Array<{ digest: string; names: string[] }>;
    t.same(blobs.map((b) => [b.digest, b.names]), [[digest, ['model.onnx', 'resnet.onnx']]]);
    t.equal((await ok(['delete', 'blob', 'resnet.onnx'])).stdout, `blob/sha256:${digest} deleted\n`);
    t.equal((await fetch(`${server}/blobs/sha256/${digest}`)).status, 404);
    t.equal((await ctl(['delete', 'blob', 'resnet.onnx'])).code, 1, 'gone with its names');
    const missing = await ctl(['push', join(root, 'nope.bin')]);
    t.same([missing.code, missing.stderr], [2, `featherctl: cannot read ${join(root, 'nope.bin')}: no such file\n`]);
  });

  await t.test('mosquitto-files from the API and from the database; device rm revokes', async (t) => {
    const out = join(root, 'mosquitto');
    t.match((await ok(['mosquitto-files', '--out', out])).stdout, /wrote .*passwd \(2 users\)/);
    t.match(readFileSync(join(out, 'passwd'), 'utf8'), /^edge-01:\$7\$/m);
    t.match(readFileSync(join(out, 'acl'), 'utf8'), /^user edge-01\ntopic write feather\/v1\/dev\/edge-01\/status$/m);
    const offlineOut = join(root, 'mosquitto-db');
    const fromDb = JSON.parse((await ok(['mosquitto-files', '--data-dir', dataDir, '--out', offlineOut, '-o', 'json'])).stdout) as { users: number };
    t.equal(fromDb.users, 2);
    t.equal(readFileSync(join(offlineOut, 'acl'), 'utf8'), readFileSync(join(out, 'acl'), 'utf8'), 'the same ACL either way');

    t.equal((await ok(['device', 'rm', 'edge-01'])).stdout, 'device/edge-01 removed (1 token revoked)\n');
    const refused = await pub('edge-01', token, 'feather/v1/dev/edge-01/status', '{}');
    t.not(refused.code, 0, 'the revoked token no longer connects');
    t.equal((await ok(['get', 'devices'])).stderr, 'no devices\n');
    t.match((await ok(['mosquitto-files', '--out', out])).stdout, /\(1 users\)/, 'gone from the password file');
  });

  await t.test('an unreachable controller: exit 1 and one line', async (t) => {
    const port = await freePort();
    const r = await ctl(['get', 'devices', '--server', `127.0.0.1:${port}`, '--token', 'x']);
    t.same([r.code, r.stderr], [1, `featherctl: cannot reach the controller at http://127.0.0.1:${port} (connection refused: is feather-controller running, and is this its HTTP port?); set --server or FEATHERCTL_SERVER\n`]);
  });
});
