// The controller's content-addressed blob store: images and models that agents pull from
// http://<controller>:8080/blobs/sha256/<digest> (docs/featherctl.md, "Blob store").
//
//   <dataDir>/blobs/sha256/<digest>   the blobs, read-only once written
//   <dataDir>/blobs/tmp/              uploads in progress (<digest>.<pid>.<random>)
//   <dataDir>/blobs/names.json        names given with `featherctl push --name` -> digest
//
// An upload streams into a temp file while it is hashed; only when the bytes hash to the digest
// in the URL is the file fsynced and renamed into place (then the directory is fsynced). A
// mismatch, an abort or a full disk removes the temp file: nothing is left behind.
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, readdir, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { isPidAlive } from '../../shared/process.js';
import { fsyncPath, freeBytes, parseTempName, renameDurable, tempName, writeFileAtomic } from '../../shared/fs-durable.js';
import { errnoCode, FeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';

const DIGEST_RE = /^[0-9a-f]{64}$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$/;
/** Left free on the disk after an upload of known size. */
const SPARE_BYTES = 64 * 1024 * 1024;

export interface BlobInfo {
  digest: string;
  size: number;
  createdAt: number;
}

export interface NamedBlob {
  name: string;
  digest: string;
  size: number;
  updatedAt: number;
}

export interface PutResult {
  info: BlobInfo;
  /** False when the blob was already there (the upload was verified and dropped). */
  created: boolean;
}

export function isDigest(v: string): boolean {
  return DIGEST_RE.test(v);
}

/** `HEX` or `sha256:HEX` -> lowercase hex; BAD_REQUEST otherwise. */
export function parseDigest(v: string): string {
  const d = v.trim().toLowerCase().replace(/^sha256:/, '');
  if (!DIGEST_RE.test(d)) throw new FeatherError('BAD_REQUEST', `"${v}" is not a sha256 digest: use 64 hex digits (sha256sum FILE)`);
  return d;
}

export function validateBlobName(name: string): string {
  if (!NAME_RE.test(name)) throw new FeatherError('BAD_REQUEST', `blob name "${name}" is invalid: use 1-128 letters, digits and _ . : @ + -, starting with a letter or digit`);
  return name;
}

export class BlobStore {
  readonly dir: string;
  readonly tmpDir: string;
  private readonly namesFile: string;
  /** Writes of names.json, one at a time. */
  private namesChain: Promise<unknown> = Promise.resolve();

  constructor(readonly root: string, private readonly logger?: Logger) {
    this.dir = join(root, 'sha256');
    this.tmpDir = join(root, 'tmp');
    this.namesFile = join(root, 'names.json');
  }

  /** Create the directories and remove uploads that dead processes left. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o755 });
    await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.tmpDir)) {
      const t = parseTempName(name);
      if (t !== undefined && isPidAlive(t.pid)) continue; // an upload in progress (another controller on this dir?)
      await rm(join(this.tmpDir, name), { force: true, recursive: true });
      this.logger?.info('blobs.temp_removed', { file: name });
    }
  }

  path(digest: string): string {
    return join(this.dir, parseDigest(digest));
  }

  async stat(digest: string): Promise<BlobInfo | undefined> {
    const d = parseDigest(digest);
    try {
      const s = await stat(join(this.dir, d));
      return s.isFile() ? { digest: d, size: s.size, createdAt: Math.round(s.mtimeMs) } : undefined;
    } catch (e: unknown) {
      if (errnoCode(e) === 'ENOENT') return undefined;
      throw e;
    }
  }

  /**
   * Store `source` as the blob `digest`. `size` (Content-Length), when known, is checked against
   * the free space first and against the bytes received. CHECKSUM_MISMATCH names both digests.
   */
  async put(digest: string, source: AsyncIterable<Buffer> & Partial<Pick<Readable, 'resume'>>, opts: { size?: number } = {}): Promise<PutResult> {
    const d = parseDigest(digest);
    const existing = await this.stat(d);
    if (existing !== undefined) {
      // Verify what was sent anyway: a client must learn that its bytes are not what it claims.
      const { sha256, bytes } = await hashStream(source);
      checkDigest(d, sha256, bytes, opts.size);
      return { info: existing, created: false };
    }
    if (opts.size !== undefined) {
      const free = await freeBytes(this.tmpDir);
      if (free < opts.size + SPARE_BYTES) {
        source.resume?.();
        throw new FeatherError('NO_SPACE', `the blob of ${opts.size} bytes does not fit: ${free} bytes free on the controller's disk (${SPARE_BYTES} kept spare); free space under ${this.root} and retry`);
      }
    }
    const tmp = join(this.tmpDir, tempName(d));
    const fh = await open(tmp, 'wx', 0o644);
    let closed = false;
    try {
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of source) {
        hash.update(chunk);
        bytes += chunk.length;
        if (opts.size !== undefined && bytes > opts.size) throw new FeatherError('BAD_REQUEST', `more bytes than the declared Content-Length of ${opts.size}`);
        await fh.write(chunk);
      }
      checkDigest(d, hash.digest('hex'), bytes, opts.size);
      await fh.sync();
      await fh.close();
      closed = true;
      await renameDurable(tmp, join(this.dir, d));
      const info = await this.stat(d);
      if (info === undefined) throw new FeatherError('INTERNAL', `blob ${d} vanished right after it was written`);
      this.logger?.info('blobs.stored', { digest: d, bytes });
      return { info, created: true };
    } catch (e: unknown) {
      if (!closed) await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      const code = errnoCode(e);
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        throw new FeatherError('NO_SPACE', `the controller's disk filled up while storing blob ${d}: free space under ${this.root} and retry`, undefined, { cause: e });
      }
      throw e;
    }
  }

  /** Remove a blob (and the names that point to it). */
  async remove(digest: string): Promise<boolean> {
    const d = parseDigest(digest);
    try {
      await unlink(join(this.dir, d));
    } catch (e: unknown) {
      if (errnoCode(e) === 'ENOENT') return false;
      throw e;
    }
    await fsyncPath(this.dir);
    await this.updateNames((names) => {
      for (const [k, v] of Object.entries(names)) if (v.digest === d) delete names[k];
    });
    this.logger?.info('blobs.removed', { digest: d });
    return true;
  }

  async list(): Promise<BlobInfo[]> {
    const out: BlobInfo[] = [];
    for (const name of await readdir(this.dir)) {
      if (!DIGEST_RE.test(name)) continue;
      const info = await this.stat(name);
      if (info !== undefined) out.push(info);
    }
    return out.sort((a, b) => a.createdAt - b.createdAt || (a.digest < b.digest ? -1 : 1));
  }

  // ---- names ---------------------------------------------------------------------------------

  /** Point `name` at a stored blob (a name moves when pushed again with other content). */
  async tag(name: string, digest: string): Promise<NamedBlob> {
    validateBlobName(name);
    const info = await this.stat(digest);
    if (info === undefined) throw new FeatherError('NOT_FOUND', `blob ${digest} is not stored; upload it first`);
    const entry = { digest: info.digest, size: info.size, updatedAt: Date.now() };
    await this.updateNames((names) => { names[name] = entry; });
    return { name, ...entry };
  }

  async names(): Promise<NamedBlob[]> {
    const names = await this.readNames();
    return Object.entries(names).map(([name, v]) => ({ name, ...v })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private async readNames(): Promise<Record<string, Omit<NamedBlob, 'name'>>> {
    let text: string;
    try {
      text = await readFile(this.namesFile, 'utf8');
    } catch (e: unknown) {
      if (errnoCode(e) === 'ENOENT') return {};
      throw e;
    }
    try {
      const v = JSON.parse(text) as { names?: unknown };
      if (typeof v.names === 'object' && v.names !== null && !Array.isArray(v.names)) return v.names as Record<string, Omit<NamedBlob, 'name'>>;
    } catch (e: unknown) {
      this.logger?.warn('blobs.names_unreadable', { file: this.namesFile, error: messageOf(e), action: 'names start empty; push again to name blobs' });
    }
    return {};
  }

  private updateNames(change: (names: Record<string, Omit<NamedBlob, 'name'>>) => void): Promise<void> {
    const run = async (): Promise<void> => {
      const names = await this.readNames();
      change(names);
      await writeFileAtomic(this.namesFile, `${JSON.stringify({ version: 1, names }, null, 2)}\n`, 0o644);
    };
    const next = this.namesChain.then(run, run);
    this.namesChain = next.catch(() => undefined);
    return next;
  }
}

async function hashStream(source: AsyncIterable<Buffer>): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of source) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

function checkDigest(expected: string, actual: string, bytes: number, size: number | undefined): void {
  if (size !== undefined && bytes !== size) {
    throw new FeatherError('BAD_REQUEST', `the upload ended after ${bytes} of the ${size} bytes announced; nothing was stored, upload again`);
  }
  if (actual !== expected) {
    throw new FeatherError('CHECKSUM_MISMATCH', `the ${bytes} bytes received hash to sha256:${actual}, not sha256:${expected} as the URL says; nothing was stored (check the file and the digest: sha256sum FILE)`);
  }
}
