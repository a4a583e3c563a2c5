// The inference runner in a real Feather container: the `onnx` module layer (the host's node,
// the runner, onnxruntime-node) stacked over busybox, the model pulled through the image store
// and bind-mounted read-only at /models/<name>, and a real agent statsd socket on the host in the
// container's run directory, which the runtime bind-mounts at /run/feather. Needs root and a
// built dist/runner.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildRecipe } from '../../agent/images/recipes.js';
import { RUNNER_PREFIX, runnerCommand } from '../../agent/images/recipes/onnx.js';
import { UnixDatagramSink } from '../../runner/statsd.js';
import { openStatsdSocket, type StatsdSocket } from '../../agent/telemetry/statsd-socket.js';
import { isFeatherError } from '../../shared/errors.js';
import { mlpForward, randomFloats, sha256, tinyMlp, writeModel } from '../helpers/onnx-models.js';
import { cgroupLeftovers, hostMountsUnder, isRoot, runtimeFixture, type RuntimeFixture } from '../helpers/runtime-fixture.js';

const LIMITS = { memoryBytes: 512 * 2 ** 20, cpus: 1, pids: 64 };
const RUNNER_JS = fileURLToPath(new URL('../../dist/runner/main.js', import.meta.url));

interface HttpReply { status: number; body: unknown }

function call(socketPath: string, method: string, path: string, body?: unknown): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? '' : JSON.stringify(body);
    const req = request({ socketPath, method, path, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown });
        } catch (e: unknown) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** A host-side statsd socket like the agent's, collecting every line it receives. */
function collector(t: Test, dir: string): { socket: StatsdSocket; lines: string[] } {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const lines: string[] = [];
  const socket = openStatsdSocket(join(dir, 'statsd.sock'), (d) => lines.push(...d.toString('utf8').split('\n').filter((l) => l !== '')));
  t.teardown(() => socket.close());
  return { socket, lines };
}

const LINE = /^inference\.latency:(\d+(?:\.\d+)?)\|ms\|#model:([A-Za-z0-9_.-]+)$/;

function latencies(lines: string[], model: string): number[] {
  return lines.map((l) => LINE.exec(l)).filter((m): m is RegExpExecArray => m !== null && m[2] === model).map((m) => Number(m[1]));
}

interface LoadSummary { event: string; model: string; count: number; p50Ms: number; p99Ms: number; statsd: { lines: number; droppedLines: number } }

function summaryOf(lines: string[]): LoadSummary | undefined {
  for (const l of lines) {
    if (!l.startsWith('{"event":"load.done"')) continue;
    return JSON.parse(l) as LoadSummary;
  }
  return undefined;
}

if (!isRoot()) {
  t.pass('skipped: container tests need root');
} else if (!existsSync(RUNNER_JS)) {
  t.fail(`the runner is not built (${RUNNER_JS}); run npm run build first`);
} else {
  let fx: RuntimeFixture;
  let layer: string;
  let modelDir: string;
  let src: { file: string; sha256: string };
  const tiny = tinyMlp(3);

  t.before(async () => {
    fx = await runtimeFixture();
    await buildRecipe(fx.images, 'onnx', { name: 'onnx' });
    layer = await fx.images.ensureExtracted('onnx');
    src = writeModel(join(fx.root, 'src'), 'mlp', tiny.bytes);
    modelDir = await fx.images.ensureModel(pathToFileURL(src.file).href, src.sha256);
  });
  t.teardown(async () => { await fx.cleanup(); });

  const exited = (name: string) => waitFor(`${name} to exit`, () => {
    const c = fx.runtime.inspect(name);
    return c.status === 'exited' ? c : undefined;
  });

  function assertNothingLeft(t: Test, name: string): void {
    t.same(cgroupLeftovers(name), [], `no cgroup left for ${name}`);
    t.same(hostMountsUnder(fx.paths.container(name).dir), [], `no mount left for ${name}`);
  }

  t.test('the module layer: host node, runner, this platform\'s onnxruntime only, nothing over the base', async (t) => {
    t.ok(lstatSync(join(layer, 'usr/local/bin/node')).isFile(), 'usr/local/bin/node');
    t.equal(readlinkSync(join(layer, 'usr/local/bin/feather-runner')), '../lib/feather-runner/runner/main.js');
    const bin = join(layer, RUNNER_PREFIX, 'node_modules/onnxruntime-node/bin/napi-v6');
    t.same(readdirSync(bin), ['linux'], 'only linux binaries');
    t.same(readdirSync(join(bin, 'linux')), [process.arch], `only ${process.arch}`);
    t.notOk(existsSync(join(layer, RUNNER_PREFIX, 'node_modules/onnxruntime-node/script')), 'no install script');
    t.notOk(existsSync(join(layer, RUNNER_PREFIX, 'node_modules/global-agent')), 'no install-only dependency');
    t.ok(existsSync(join(layer, RUNNER_PREFIX, 'node_modules/onnxruntime-common/package.json')));
    const top = readdirSync(layer).sort();
    t.ok(top.every((n) => ['lib', 'lib32', 'lib64', 'libx32', 'usr'].includes(n)), `top level is usr and lib links only: ${top.join(' ')}`);
    t.notOk(existsSync(join(layer, 'usr/bin')), 'no usr/bin to hide busybox\'s usr/bin link');
  });

  t.test('serves inferences over a unix socket in a bind-mounted dir; every latency reaches the host socket', async (t) => {
    const name = 'onnx-serve';
    const { lines } = collector(t, fx.runtime.containerRunDir(name));
    const apiDir = join(fx.root, 'api');
    mkdirSync(apiDir, { mode: 0o755 });
    await fx.runtime.run({
      name, image: 'busybox', extraLayers: [layer], limits: LIMITS,
      args: runnerCommand(['--model-name', 'mlp', '--listen', '/run/api/runner.sock', '--flush-ms', '0', '--warmup', '2']),
      binds: [
        { source: modelDir, target: '/models/mlp', readonly: true },
        { source: apiDir, target: '/run/api', readonly: false },
      ],
    });
    const sock = join(apiDir, 'runner.sock');
    try {
      await waitFor('the runner to answer /healthz', async () => {
        if (!existsSync(sock)) return undefined;
        const r = await call(sock, 'GET', '/healthz').catch(() => undefined);
        return r?.status === 200 ? r : undefined;
      });
    } catch (e: unknown) {
      t.comment((await fx.runtime.logs(name)).join('\n'));
      throw e;
    }

    const model = await call(sock, 'GET', '/v1/model');
    t.same(model.body, { name: 'mlp', inputs: [{ name: 'x', type: 'float32', shape: [1, 4] }], outputs: [{ name: 'y', type: 'float32', shape: [1, 3] }] });

    const replies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const x = randomFloats(4, 100 + i);
      const r = await call(sock, 'POST', '/v1/infer', { inputs: { x: { dims: [1, 4], data: [...x] } } });
      t.equal(r.status, 200);
      const body = r.body as { model: string; latencyMs: number; outputs: { y: { type: string; dims: number[]; data: number[] } } };
      t.equal(body.model, 'mlp');
      t.same(body.outputs.y.dims, [1, 3]);
      const want = mlpForward(tiny.spec, x, 1);
      t.ok(body.outputs.y.data.every((v, j) => Math.abs(v - (want[j] as number)) < 1e-5), `output ${i} matches the reference forward pass`);
      replies.push(body.latencyMs);
    }
    const synthetic = await call(sock, 'POST', '/v1/infer');
    t.equal(synthetic.status, 200, 'an empty body runs the synthetic input');
    replies.push((synthetic.body as { latencyMs: number }).latencyMs);

    const bad = await call(sock, 'POST', '/v1/infer', { inputs: { x: { dims: [1, 5], data: [1, 2, 3, 4, 5] } } });
    t.equal(bad.status, 400);
    t.match(bad.body, { error: { code: 'BAD_REQUEST', message: /dim 1 is 5, the model wants 4/ } });

    await waitFor('6 latency lines', () => latencies(lines, 'mlp').length >= 6 || undefined, 5000);
    t.same(latencies(lines, 'mlp'), replies, 'one line per inference, the latency the reply gave, tagged model:mlp');
    t.equal(lines.length, 6, 'nothing else was sent');

    const stopped = await fx.runtime.stop(name, 5);
    t.equal(stopped.exitCode, 0, 'SIGTERM stops the runner cleanly');
    assertNothingLeft(t, name);
    await fx.runtime.remove(name);
  });

  t.test('a steady load in a container: the summary and the host socket agree', async (t) => {
    const name = 'onnx-load';
    const { lines } = collector(t, fx.runtime.containerRunDir(name));
    await fx.runtime.run({
      name, image: 'busybox', extraLayers: [layer], limits: LIMITS,
      args: ['feather-runner', '--model', '/models/mlp', '--rate', '100', '--duration', '1', '--threads', '1'],
      binds: [{ source: modelDir, target: '/models/mlp', readonly: true }],
    });
    const info = await exited(name);
    const logs = await fx.runtime.logs(name);
    t.equal(info.exitCode, 0, `exit 0\n${logs.join('\n')}`);
    const summary = summaryOf(logs);
    t.ok(summary !== undefined, 'the load summary is printed');
    if (summary === undefined) return;
    t.equal(summary.model, 'mlp', 'name from /models/<name>');
    t.ok(summary.count >= 80 && summary.count <= 101, `about 100 inferences in 1 s at 100/s (${summary.count})`);
    t.equal(summary.statsd.droppedLines, 0);
    await waitFor('every line', () => latencies(lines, 'mlp').length >= summary.count || undefined, 5000);
    t.equal(latencies(lines, 'mlp').length, summary.count, 'a line per inference reached the host');
    assertNothingLeft(t, name);
    await fx.runtime.remove(name);
  });

  t.test('a model whose sha256 does not match is refused (CHECKSUM_MISMATCH) and never stored', async (t) => {
    const wrong = sha256(Buffer.from('not the model'));
    const url = pathToFileURL(src.file).href;
    await t.rejects(fx.images.ensureModel(url, wrong), { code: 'CHECKSUM_MISMATCH' });
    try {
      await fx.images.ensureModel(url, wrong);
    } catch (e: unknown) {
      t.ok(isFeatherError(e) && e.message.includes(src.sha256), 'the message names the digest the bytes have');
    }
    const dir = fx.paths.modelDir(wrong);
    t.same(existsSync(dir) ? readdirSync(dir).filter((n) => !n.startsWith('.')) : [], [], 'nothing stored under the wrong digest');
    t.equal(await fx.images.ensureModel(url, src.sha256), modelDir, 'the right digest still resolves');
  });

  t.test('the runner on the host, as the benchmark runs it: same CLI, same socket protocol', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'feather-onnx-host-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const { socket, lines } = collector(t, join(dir, 'run'));
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [RUNNER_JS, '--model', src.file, '--model-name', 'mlp-host', '--rate', '50', '--duration', '0.5', '--statsd', socket.path],
        { timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
    });
    const summary = summaryOf(out.split('\n'));
    t.ok(summary !== undefined && summary.count > 0, 'a summary on stdout');
    await waitFor('every line', () => latencies(lines, 'mlp-host').length >= (summary?.count ?? 1) || undefined, 5000);
    t.equal(latencies(lines, 'mlp-host').length, summary?.count);
  });

  t.test('the runner\'s socket survives an agent restart: refused while gone, reconnected once rebound', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'feather-onnx-sink-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const got: string[] = [];
    const path = join(dir, 'statsd.sock');
    let agent = openStatsdSocket(path, (d) => got.push(d.toString()));
    const errors: string[] = [];
    const sink = new UnixDatagramSink(path, { onError: (call, errno) => errors.push(`${call}:${errno}`) });
    t.teardown(() => sink.close());
    t.equal(sink.send(Buffer.from('a')), 'sent');
    await waitFor('a', () => got.includes('a') || undefined, 5000);
    agent.close();
    t.equal(sink.send(Buffer.from('b')), 'dropped', 'the agent is gone');
    t.same(errors, ['send:111'], 'ECONNREFUSED, reported once');
    agent = openStatsdSocket(path, (d) => got.push(d.toString()));
    t.teardown(() => agent.close());
    await sleep(1100); // reconnects are tried at most once a second
    t.equal(sink.send(Buffer.from('c')), 'sent', 'reconnected to the new socket at the same path');
    await waitFor('c', () => got.includes('c') || undefined, 5000);
    t.same(got, ['a', 'c']);
  });
}
