// Small filesystem helpers for files that must survive a crash: fsync, atomic replace,
// free space, temp names that say which process made them. Used by the agent's image store and
// the controller's blob store alike.
import { randomBytes } from 'node:crypto';
import { open, rename, statfs, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** fsync a file or a directory by path (a directory fsync makes a rename in it durable). */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Rename, then fsync the destination's directory. */
export async function renameDurable(from: string, to: string): Promise<void> {
  await rename(from, to);
  await fsyncPath(dirname(to));
}

/** Write a whole file so that a reader sees the old content or the new, never a mix. */
export async function writeFileAtomic(path: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), tempName(`.${basename(path)}.tmp`));
  try {
    await writeFile(tmp, data, { mode, flag: 'wx' });
    await fsyncPath(tmp);
    await renameDurable(tmp, path);
  } catch (e: unknown) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/** Bytes an unprivileged writer can still use on the filesystem holding `path`. */
export async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

/** The filesystem's block size (space is allocated in these). */
export async function blockSize(path: string): Promise<number> {
  return (await statfs(path)).bsize;
}

/**
 * A temp name `<prefix>.<pid>.<8 hex>`: gc can tell whether the process that made it is alive.
 * The prefix may contain dots; the last two fields are fixed.
 */
export function tempName(prefix: string): string {
  return `${prefix}.${process.pid}.${randomBytes(4).toString('hex')}`;
}

const TEMP_RE = /^(.+)\.(\d+)\.([0-9a-f]{8})$/;

export function parseTempName(name: string): { prefix: string; pid: number } | undefined {
  const m = TEMP_RE.exec(name);
  if (!m) return undefined;
  return { prefix: m[1] as string, pid: Number(m[2]) };
}
