// featherctl's main() in process against a canned HTTP server: what goes to stdout and stderr,
// the exit codes (0, 1, 2), one line per failure, the bearer token on every request, and the
// commands' requests (method, path, body).
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { main, type MainIo } from '../../controller/cli/main.js';
import { freePort } from '../helpers/brokers.js';

interface Seen { method: string; url: string; auth: string | undefined; body: string }
type Reply = { status: number; body: unknown };

async function server(t: Test, routes: Record<string, Reply | ((body: string) => Reply)>): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization, body });
      const key = `${req.method ?? ''} ${(req.url ?? '').split('?')[0] ?? ''}`;
      const route = routes[key];
      const r = typeof route === 'function' ? route(body) : route ?? { status: 404, body: { error: { code: 'NOT_FOUND', message: `no route for ${key}` } } };
      res.writeHead(r.status, { 'content-type': 'application/json' }).end(JSON.stringify(r.body));
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => { srv.closeAllConnections(); srv.close(() => resolve()); }));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, seen };
}

async function run(argv: string[], env: NodeJS.ProcessEnv = {}, stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: MainIo = {
    stdout: (s) => { stdout += s; }, stderr: (s) => { stderr += s; }, stdoutTTY: false, stderrTTY: false,
    env: { FEATHERCTL_CONFIG: '/nonexistent/featherctl.json', FEATHER_CONTROLLER_DATA_DIR: '/nonexistent', ...env },
    readStdin: async () => Buffer.from(stdin),
  };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

const device = { id: 'edge-01', online: true, state: 'online', lastSeen: 1, stateChangedAt: 1, agentVersion: '0.1.0', arch: 'x86_64', cpu: null, memoryBytes: null, accelerators: [], labels: {}, token: true, workloads: { desired: 0, running: 0 }, generation: { desired: null, reported: null }, metricsTarget: 'edge-01:9464' };

t.test('usage, help and version', async (t) => {
  const none = await run([]);
  t.equal(none.code, 2);
  t.match(none.stderr, /^usage: featherctl/);
  const help = await run(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Commands:\n {2}login/);
  t.match((await run(['get', '--help'])).stdout, /usage: featherctl get devices\|deployments/);
  t.match((await run(['--version'])).stdout, /^(\d+\.\d+\.\d+|unknown)\n$/);
  const bad = await run(['frob']);
  t.same([bad.code, bad.stderr], [2, 'featherctl: unknown command "frob"; featherctl --help lists the commands\n'], 'one line');
  t.equal((await run(['get', 'devices', '-o', 'xml'])).code, 2);
  t.equal((await run(['describe', 'device'])).code, 2);
  t.equal((await run(['get', 'widgets'], { FEATHERCTL_TOKEN: 't' })).code, 2);
  const noFile = await run(['apply', '-f', '/nonexistent/d.yaml'], { FEATHERCTL_TOKEN: 't', FEATHERCTL_SERVER: 'http://127.0.0.1:1' });
  t.same([noFile.code, noFile.stderr], [2, 'featherctl: cannot read /nonexistent/d.yaml: no such file\n']);
});

t.test('requests carry the token; JSON and tables; exit codes follow the error code', async (t) => {
  const s = await server(t, {
    'GET /api/v1/devices': { status: 200, body: { items: [device] } },
    'POST /api/v1/devices': (body) => ({ status: 201, body: { id: (JSON.parse(body) as { id: string }).id, token: 'NEW-TOKEN' } }),
    'DELETE /api/v1/devices/edge-01': { status: 200, body: { id: 'edge-01', revoked: 1, removed: true } },
    'POST /api/v1/deployments': { status: 400, body: { error: { code: 'BAD_REQUEST', message: 'deployment rejected: replicas: must be a whole number' } } },
    'DELETE /api/v1/deployments/det': { status: 404, body: { error: { code: 'NOT_FOUND', message: 'no deployment det' } } },
    'GET /api/v1/devices/edge-01/containers/web/logs': { status: 200, body: { device: 'edge-01', container: 'web', lines: ['one', 'two'] } },
    'GET /api/v1/mosquitto-files': { status: 200, body: { passwd: 'admin:$7$x\n', acl: 'user admin\n', users: 1 } },
  });
  const env = { FEATHERCTL_SERVER: s.url, FEATHERCTL_TOKEN: 'TOKEN' };

  const json = await run(['get', 'devices', '-o', 'json'], env);
  t.equal(json.code, 0);
  t.same(JSON.parse(json.stdout), [device], 'a list is printed as an array');
  t.equal(s.seen[0]?.auth, 'Bearer TOKEN');
  t.match((await run(['get', 'devices'], env)).stdout, /^NAME +STATUS.*\nedge-01 +online/);

  const add = await run(['device', 'add', 'edge-02'], env);
  t.same([add.code, add.stdout], [0, 'NEW-TOKEN\n'], 'the token alone on stdout');
  t.same(JSON.parse((await run(['device', 'add', 'edge-02', '-o', 'json'], env)).stdout), { id: 'edge-02', token: 'NEW-TOKEN' });
  t.same(JSON.parse(s.seen.at(-1)?.body ?? ''), { id: 'edge-02' });
  await run(['device', 'add', 'edge-02', '--rotate'], env);
  t.same(JSON.parse(s.seen.at(-1)?.body ?? ''), { id: 'edge-02', rotate: true });
  t.equal((await run(['device', 'rm', 'edge-01'], env)).stdout, 'device/edge-01 removed (1 token revoked)\n');

  const rejected = await run(['apply', '-f', '-'], env, 'name: det\nreplicas: -1\n');
  t.same([rejected.code, rejected.stderr], [2, 'featherctl: deployment rejected: replicas: must be a whole number\n'], 'a refused file: 2');
  t.equal(s.seen.at(-1)?.body, 'name: det\nreplicas: -1\n', 'the file is sent as it is');
  const missing = await run(['delete', 'deployment', 'det'], env);
  t.same([missing.code, missing.stderr], [1, 'featherctl: no deployment det\n'], 'not found: 1');
  t.equal((await run(['delete', 'device', 'x'], env)).code, 2);

  const logs = await run(['logs', 'edge-01', 'web', '--tail', '2'], env);
  t.same([logs.code, logs.stdout], [0, 'one\ntwo\n']);
  t.match(s.seen.at(-1)?.url, /\/logs\?tail=2$/);

  const dir = mkdtempSync(join(tmpdir(), 'featherctl-mosq-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const m = await run(['mosquitto-files', '--out', dir], env);
  t.equal(m.code, 0);
  t.equal(readFileSync(join(dir, 'passwd'), 'utf8'), 'admin:$7$x\n');
  t.equal(readFileSync(join(dir, 'acl'), 'utf8'), 'user admin\n');
  t.equal(statSync(join(dir, 'passwd')).mode & 0o777, 0o600);
  t.match(m.stdout, /wrote .*passwd \(1 users\)/);
});

t.test('no token, a refused token, an unreachable server: one line, exit 1', async (t) => {
  const s = await server(t, { 'GET /api/v1/devices': { status: 401, body: { error: { code: 'UNAUTHORIZED', message: 'missing token' } } } });
  const noToken = await run(['get', 'devices'], { FEATHERCTL_SERVER: s.url });
  t.equal(noToken.code, 1);
  t.match(noToken.stderr, /^featherctl: the controller at http:\/\/127\.0\.0\.1:\d+ needs a token: .*not readable.*featherctl login\n$/);
  const refused = await run(['get', 'devices'], { FEATHERCTL_SERVER: s.url, FEATHERCTL_TOKEN: 'x' });
  t.match(refused.stderr, /^featherctl: the controller at .* refused the token: run featherctl login again/);
  t.equal(refused.stderr.split('\n').length, 2, 'one line');
  const port = await freePort();
  const down = await run(['get', 'devices'], { FEATHERCTL_SERVER: `http://127.0.0.1:${port}`, FEATHERCTL_TOKEN: 'x' });
  t.same([down.code, down.stderr], [1, `featherctl: cannot reach the controller at http://127.0.0.1:${port} (connection refused: is feather-controller running, and is this its HTTP port?); set --server or FEATHERCTL_SERVER\n`]);
});

t.test('login saves server and token after checking them', async (t) => {
  const s = await server(t, { 'GET /api/v1/info': { status: 200, body: { version: '0.1.0', devices: { online: 1, offline: 2 } } } });
  const dir = mkdtempSync(join(tmpdir(), 'featherctl-login-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'c.json');
  const r = await run(['login', '--server', s.url, '--token', 'SECRET'], { FEATHERCTL_CONFIG: file });
  t.equal(r.code, 0);
  t.match(r.stdout, /logged in to http:\/\/127\.0\.0\.1:\d+ \(feather-controller 0\.1\.0, 1 of 3 devices online\)/);
  t.same(JSON.parse(readFileSync(file, 'utf8')), { server: s.url, token: 'SECRET' });
  t.equal(s.seen[0]?.auth, 'Bearer SECRET');
  const tokenFile = join(dir, 'tok');
  writeFileSync(tokenFile, 'FROM-FILE\n');
  t.equal((await run(['login', '--server', s.url, '--token-file', tokenFile], { FEATHERCTL_CONFIG: file })).code, 0);
  t.equal((JSON.parse(readFileSync(file, 'utf8')) as { token: string }).token, 'FROM-FILE');
  t.equal((await run(['login', '--server', 'http://10.255.255.1:1'], { FEATHERCTL_CONFIG: join(dir, 'none.json') })).code, 2, 'no token to log in with');
});
