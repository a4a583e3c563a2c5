import t from 'tap';
import {
  DeploymentSpecError, isDeploymentSpecError, parseDeployment, parseDeployments, validateDeployment, withDefaults,
} from '../../controller/deployments/spec.js';
import { FeatherError } from '../../shared/errors.js';

const SHA = (c: string): string => c.repeat(64);

const FULL = `
# The example of docs/scheduling.md
name: detector
model:
  name: yolov8n
  variants:
    - { accelerator: tensorrt, precision: fp16, url: "https://models.example/yolov8n-fp16.engine", sha256: "${SHA('a')}" }
    - { accelerator: edgetpu,  precision: int8, url: "https://models.example/yolov8n-int8_edgetpu.tflite", sha256: "${SHA('b')}" }
    - { accelerator: cpu,      precision: fp32, url: "https://models.example/yolov8n.onnx", sha256: "${SHA('c')}" }
runtime:
  variants:
    - { arch: aarch64, image: det-rt, url: "https://images.example/det-rt-arm64.tar.gz", sha256: "${SHA('d')}" }
    - arch: x86_64
      image: det-rt
      url: https://images.example/det-rt-amd64.tar.gz
      sha256: "${SHA('e')}"
      layers:                      # optional, topmost first: stacked above the image on the device
        - { name: onnxruntime, url: "https://images.example/ort-1.18-amd64.tar.gz", sha256: "${SHA('f')}" }
  args: [/app/detect, --camera, /dev/video0]
  env: { LOG_LEVEL: info, PORT: 8080 }
replicas: 20
resources: { memory: 512Mi, cpus: 1.5 }
accelerators: [tensorrt, cuda, edgetpu, npu, cpu]
p95LatencyMs: 40
strategy: spread
rollout: { maxUnavailable: 2, canary: 1, failureThreshold: 3, minReadyS: 10 }
`;

function issuesOf(fn: () => unknown): { path: string; message: string }[] {
  try {
    fn();
  } catch (e: unknown) {
    if (isDeploymentSpecError(e)) return [...e.issues];
    throw e;
  }
  throw new Error('expected a DeploymentSpecError');
}

const paths = (fn: () => unknown): string[] => issuesOf(fn).map((i) => i.path);

function minimal(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'det',
    model: { name: 'm', variants: [{ accelerator: 'cpu', precision: 'fp32', url: 'https://x.example/m.onnx', sha256: SHA('a') }] },
    runtime: { variants: [{ arch: 'x86_64', image: 'rt', url: 'https://x.example/rt.tar.gz', sha256: SHA('b') }] },
    replicas: 2,
    resources: { memory: '128Mi', cpus: 0.5 },
    ...over,
  };
}

t.test('the full YAML example parses into a DeploymentSpec', async (t) => {
  const s = parseDeployment(FULL);
  t.equal(s.name, 'detector');
  t.equal(s.model.variants.length, 3);
  t.same(s.model.variants[1], { accelerator: 'edgetpu', precision: 'int8', url: 'https://models.example/yolov8n-int8_edgetpu.tflite', sha256: SHA('b') });
  t.same(s.runtime.variants.map((v) => v.arch), ['aarch64', 'x86_64']);
  t.same(s.runtime.args, ['/app/detect', '--camera', '/dev/video0']);
  t.same(s.runtime.env, { LOG_LEVEL: 'info', PORT: '8080' }, 'YAML numbers in env become strings');
  t.equal(s.replicas, 20);
  t.same(s.resources, { memory: '512Mi', cpus: 1.5, pids: 256 });
  t.same(s.accelerators, ['tensorrt', 'cuda', 'edgetpu', 'npu', 'cpu']);
  t.equal(s.p95LatencyMs, 40);
  t.equal(s.strategy, 'spread');
  t.same(s.rollout, { maxUnavailable: 2, canary: 1, failureThreshold: 3, minReadyS: 10 });
});

t.test('JSON parses the same as YAML', async (t) => {
  const fromJson = parseDeployment(JSON.stringify(parseDeployment(FULL)));
  t.same(fromJson, parseDeployment(FULL));
  t.same(parseDeployment(Buffer.from(JSON.stringify(minimal()))).name, 'det', 'a Buffer works too');
});

t.test('defaults: strategy spread, rollout {1,1,2,5s}, accelerators [cpu], pids 256', async (t) => {
  const s = validateDeployment(minimal());
  t.equal(s.strategy, 'spread');
  t.same(s.rollout, { maxUnavailable: 1, canary: 1, failureThreshold: 2, minReadyS: 5 });
  t.same(s.accelerators, ['cpu']);
  t.equal(s.resources.pids, 256);
  t.equal(s.p95LatencyMs, undefined);
  const partial = validateDeployment(minimal({ rollout: { canary: 3 } }));
  t.same(partial.rollout, { maxUnavailable: 1, canary: 3, failureThreshold: 2, minReadyS: 5 }, 'a partial rollout keeps the other defaults');
  t.same(withDefaults({ ...validateDeployment(minimal()), rollout: { maxUnavailable: 1, canary: 1, failureThreshold: 2 } }).rollout.minReadyS, 5,
    'a spec stored before minReadyS existed gets its default');
  t.same(withDefaults({ ...minimal(), accelerators: [] } as never).accelerators, ['cpu']);
});

t.test('every bad field is listed by its path, in one error', async (t) => {
  let err: unknown;
  try {
    validateDeployment(minimal({
      name: 'bad name!',
      resources: { memory: 'lots', cpus: 0 },
      strategy: 'random',
      p95LatencyMs: -1,
    }));
  } catch (e: unknown) { err = e; }
  t.ok(err instanceof DeploymentSpecError);
  t.ok(err instanceof FeatherError);
  t.equal((err as FeatherError).code, 'BAD_REQUEST');
  t.same((err as DeploymentSpecError).issues.map((i) => i.path), ['name', 'resources.memory', 'resources.cpus', 'p95LatencyMs', 'strategy']);
  t.match((err as Error).message, /^deployment rejected: name: .*resources\.memory: .*fix the file/);
});

t.test('unknown fields are refused, at any depth', async (t) => {
  const got = paths(() => validateDeployment(minimal({
    replica: 3,
    resources: { memory: '64Mi', cpus: 1, gpu: 1 },
    model: { name: 'm', variants: [{ accelerator: 'cpu', precision: 'fp32', url: 'https://x.example/m', sha256: SHA('a'), size: 3 }] },
  })));
  t.same(got, ['replica', 'model.variants[0].size', 'resources.gpu']);
});

t.test('replicas or selector: exactly one', async (t) => {
  t.same(paths(() => validateDeployment(minimal({ replicas: undefined }))), ['replicas']);
  t.same(paths(() => validateDeployment(minimal({ selector: { site: 'a' } }))), ['selector']);
  const s = validateDeployment(minimal({ replicas: undefined, selector: { site: 'lyon', tier: 1 } }));
  t.same(s.selector, { site: 'lyon', tier: '1' });
  t.equal(s.replicas, undefined);
  t.same(paths(() => validateDeployment(minimal({ replicas: 1.5 }))), ['replicas']);
  t.same(paths(() => validateDeployment(minimal({ replicas: -1 }))), ['replicas']);
  t.equal(validateDeployment(minimal({ replicas: 0 })).replicas, 0, 'scaled to zero is allowed');
});

t.test('variants: enums, URL, sha256, duplicates', async (t) => {
  const got = issuesOf(() => validateDeployment(minimal({
    model: {
      name: 'm',
      variants: [
        { accelerator: 'tpu', precision: 'fp32', url: 'https://x.example/a', sha256: SHA('a') },
        { accelerator: 'cpu', precision: 'fp64', url: 'ftp://x/a', sha256: 'abc' },
        { accelerator: 'cpu', precision: 'fp32', url: 'https://x.example/a', sha256: SHA('a') },
        { accelerator: 'cpu', precision: 'fp32', url: 'https://x.example/b', sha256: SHA('b') },
      ],
    },
    runtime: { variants: [
      { arch: 'x86_64', image: 'rt', url: 'https://x.example/rt', sha256: SHA('c') },
      { arch: 'x86_64', image: 'rt2', url: 'https://x.example/rt2', sha256: SHA('d') },
      { arch: 'mips', image: 'rt', url: 'https://x.example/rt', sha256: SHA('e') },
    ] },
  })));
  t.same(got.map((i) => i.path), [
    'model.variants[0].accelerator', 'model.variants[1].precision', 'model.variants[1].url', 'model.variants[1].sha256',
    'model.variants[3]', 'runtime.variants[1].arch', 'runtime.variants[2].arch',
  ]);
  t.match(got[4]?.message, /a second cpu\/fp32 variant/);
  const upper = validateDeployment(minimal({ model: { name: 'm', variants: [{ accelerator: 'cpu', precision: 'fp32', url: 'https://x.example/m', sha256: `sha256:${'AB'.repeat(32)}` }] } }));
  t.equal(upper.model.variants[0]?.sha256, 'ab'.repeat(32), 'sha256: prefix dropped, lower-cased');
});

t.test('the preference list must reach a model variant', async (t) => {
  const got = issuesOf(() => validateDeployment(minimal({ accelerators: ['tensorrt', 'edgetpu'] })));
  t.same(got.map((i) => i.path), ['accelerators']);
  t.match(got[0]?.message, /variants exist for cpu/);
  t.same(paths(() => validateDeployment(minimal({ accelerators: ['cpu', 'cpu'] }))), ['accelerators[1]']);
  t.same(paths(() => validateDeployment(minimal({ accelerators: [] }))), ['accelerators']);
  t.same(paths(() => validateDeployment(minimal({ accelerators: ['fpga'] }))), ['accelerators[0]']);
});

t.test('names: deployment names leave room for the replica number; env names the controller sets are refused', async (t) => {
  t.same(paths(() => validateDeployment(minimal({ name: 'x'.repeat(49) }))), ['name']);
  t.equal(validateDeployment(minimal({ name: 'x'.repeat(48) })).name.length, 48);
  t.same(paths(() => validateDeployment(minimal({ runtime: {
    variants: [{ arch: 'x86_64', image: 'r'.repeat(51), url: 'https://x.example/rt', sha256: SHA('b') }],
    env: { FEATHER_REPLICA: '3', 'BAD-KEY': 'x' },
  } }))), ['runtime.variants[0].image', 'runtime.env.BAD-KEY']);
  t.same(paths(() => validateDeployment(minimal({ runtime: {
    variants: [{ arch: 'x86_64', image: 'rt', url: 'https://x.example/rt', sha256: SHA('b') }],
    env: { FEATHER_REPLICA: '3' },
  } }))), ['runtime.env.FEATHER_REPLICA']);
});

t.test('resources: memory as text or bytes, cpus in range, pids', async (t) => {
  t.same(validateDeployment(minimal({ resources: { memory: 268435456, cpus: '0.25' } })).resources, { memory: '268435456', cpus: 0.25, pids: 256 });
  t.same(validateDeployment(minimal({ resources: { memory: '1Gi', cpus: 2, pids: 64 } })).resources.pids, 64);
  t.same(paths(() => validateDeployment(minimal({ resources: { memory: '1Mi', cpus: 2000, pids: 0 } }))), ['resources.memory', 'resources.cpus', 'resources.pids']);
  t.same(paths(() => validateDeployment(minimal({ resources: undefined }))), ['resources']);
  t.same(paths(() => validateDeployment(minimal({ resources: {} }))), ['resources.memory', 'resources.cpus']);
});

t.test('rollout policy bounds', async (t) => {
  t.same(paths(() => validateDeployment(minimal({ rollout: { maxUnavailable: 0, canary: -1, failureThreshold: 0, pause: true } }))),
    ['rollout.pause', 'rollout.maxUnavailable', 'rollout.canary', 'rollout.failureThreshold']);
  t.same(validateDeployment(minimal({ rollout: { canary: 0 } })).rollout.canary, 0, 'no canary is allowed');
  t.same(paths(() => validateDeployment(minimal({ rollout: { minReadyS: -1 } }))), ['rollout.minReadyS'], 'minReadyS below 0');
  t.same(paths(() => validateDeployment(minimal({ rollout: { minReadyS: 3601 } }))), ['rollout.minReadyS'], 'minReadyS above an hour');
  t.same(paths(() => validateDeployment(minimal({ rollout: { minReadyS: '5s' } }))), ['rollout.minReadyS'], 'minReadyS is a number of seconds');
  t.equal(validateDeployment(minimal({ rollout: { minReadyS: 0 } })).rollout.minReadyS, 0, 'minReadyS 0: ready on the first running report');
  t.equal(validateDeployment(minimal({ rollout: { minReadyS: 2.5 } })).rollout.minReadyS, 2.5, 'fractions of a second');
});

t.test('YAML errors name the line; duplicate keys are refused', async (t) => {
  const bad = issuesOf(() => parseDeployment('name: det\nmodel: [\n'));
  t.equal(bad[0]?.path, '');
  t.match(bad[0]?.message, /YAML error at line \d+/);
  const dup = issuesOf(() => parseDeployment('name: a\nname: b\n'));
  t.match(dup[0]?.message, /YAML error at line 2/);
  t.match(issuesOf(() => parseDeployment('{"name": '))[0]?.message, /not valid JSON/);
  t.match(issuesOf(() => parseDeployment('- 1\n- 2\n'))[0]?.message, /must be a mapping, got a list/);
  t.match(issuesOf(() => parseDeployment(''))[0]?.message, /holds 0 deployments/);
  t.match(issuesOf(() => parseDeployment('x'.repeat(1024 * 1024 + 1)))[0]?.message, /more than the 1048576 accepted/);
});

t.test('several deployments in one file: YAML documents or a JSON array', async (t) => {
  const two = `${FULL}\n---\n${FULL.replace('name: detector', 'name: detector2')}\n---\n# trailing comment only\n`;
  t.same(parseDeployments(two).map((s) => s.name), ['detector', 'detector2']);
  t.same(parseDeployments(JSON.stringify([minimal(), minimal({ name: 'other' })])).map((s) => s.name), ['det', 'other']);
  t.same(paths(() => parseDeployments(JSON.stringify([minimal(), minimal({ replicas: 'x' })]))), ['[1].replicas']);
  t.same(paths(() => parseDeployments(JSON.stringify([minimal(), minimal()]))), ['[1].name']);
  t.match(issuesOf(() => parseDeployment(two))[0]?.message, /holds 2 deployments/);
});

t.test('buildHook passes through as a string', async (t) => {
  t.equal(validateDeployment(minimal({ buildHook: './quantize.sh' })).buildHook, './quantize.sh');
  t.same(paths(() => validateDeployment(minimal({ buildHook: 3 }))), ['buildHook']);
});

t.test('runtime layers: per variant, topmost first, checked like the agent checks them', async (t) => {
  const s = parseDeployment(FULL);
  t.same(s.runtime.variants[1]?.layers, [{ name: 'onnxruntime', url: 'https://images.example/ort-1.18-amd64.tar.gz', sha256: SHA('f') }], 'from the YAML example');
  t.notOk('layers' in (s.runtime.variants[0] ?? {}), 'a variant without layers has no layers field');
  const rt = (layers: unknown): Record<string, unknown> => minimal({ runtime: { variants: [{ arch: 'x86_64', image: 'rt', url: 'https://x.example/rt.tar.gz', sha256: SHA('b'), layers }] } });
  const two = [{ name: 'model', url: 'https://x.example/model.tar.gz', sha256: `sha256:${'C'.repeat(64)}` }, { name: 'ort', url: 'file:///srv/ort.tar.gz', sha256: SHA('d') }];
  t.same(validateDeployment(rt(two)).runtime.variants[0]?.layers, [{ name: 'model', url: 'https://x.example/model.tar.gz', sha256: SHA('c') }, { name: 'ort', url: 'file:///srv/ort.tar.gz', sha256: SHA('d') }]);
  t.notOk('layers' in (validateDeployment(rt([])).runtime.variants[0] ?? {}), 'an empty list is no layers');
  t.same(paths(() => validateDeployment(rt([
    { name: 'a', url: 'ftp://x', sha256: SHA('c') },
    { url: 'https://x.example/b', sha256: SHA('d') },
    { name: '../c', url: 'https://x.example/c', sha256: SHA('e') },
    { name: 'd', url: 'https://x.example/d', sha256: 'abc', size: 3 },
    'not a mapping',
  ]))), ['runtime.variants[0].layers[0].url', 'runtime.variants[0].layers[1].name', 'runtime.variants[0].layers[2].name',
    'runtime.variants[0].layers[3].size', 'runtime.variants[0].layers[3].sha256', 'runtime.variants[0].layers[4]']);
  const dup = issuesOf(() => validateDeployment(rt([{ name: 'a', url: 'https://x.example/a', sha256: SHA('c') }, { name: 'b', url: 'https://x.example/b', sha256: SHA('C') }])));
  t.match(dup, [{ path: 'runtime.variants[0].layers[1].sha256', message: /also the sha256 of runtime.variants\[0\].layers\[0\]/ }]);
  const itself = issuesOf(() => validateDeployment(rt([{ name: 'a', url: 'https://x.example/a', sha256: SHA('b') }])));
  t.match(itself, [{ path: 'runtime.variants[0].layers[0].sha256', message: /own image/ }]);
  t.same(paths(() => validateDeployment(rt(Array.from({ length: 17 }, (_, i) => ({ name: `l${i}`, url: 'https://x.example/l', sha256: i.toString(16).padStart(64, '1') }))))),
    ['runtime.variants[0].layers']);
  t.same(paths(() => validateDeployment(rt({ name: 'a' }))), ['runtime.variants[0].layers']);
});
