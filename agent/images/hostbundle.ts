// The host bundle recipe's inputs: named host executables, the shared libraries `ldd` says
// they need, the dynamic loader, and every symlink on the way (so /lib -> usr/lib on a
// merged-/usr host is reproduced in the image, not flattened).
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, lstat, open, readlink } from 'node:fs/promises';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { FeatherError, messageOf } from '../../shared/errors.js';
import type { TarEntrySpec } from './tarwriter.js';

const execFileP = promisify(execFile);
const MAX_LINKS = 40;

/** Find an executable: a path as given, else the first match on PATH (plus the sbin dirs). */
export async function findExecutable(name: string, pathEnv = process.env['PATH'] ?? ''): Promise<string> {
  if (name.includes('/')) {
    const abs = resolve(name);
    try {
      await access(abs, constants.X_OK);
      return abs;
    } catch {
      throw new FeatherError('NOT_FOUND', `${abs} is not an executable file on this host`);
    }
  }
  const dirs = [...pathEnv.split(delimiter), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const dir of dirs.filter((d) => isAbsolute(d))) {
    const p = join(dir, name);
    try {
      await access(p, constants.X_OK);
      if ((await lstat(p)).isDirectory()) continue;
      return p;
    } catch { /* next */ }
  }
  throw new FeatherError('NOT_FOUND', `no executable "${name}" on this host's PATH; give its full path with --bin`);
}

/** Parse `ldd` output into the absolute paths of the libraries and loader it lists. */
export function parseLdd(output: string, bin: string): string[] {
  const paths: string[] = [];
  for (const line of output.split('\n')) {
    const t = line.trim();
    if (t === '') continue;
    if (/=>\s*not found/.test(t)) {
      throw new FeatherError('RUNTIME_ERROR', `${bin} needs ${t.split(/\s/)[0] ?? t}, which is not found on this host`);
    }
    const m = /=>\s*(\/\S+)/.exec(t) ?? /^(\/\S+)\s+\(0x/.exec(t);
    if (m?.[1] !== undefined) paths.push(m[1]);
  }
  return paths;
}

/** The libraries (and loader) a binary loads; [] for a static binary or a script. */
export async function sharedLibraries(bin: string): Promise<string[]> {
  try {
    const { stdout } = await execFileP('ldd', [bin], { encoding: 'utf8' });
    return parseLdd(stdout, bin);
  } catch (e: unknown) {
    const out = `${(e as { stdout?: string }).stdout ?? ''}${(e as { stderr?: string }).stderr ?? ''}`;
    if (/not a dynamic executable|statically linked/.test(out)) return [];
    if ((e as { code?: unknown }).code === 'ENOENT') {
      throw new FeatherError('RUNTIME_ERROR', 'ldd is not installed on this host (apt-get install libc-bin)');
    }
    throw new FeatherError('RUNTIME_ERROR', `ldd ${bin} failed: ${messageOf(e)}`);
  }
}

/** The interpreter named on a `#!` line, if the file is a script. */
export async function scriptInterpreter(file: string): Promise<string | undefined> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(256);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const head = buf.subarray(0, bytesRead).toString('latin1');
    if (!head.startsWith('#!')) return undefined;
    const interp = head.slice(2).split('\n')[0]?.trim().split(/\s+/)[0];
    return interp !== undefined && isAbsolute(interp) ? interp : undefined;
  } finally {
    await fh.close();
  }
}

/**
 * Add a host path to `acc` (keyed by archive path) the way it resolves on the host: each
 * directory on the way, each symlink met (as a symlink, then followed), and the file itself.
 */
export async function addHostPath(hostPath: string, acc: Map<string, TarEntrySpec>, hops = 0): Promise<void> {
  if (hops > MAX_LINKS) throw new FeatherError('RUNTIME_ERROR', `too many symlinks resolving ${hostPath}`);
  const parts = resolve(hostPath).split('/').filter((s) => s !== '');
  let cur = '';
  for (let i = 0; i < parts.length; i++) {
    const next = `${cur}/${parts[i] as string}`;
    const key = next.slice(1);
    const st = await lstat(next);
    if (st.isSymbolicLink()) {
      const target = await readlink(next);
      if (!acc.has(key)) acc.set(key, { type: 'symlink', path: key, target });
      const rest = parts.slice(i + 1).join('/');
      const resolved = resolve(dirname(next), target);
      return addHostPath(rest === '' ? resolved : `${resolved}/${rest}`, acc, hops + 1);
    }
    const last = i === parts.length - 1;
    if (st.isDirectory()) {
      if (!acc.has(key)) acc.set(key, { type: 'dir', path: key, mode: st.mode & 0o7777 });
    } else if (last && st.isFile()) {
      acc.set(key, { type: 'file', path: key, source: next, mode: st.mode & 0o7777 });
    } else {
      throw new FeatherError('RUNTIME_ERROR', `${next} is neither a directory, a regular file nor a symlink`);
    }
    cur = next;
  }
}

/** Top-level directories a merged-/usr host turns into symlinks (bin -> usr/bin, ...). */
const MERGED_USR_LINKS = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

/**
 * Entries for `bins` (names or paths), their interpreters, libraries and loader, plus the
 * host's top-level merged-/usr symlinks, so that /bin/sh exists when /usr/bin/sh was found.
 */
export async function hostBundleEntries(bins: string[]): Promise<TarEntrySpec[]> {
  const acc = new Map<string, TarEntrySpec>();
  for (const top of MERGED_USR_LINKS) {
    try {
      if ((await lstat(`/${top}`)).isSymbolicLink()) await addHostPath(`/${top}`, acc);
    } catch { /* not on this host */ }
  }
  const queue = [...bins];
  const seen = new Set<string>();
  while (queue.length > 0) {
    const name = queue.shift() as string;
    const bin = await findExecutable(name);
    if (seen.has(bin)) continue;
    seen.add(bin);
    await addHostPath(bin, acc);
    const interp = await scriptInterpreter(bin);
    if (interp !== undefined) queue.push(interp);
    for (const lib of await sharedLibraries(bin)) await addHostPath(lib, acc);
  }
  return [...acc.values()];
}
