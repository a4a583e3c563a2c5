// The test-model builder: the ONNX it writes loads in onnxruntime-node on this host and
// computes what a hand calculation (and a plain JavaScript forward pass) says.
import '../../runner/ort-env.js'; // no onnxruntime telemetry from tests either
import t from 'tap';
import ort from 'onnxruntime-node';
import { sessionOptions } from '../../runner/engine.js';
import { OPSET, buildMlp, heavyModel, mlpForward, randomFloats, sha256, tinyMlp, writeModel, type MlpSpec } from '../helpers/onnx-models.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const OPTS = sessionOptions({ threads: 1, spinning: false });

async function run(bytes: Buffer, x: Float32Array, dims: number[]): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(bytes, OPTS);
  try {
    const out = await session.run({ x: new ort.Tensor('float32', x, dims) });
    return out['y'] as ort.Tensor;
  } finally {
    await session.release();
  }
}

// x·W0 + b0 -> Relu -> ·W1 + b1, with weights small enough to follow by hand.
//   W0 = [[1, 2], [3, -1]] (rows: inputs), b0 = [0.5, -1]
//   W1 = [[2, -1], [0.25, 4]],             b1 = [1, -3]
const HAND: MlpSpec = {
  batch: 'N',
  layers: [
    { inputs: 2, outputs: 2, weights: Float32Array.from([1, 2, 3, -1]), bias: Float32Array.from([0.5, -1]) },
    { inputs: 2, outputs: 2, weights: Float32Array.from([2, -1, 0.25, 4]), bias: Float32Array.from([1, -3]) },
  ],
};

t.test('a hand-sized MLP computes what the hand calculation says, batch as a free dimension', async (t) => {
  const model = buildMlp(HAND);
  // row 1: x = [1, -2]:    pre = [1 - 6 + 0.5, 2 + 2 - 1] = [-4.5, 3] -> relu [0, 3]
  //                        y = [0·2 + 3·0.25 + 1, 0·(-1) + 3·4 - 3] = [1.75, 9]
  // row 2: x = [0.5, 0.5]: pre = [0.5 + 1.5 + 0.5, 1 - 0.5 - 1] = [2.5, -0.5] -> relu [2.5, 0]
  //                        y = [2.5·2 + 0 + 1, 2.5·(-1) + 0 - 3] = [6, -5.5]
  const y = await run(model.bytes, Float32Array.from([1, -2, 0.5, 0.5]), [2, 2]);
  t.same(y.dims, [2, 2]);
  t.same([...(y.data as Float32Array)], [1.75, 9, 6, -5.5]);
  t.same([...mlpForward(HAND, Float32Array.from([1, -2, 0.5, 0.5]), 2)], [1.75, 9, 6, -5.5], 'the JS reference agrees');

  const session = await ort.InferenceSession.create(model.bytes, OPTS);
  t.teardown(() => session.release());
  t.same(session.inputMetadata, [{ name: 'x', isTensor: true, type: 'float32', shape: ['N', 2] }]);
  t.same(session.outputMetadata, [{ name: 'y', isTensor: true, type: 'float32', shape: ['N', 2] }]);
});

t.test('the tiny MLP (4 -> 8 -> 3) matches the reference forward pass', async (t) => {
  const tiny = tinyMlp();
  t.equal(tiny.bytes.length < 1024, true, `tiny: ${tiny.bytes.length} bytes`);
  const session = await ort.InferenceSession.create(tiny.bytes, OPTS);
  t.teardown(() => session.release());
  t.same(session.inputMetadata, [{ name: 'x', isTensor: true, type: 'float32', shape: [1, 4] }]);
  for (let seed = 1; seed <= 5; seed++) {
    const x = randomFloats(4, seed * 31);
    const y = (await session.run({ x: new ort.Tensor('float32', x, [1, 4]) }))['y'] as ort.Tensor;
    const want = mlpForward(tiny.spec, x, 1);
    const got = y.data as Float32Array;
    t.ok(got.every((v, i) => Math.abs(v - (want[i] as number)) < 1e-5), `seed ${seed}: ${[...got].join(',')} ≈ ${[...want].join(',')}`);
  }
  t.equal(sha256(tinyMlp().bytes), sha256(tiny.bytes), 'the same seed builds the same bytes');
  t.not(sha256(tinyMlp(2).bytes), sha256(tiny.bytes));
});

t.test('the heavy model loads, runs and matches the reference', async (t) => {
  const heavy = heavyModel();
  t.equal(heavy.spec.layers.length, 6);
  t.ok(heavy.bytes.length > 6 * 512 * 512 * 4, 'float weights stored raw');
  const x = randomFloats(32 * 512, 9);
  const y = await run(heavy.bytes, x, [32, 512]);
  t.same(y.dims, [32, 512]);
  const want = mlpForward(heavy.spec, x, 32);
  const got = y.data as Float32Array;
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs((got[i] as number) - (want[i] as number)) / Math.max(1, Math.abs(want[i] as number)));
  t.ok(worst < 1e-3, `largest relative difference ${worst.toExponential(2)}`);
});

t.test('writeModel lays out <root>/<name>/model.onnx', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'feather-onnx-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const tiny = tinyMlp();
  const w = writeModel(root, 'tiny', tiny.bytes);
  t.equal(w.file, join(root, 'tiny', 'model.onnx'));
  t.same(readFileSync(w.file), tiny.bytes);
  t.equal(w.sha256, sha256(tiny.bytes));
  t.equal(OPSET >= 13, true);
});

t.test('a broken model is refused by the runtime', async (t) => {
  const bytes = Buffer.from(tinyMlp().bytes);
  await t.rejects(ort.InferenceSession.create(bytes.subarray(0, bytes.length >> 1), OPTS));
});
