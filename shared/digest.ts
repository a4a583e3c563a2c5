// sha256 digests: the identity of every blob, tarball and extracted layer.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { FeatherError } from './errors.js';

const SHA256_RE = /^[0-9a-f]{64}$/;

export function isSha256(value: unknown): value is string {
  return typeof value === 'string' && SHA256_RE.test(value);
}

/** Accepts `HEX` or `sha256:HEX`, any case; returns lowercase hex or throws BAD_REQUEST. */
export function parseSha256(value: unknown, what = 'sha256'): string {
  const raw = typeof value === 'string' ? value.trim().toLowerCase().replace(/^sha256:/, '') : '';
  if (!SHA256_RE.test(raw)) {
    throw new FeatherError('BAD_REQUEST', `${what} ${JSON.stringify(value)} is not a sha256 digest: expected 64 hex digits`);
  }
  return raw;
}

/** sha256 and length of a file, streamed. */
export async function hashFile(path: string, signal?: AbortSignal): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { signal, highWaterMark: 1 << 20 })) {
    const buf = chunk as Buffer;
    hash.update(buf);
    bytes += buf.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** A short form for tables: the first 12 hex digits. */
export function shortSha(sha256: string): string {
  return sha256.slice(0, 12);
}
