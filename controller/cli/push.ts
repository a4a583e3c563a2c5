// featherctl push FILE [--name NAME]: upload an image tarball or a model file to the controller's
// blob store and print its URL and sha256, ready for a deployment file:
//   url: http://controller:8080/blobs/sha256/<digest>
//   sha256: <digest>
// The file is hashed first; a blob the controller already has is not sent again (only named).
// The upload streams; the controller verifies the digest while writing and keeps nothing on a
// mismatch.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { hashFile } from '../../shared/digest.js';
import { errnoCode, FeatherError, messageOf } from '../../shared/errors.js';
import type { UploadReply } from '../blobs/http.js';
import { validateBlobName } from '../blobs/store.js';
import { expectPositionals, str } from './args.js';
import type { CommandRun } from './context.js';
import { print } from './fleet.js';
import { formatBytes } from './render.js';

export interface PushResult {
  name: string;
  sha256: string;
  size: number;
  url: string;
  /** False when the controller already had these bytes. */
  uploaded: boolean;
}

export const push: CommandRun = async (ctx) => {
  const [file] = expectPositionals(ctx.positionals, ['FILE'], 'featherctl push FILE [--name NAME]');
  const path = file as string;
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new FeatherError('BAD_REQUEST', `${path} is not a regular file`);
    size = s.size;
  } catch (e: unknown) {
    if (e instanceof FeatherError) throw e;
    throw new FeatherError('BAD_REQUEST', `cannot read ${path}: ${errnoCode(e) === 'ENOENT' ? 'no such file' : messageOf(e)}`);
  }
  const nameOpt = str(ctx.values, 'name');
  const name = nameOpt ?? basename(path);
  try {
    validateBlobName(name);
  } catch (e: unknown) {
    throw new FeatherError('BAD_REQUEST', `${messageOf(e)}${nameOpt === undefined ? '; give one with --name NAME' : ''}`);
  }
  const client = ctx.client();
  await client.get('/api/v1/info'); // a refused token is said before the upload starts
  const { sha256 } = await hashFile(path);
  const blob = `/blobs/sha256/${sha256}`;

  let result: PushResult;
  const head = await client.raw('HEAD', blob);
  if (head.status === 200 && Number(head.headers['content-length']) === size) {
    const named = await client.call<{ url: string }>('POST', `/api/v1/blobs/${sha256}/names`, { json: { name } });
    result = { name, sha256, size, url: named.url, uploaded: false };
  } else {
    const progress = ctx.stderrTTY && ctx.output === 'table';
    let shown = -1;
    const onSent = (bytes: number): void => {
      const pct = size === 0 ? 100 : Math.floor((bytes / size) * 100);
      if (!progress || pct === shown) return;
      shown = pct;
      process.stderr.write(`\rpushing ${name}: ${pct}% (${formatBytes(bytes)} of ${formatBytes(size)})`);
    };
    const r = await client.raw('PUT', blob, { query: { name }, stream: createReadStream(path), length: size, onSent, timeoutMs: 120_000 });
    if (progress) process.stderr.write('\n');
    if (r.status !== 200 && r.status !== 201) throw client.responseError(r, 'PUT', blob);
    const up = JSON.parse(r.body.toString('utf8')) as UploadReply;
    result = { name, sha256: up.digest, size: up.size, url: up.url, uploaded: up.created };
  }
  print(ctx, result, () => [
    `${result.uploaded ? 'pushed' : 'already stored:'} ${result.name} (${formatBytes(result.size)})`,
    `url: ${result.url}`,
    `sha256: ${result.sha256}`,
  ].join('\n'));
  return 0;
};
