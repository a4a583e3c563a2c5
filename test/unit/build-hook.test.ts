// Build hooks (controller/deployments/build-hook.ts): a hook written as a small shell script that
// copies the base model and appends bytes; the environment it sees, the variant it produces (its
// sha256 and /blobs URL), the cache, a failing hook's message, the timeout, the base fetched over
// HTTP with verification, the switch that keeps hooks off; and model.build in the deployment file.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { BlobStore } from '../../controller/blobs/store.js';
import { ModelBuilder } from '../../controller/deployments/build-hook.js';
import { isDeploymentSpecError, parseDeployment, validateDeployment } from '../../controller/deployments/spec.js';
import type { DeploymentSpec } from '../../controller/model/types.js';
import { FeatherError } from '../../shared/errors.js';
import { configureLogging, createLogger } from '../../shared/logging.js';

configureLogging({ level: 'silent' });
const log = createLogger('test');
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const BASE = Buffer.from('fp32 model bytes\n');
const BASE_SHA = sha(BASE);
const BASE_URL = 'http://ctl.example:8080';

interface Fixture { dir: string; blobs: BlobStore; hook: string; envFile: string; countFile: string }

async function fixture(t: Test, script: string): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'feather-build-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const blobs = new BlobStore(join(dir, 'blobs'), log);
  await blobs.init();
  await blobs.put(BASE_SHA, Readable.from([BASE]));
  const file = join(dir, 'quantize.sh');
  writeFileSync(file, `#!/bin/sh\n${script}\n`);
  chmodSync(file, 0o755);
  const envFile = join(dir, 'env.txt');
  const countFile = join(dir, 'count.txt');
  // The hook text as a deployment would give it: quoted variables, the script by path.
  const hook = `ENV_FILE='${envFile}' COUNT_FILE='${countFile}' '${file}' --in "$FEATHER_MODEL_IN" --out "$FEATHER_MODEL_OUT" --precision "$FEATHER_PRECISION"`;
  return { dir, blobs, hook, envFile, countFile };
}

const COPY_AND_APPEND = `
env | grep '^FEATHER_' | sort > "$ENV_FILE"
echo x >> "$COUNT_FILE"
cat "$FEATHER_MODEL_IN" > "$FEATHER_MODEL_OUT"
printf '%s-%s\\n' "$FEATHER_ACCELERATOR" "$FEATHER_PRECISION" >> "$FEATHER_MODEL_OUT"
`;

function spec(hook: string, over: Partial<DeploymentSpec['model']> = {}): DeploymentSpec {
  return {
    name: 'det',
    model: { name: 'yolo', variants: [{ accelerator: 'cpu', precision: 'fp32', url: `${BASE_URL}/blobs/sha256/${BASE_SHA}/yolo.onnx`, sha256: BASE_SHA }], build: [{ accelerator: 'edgetpu', precision: 'int8' }], ...over },
    runtime: { variants: [{ arch: 'x86_64', image: 'rt', url: 'https://images.example/rt.tar.gz', sha256: 'a'.repeat(64) }] },
    replicas: 1,
    resources: { memory: '64Mi', cpus: 0.5, pids: 256 },
    accelerators: ['edgetpu', 'cpu'],
    buildHook: hook,
  };
}

t.test('the hook builds the variant: env, sha256, blob, URL; the result is cached', async (t) => {
  const f = await fixture(t, COPY_AND_APPEND);
  const builder = new ModelBuilder({ blobs: f.blobs, enabled: true, logger: log, tmpDir: f.dir });
  const out = await builder.complete(spec(f.hook), BASE_URL);
  const expected = Buffer.concat([BASE, Buffer.from('edgetpu-int8\n')]);
  const digest = sha(expected);
  t.same(out.model.variants[1], { accelerator: 'edgetpu', precision: 'int8', url: `${BASE_URL}/blobs/sha256/${digest}/yolo.onnx`, sha256: digest });
  t.equal(out.model.build, undefined, 'model.build is gone from the completed spec');
  t.same(readFileSync(f.blobs.path(digest)), expected, 'the output is in the blob store');
  const env = readFileSync(f.envFile, 'utf8').trim().split('\n');
  t.same(env.map((l) => l.split('=')[0]), ['FEATHER_ACCELERATOR', 'FEATHER_DEPLOYMENT', 'FEATHER_MODEL_IN', 'FEATHER_MODEL_OUT', 'FEATHER_PRECISION']);
  t.ok(env.includes('FEATHER_ACCELERATOR=edgetpu') && env.includes('FEATHER_PRECISION=int8') && env.includes('FEATHER_DEPLOYMENT=det'));
  t.ok(env.includes(`FEATHER_MODEL_IN=${f.blobs.path(BASE_SHA)}`), 'the base is read from the blob store');
  t.notOk(readdirSync(f.dir).some((n) => n.startsWith('feather-build-')), 'the temp dir is removed');
  validateDeployment(out); // the completed spec passes validation

  const again = await new ModelBuilder({ blobs: f.blobs, enabled: true, tmpDir: f.dir }).complete(spec(f.hook), BASE_URL);
  t.same(again, out, 'a new builder (a restarted controller) finds the cached build');
  t.equal(readFileSync(f.countFile, 'utf8'), 'x\n', 'the hook ran once');

  const two = await builder.complete(spec(f.hook, { build: [{ accelerator: 'edgetpu', precision: 'int8' }, { accelerator: 'npu', precision: 'int8' }] }), BASE_URL);
  t.equal(two.model.variants.length, 3);
  t.equal(two.model.variants[2]?.sha256, sha(Buffer.concat([BASE, Buffer.from('npu-int8\n')])));
  t.equal(readFileSync(f.countFile, 'utf8'), 'x\nx\n', 'only the new variant was built');

  await builder.complete(spec(`${f.hook} # changed`), BASE_URL);
  t.equal(readFileSync(f.countFile, 'utf8'), 'x\nx\nx\n', 'another hook text builds again');
});

t.test('a failing hook: BAD_REQUEST with the variant, exit status and last stderr lines; nothing stored', async (t) => {
  const f = await fixture(t, 'echo "loading $FEATHER_MODEL_IN" ; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "line $i" >&2; done; echo "unsupported op Foo" >&2; exit 3');
  const builder = new ModelBuilder({ blobs: f.blobs, enabled: true, tmpDir: f.dir });
  const before = (await f.blobs.list()).length;
  const e = await builder.complete(spec(f.hook), BASE_URL).then(() => undefined, (err: unknown) => err);
  t.ok(e instanceof FeatherError);
  const err = e as FeatherError;
  t.equal(err.code, 'BAD_REQUEST');
  t.match(err.message, /model\.build\[0\] \(edgetpu\/int8\) exited with status 3/);
  t.match(err.message, /unsupported op Foo/);
  t.notMatch(err.message, /line 1 \|/, 'only the last lines');
  t.equal((await f.blobs.list()).length, before, 'no blob stored');

  const empty = await fixture(t, 'exit 0');
  const e2 = await new ModelBuilder({ blobs: empty.blobs, enabled: true, tmpDir: empty.dir }).complete(spec(empty.hook), BASE_URL).catch((x: unknown) => x);
  t.match((e2 as Error).message, /exited 0 but wrote nothing to \$FEATHER_MODEL_OUT/);
});

t.test('a hook running past the timeout is killed with its children', async (t) => {
  const f = await fixture(t, 'sleep 30 & sleep 30; echo done > "$FEATHER_MODEL_OUT"');
  const builder = new ModelBuilder({ blobs: f.blobs, enabled: true, timeoutMs: 300, tmpDir: f.dir });
  const started = Date.now();
  const e = await builder.complete(spec(f.hook), BASE_URL).catch((x: unknown) => x);
  t.ok(Date.now() - started < 5000, 'it did not wait for the sleeps');
  t.equal((e as FeatherError).code, 'BAD_REQUEST');
  t.match((e as Error).message, /model\.build\[0\] \(edgetpu\/int8\) ran longer than 0.3s and was killed/);
});

t.test('hooks are off unless enabled; a base not in the store is fetched and verified', async (t) => {
  const f = await fixture(t, COPY_AND_APPEND);
  const off = await new ModelBuilder({ blobs: f.blobs, enabled: false }).complete(spec(f.hook), BASE_URL).catch((x: unknown) => x);
  t.match((off as Error).message, /build hooks are disabled on this controller; set FEATHER_CONTROLLER_BUILD_HOOKS=1/);
  t.notOk(existsSync(f.countFile), 'nothing ran');

  const other = Buffer.from('remote fp32 model\n');
  const server = http.createServer((req, res) => { res.end(req.url === '/bad.onnx' ? Buffer.from('tampered') : other); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const builder = new ModelBuilder({ blobs: f.blobs, enabled: true, tmpDir: f.dir });
  const remote = spec(f.hook, { variants: [{ accelerator: 'cpu', precision: 'fp32', url: `http://127.0.0.1:${port}/m.onnx`, sha256: sha(other) }] });
  const out = await builder.complete(remote, BASE_URL);
  t.equal(out.model.variants[1]?.sha256, sha(Buffer.concat([other, Buffer.from('edgetpu-int8\n')])));
  t.equal(out.model.variants[1]?.url.endsWith('/m.onnx'), true);

  const bad = spec(f.hook, { variants: [{ accelerator: 'cpu', precision: 'fp32', url: `http://127.0.0.1:${port}/bad.onnx`, sha256: sha('something else') }] });
  const e = await builder.complete(bad, BASE_URL).catch((x: unknown) => x);
  t.equal((e as FeatherError).code, 'CHECKSUM_MISMATCH');
});

t.test('model.build in a deployment file', async (t) => {
  const file = (extra: string): string => `
name: det
model:
  name: yolo
  variants:
    - { accelerator: cpu, precision: fp32, url: "https://m.example/yolo.onnx", sha256: "${BASE_SHA}" }
${extra}
runtime: { variants: [ { arch: x86_64, image: rt, url: "https://i.example/rt.tar.gz", sha256: "${'b'.repeat(64)}" } ] }
replicas: 1
resources: { memory: 64Mi, cpus: 0.5 }
accelerators: [edgetpu]
`;
  const ok = parseDeployment(`${file('  build: [ { accelerator: edgetpu, precision: int8 } ]')}buildHook: "python3 q.py"\n`);
  t.same(ok.model.build, [{ accelerator: 'edgetpu', precision: 'int8' }]);
  t.equal(ok.buildHook, 'python3 q.py');

  const issues = (text: string): string[] => {
    try { parseDeployment(text); return []; } catch (e: unknown) { if (!isDeploymentSpecError(e)) throw e; return e.issues.map((i) => `${i.path}: ${i.message}`); }
  };
  t.match(issues(file('  build: [ { accelerator: edgetpu, precision: int8 } ]')), [/^buildHook: is required when model.build/]);
  t.match(issues(`${file('  build: [ { accelerator: cpu, precision: fp32 } ]')}buildHook: x\n`), [/^model.build\[0\]: model.variants\[0\] is already the cpu\/fp32 variant/]);
  t.match(issues(`${file('  build: [ { accelerator: edgetpu, precision: int8, url: x } ]')}buildHook: x\n`), [/^model.build\[0\].url: unknown field/]);
  t.match(issues(file('')), [/^accelerators: none of edgetpu has a model variant/], 'without the build, edgetpu has no variant');
});
