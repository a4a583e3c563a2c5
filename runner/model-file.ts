// Which file of a model path the runner loads.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from './options.js';

/** A file as given; a directory: its model.onnx, else its only *.onnx file, else its only file. */
export function resolveModelFile(path: string): string {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new UsageError(`model ${path} does not exist (bind-mount the model directory at /models/<name>, or pass --model)`);
  }
  if (st.isFile()) return path;
  if (!st.isDirectory()) throw new UsageError(`model ${path} is neither a file nor a directory`);
  const names = readdirSync(path);
  if (names.includes('model.onnx')) return join(path, 'model.onnx');
  const onnx = names.filter((n) => n.endsWith('.onnx'));
  if (onnx.length === 1) return join(path, onnx[0] as string);
  // A model pulled from a content-addressed URL (/blobs/sha256/<digest>) is stored under the digest.
  if (onnx.length === 0 && names.length === 1) return join(path, names[0] as string);
  throw new UsageError(`${path} holds ${onnx.length === 0 ? 'no' : 'several'} .onnx files and no model.onnx; pass --model FILE`);
}
