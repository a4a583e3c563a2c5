// Writes a tarball from a list of entries (headers encoded by node-tar's Header and Pax),
// gzipped by default, hashed while it is written, fsynced and renamed into place. Recipes use
// it to build images with exact ownership and modes whatever the host's files say, and tests
// use it to build archives a well-behaved packer would never produce.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { Header, Pax, type HeaderData } from 'tar';
import { FeatherError } from '../../shared/errors.js';
import { fsyncPath, renameDurable, tempName } from '../../shared/fs-durable.js';

interface Owned {
  path: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
}

export type TarEntrySpec =
  | (Owned & { type: 'dir' })
  | (Owned & { type: 'file'; data: Buffer | string })
  | (Owned & { type: 'file'; source: string })
  | (Owned & { type: 'symlink'; target: string })
  | (Owned & { type: 'hardlink'; target: string })
  | (Owned & { type: 'chardev' | 'blockdev'; major: number; minor: number })
  | (Owned & { type: 'fifo' });

export interface TarWriteOptions {
  /** gzip the tarball (default true). */
  gzip?: boolean;
  /** mtime of entries that do not set one (default: the epoch, for reproducible output). */
  mtime?: Date;
}

const BLOCK = 512;
const TYPE_NAME = {
  dir: 'Directory', file: 'File', symlink: 'SymbolicLink', hardlink: 'Link',
  chardev: 'CharacterDevice', blockdev: 'BlockDevice', fifo: 'FIFO',
} as const;

function headerBlocks(data: HeaderData): Buffer[] {
  const block = Buffer.alloc(BLOCK);
  const needPax = new Header(data).encode(block, 0);
  if (!needPax) return [block];
  const pax = new Pax({ path: data.path, linkpath: data.linkpath, size: data.size, mtime: data.mtime, uid: data.uid, gid: data.gid }).encode();
  return [pax, block];
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

async function* tarStream(entries: Iterable<TarEntrySpec> | AsyncIterable<TarEntrySpec>, defaultMtime: Date): AsyncGenerator<Buffer> {
  for await (const e of entries) {
    const isDir = e.type === 'dir';
    const base: HeaderData = {
      path: isDir && !e.path.endsWith('/') ? `${e.path}/` : e.path,
      mode: e.mode ?? (isDir ? 0o755 : e.type === 'symlink' ? 0o777 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: e.mtime ?? defaultMtime,
      type: TYPE_NAME[e.type],
      size: 0,
      uname: e.uid === undefined || e.uid === 0 ? 'root' : '',
      gname: e.gid === undefined || e.gid === 0 ? 'root' : '',
    };
    if (e.type === 'symlink' || e.type === 'hardlink') base.linkpath = e.target;
    if (e.type === 'chardev' || e.type === 'blockdev') {
      base.devmaj = e.major;
      base.devmin = e.minor;
    }
    if (e.type === 'file' && 'data' in e) {
      const data = typeof e.data === 'string' ? Buffer.from(e.data) : e.data;
      yield* headerBlocks({ ...base, size: data.length });
      yield data;
      yield padding(data.length);
    } else if (e.type === 'file') {
      const size = (await stat(e.source)).size;
      yield* headerBlocks({ ...base, size });
      let sent = 0;
      for await (const chunk of createReadStream(e.source, { highWaterMark: 1 << 20 })) {
        const buf = chunk as Buffer;
        sent += buf.length;
        if (sent > size) break;
        yield buf;
      }
      if (sent !== size) throw new FeatherError('RUNTIME_ERROR', `${e.source} changed while it was being archived (${sent} bytes read, ${size} expected)`);
      yield padding(size);
    } else {
      yield* headerBlocks(base);
    }
  }
  yield Buffer.alloc(BLOCK * 2);
}

class Sha256Tap extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

/** Write `entries` as a tarball at `dest` (atomically); returns its sha256 and size. */
export async function writeTarball(
  dest: string,
  entries: Iterable<TarEntrySpec> | AsyncIterable<TarEntrySpec>,
  opts: TarWriteOptions = {},
): Promise<{ sha256: string; bytes: number }> {
  const tmp = join(dirname(dest), tempName(`.tarball`));
  const tap = new Sha256Tap();
  const source = Readable.from(tarStream(entries, opts.mtime ?? new Date(0)));
  try {
    if (opts.gzip === false) await pipeline(source, tap, createWriteStream(tmp, { flags: 'wx' }));
    else await pipeline(source, createGzip(), tap, createWriteStream(tmp, { flags: 'wx' }));
    await fsyncPath(tmp);
    await renameDurable(tmp, dest);
  } catch (e: unknown) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  return { sha256: tap.hash.digest('hex'), bytes: tap.bytes };
}
