// Build hooks through a real controller (the Controller class with the API, build hooks enabled,
// free loopback ports, a temp data dir): the base model pushed to the blob store, a deployment
// file with model.build and a buildHook applied over HTTP; the stored spec holds the built variant,
// its blob is served, applying again is unchanged (cached), and a failing hook stores nothing.
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createApi } from '../../controller/api/index.js';
import type { DeploymentDetail } from '../../controller/api/views.js';
import { loadControllerConfig } from '../../controller/config.js';
import { Controller } from '../../controller/core/controller.js';
import { configureLogging, createLogger } from '../../shared/logging.js';

configureLogging({ level: process.env['FEATHER_LOG_LEVEL'] === 'debug' ? 'debug' : 'silent' });
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

t.test('a deployment with a build hook applied to a running controller', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'feather-build-int-'));
  const config = loadControllerConfig({ env: {}, overrides: { dataDir: join(dir, 'data'), 'mqtt.host': '127.0.0.1', 'mqtt.port': 0, 'http.host': '127.0.0.1', 'http.port': 0 } });
  const controller = new Controller({ config, logger: createLogger('controller'), extensions: [(ctx) => createApi(ctx, { buildHooks: { enabled: true, timeoutMs: 20_000 } })] });
  t.teardown(async () => { await controller.stop(); rmSync(dir, { recursive: true, force: true }); });
  const ctx = await controller.start();
  const base = `http://127.0.0.1:${ctx.http.port}`;
  const auth = { authorization: `Bearer ${ctx.credentials.admin}` };

  const model = Buffer.from('an fp32 model\n');
  const put = await fetch(`${base}/blobs/sha256/${sha(model)}`, { method: 'PUT', body: model, headers: auth });
  t.equal(put.status, 201);

  const script = join(dir, 'quantize.sh');
  writeFileSync(script, '#!/bin/sh\nset -e\ncat "$1" > "$2"\nprintf "%s/%s\\n" "$FEATHER_ACCELERATOR" "$FEATHER_PRECISION" >> "$2"\n');
  chmodSync(script, 0o755);
  const yaml = (hook: string): string => `
name: det
model:
  name: yolo
  variants:
    - { accelerator: cpu, precision: fp32, url: "${base}/blobs/sha256/${sha(model)}/yolo.onnx", sha256: "${sha(model)}" }
  build:
    - { accelerator: edgetpu, precision: int8 }
buildHook: '${hook}'
runtime: { variants: [ { arch: x86_64, image: rt, url: "https://images.example/rt.tar.gz", sha256: "${'c'.repeat(64)}" } ] }
replicas: 1
resources: { memory: 64Mi, cpus: 0.5 }
accelerators: [edgetpu, cpu]
`;
  const apply = async (text: string): Promise<{ status: number; body: { items?: Array<{ action: string }>; error?: { code: string; message: string } } }> => {
    const r = await fetch(`${base}/api/v1/deployments`, { method: 'POST', body: text, headers: { ...auth, 'content-type': 'application/yaml' } });
    return { status: r.status, body: (await r.json()) as { items?: Array<{ action: string }>; error?: { code: string; message: string } } };
  };

  const failed = await apply(yaml(`${script} "$FEATHER_MODEL_IN" /nonexistent/dir/out`));
  t.equal(failed.status, 400);
  t.match(failed.body.error, { code: 'BAD_REQUEST', message: /model\.build\[0\] \(edgetpu\/int8\) exited with status \d+/ });
  t.equal((await fetch(`${base}/api/v1/deployments/det`, { headers: auth })).status, 404, 'nothing stored');

  const hook = `${script} "$FEATHER_MODEL_IN" "$FEATHER_MODEL_OUT"`;
  const applied = await apply(yaml(hook));
  t.equal(applied.status, 201);
  t.match(applied.body.items, [{ action: 'created' }]);
  const d = (await (await fetch(`${base}/api/v1/deployments/det`, { headers: auth })).json()) as DeploymentDetail;
  const built = Buffer.concat([model, Buffer.from('edgetpu/int8\n')]);
  t.same(d.spec.model.variants[1], { accelerator: 'edgetpu', precision: 'int8', url: `${base}/blobs/sha256/${sha(built)}/yolo.onnx`, sha256: sha(built) });
  t.equal(d.spec.model.build, undefined);

  const blob = await fetch(d.spec.model.variants[1]?.url ?? '');
  t.equal(blob.status, 200);
  t.same(Buffer.from(await blob.arrayBuffer()), built, 'the built variant is served from /blobs');

  const again = await apply(yaml(hook));
  t.match(again.body.items, [{ action: 'unchanged' }], 'applying the same file again builds nothing new');
});
