import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveModelFile } from '../../runner/model-file.js';

t.test('which file of a model directory the runner loads', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'feather-model-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = (name: string, files: string[]): string => {
    const d = join(root, name);
    mkdirSync(d);
    for (const f of files) writeFileSync(join(d, f), 'x');
    return d;
  };
  t.equal(resolveModelFile(join(dir('a', ['model.onnx', 'other.onnx']), 'other.onnx')), join(root, 'a/other.onnx'), 'a file is taken as given');
  t.equal(resolveModelFile(dir('b', ['model.onnx', 'x.onnx'])), join(root, 'b/model.onnx'), 'model.onnx first');
  t.equal(resolveModelFile(dir('c', ['resnet.onnx', 'labels.txt'])), join(root, 'c/resnet.onnx'), 'else the only .onnx');
  const digest = 'a'.repeat(64);
  t.equal(resolveModelFile(dir('d', [digest])), join(root, 'd', digest), 'a model stored under its digest (pulled from /blobs/sha256/...)');
  t.throws(() => resolveModelFile(dir('e', ['a.onnx', 'b.onnx'])), /several \.onnx/);
  t.throws(() => resolveModelFile(dir('f', ['x.bin', 'y.bin'])), /no \.onnx/);
  t.throws(() => resolveModelFile(join(root, 'missing')), /does not exist/);
});
