// File access for the cgroup backends: a small seam (CgroupFs) so that unit tests can run the
// writers against a fake tree that behaves like the kernel, plus errors that name the file and errno.
import {
  closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, statSync, writeSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { FeatherError, errnoCode, messageOf } from '../../../shared/errors.js';

/** The operations the backends use. Every call is synchronous, like the CgroupManager interface. */
export interface CgroupFs {
  /** Non-recursive; fails with EEXIST when the directory exists. */
  mkdir(path: string): void;
  rmdir(path: string): void;
  read(path: string): string;
  /** One write(2) of the whole value to an existing file; never creates a file. */
  write(path: string, data: string): void;
  exists(path: string): boolean;
  isDir(path: string): boolean;
  /** Names of the subdirectories of a directory ([] when it is missing). */
  subdirs(path: string): string[];
}

export const nodeCgroupFs: CgroupFs = {
  mkdir: (path) => mkdirSync(path),
  rmdir: (path) => rmdirSync(path),
  read: (path) => readFileSync(path, 'utf8'),
  write: (path, data) => {
    // No O_CREAT: cgroupfs cannot create files, and a missing file must fail as ENOENT.
    // No O_TRUNC needed either; libuv adds O_CLOEXEC. The kernel parses one write(2) as one value.
    const fd = openSync(path, constants.O_WRONLY);
    try {
      const n = writeSync(fd, data);
      if (n !== Buffer.byteLength(data)) throw Object.assign(new Error(`short write to ${path}`), { code: 'EIO' });
    } finally {
      closeSync(fd);
    }
  },
  exists: (path) => existsSync(path),
  isDir: (path) => {
    try { return statSync(path).isDirectory(); } catch { return false; }
  },
  subdirs: (path) => {
    try {
      return readdirSync(path, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
    } catch (e: unknown) {
      if (errnoCode(e) === 'ENOENT') return [];
      throw e;
    }
  },
};

/** What an operator should do about an errno on a given cgroup file. */
function hint(op: 'write' | 'read' | 'create' | 'remove', file: string, errno: string | undefined): string {
  switch (errno) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied: run feather-agent as root, or delegate this cgroup subtree to its user';
    case 'EROFS':
      return 'the cgroup filesystem is mounted read-only: give the agent a writable /sys/fs/cgroup';
    case 'ENOENT':
      return op === 'write' || op === 'read'
        ? 'the file does not exist: the controller is not enabled for this cgroup (check cgroup.subtree_control or the v1 mounts)'
        : 'a parent directory is missing: is the cgroup hierarchy mounted?';
    case 'EBUSY':
      if (file === 'cgroup.subtree_control') {
        return 'the parent cgroup holds processes of its own (cgroup v2 "no internal processes" rule): move them into a leaf cgroup first';
      }
      if (op === 'remove') return 'processes are still in it: stop the container first';
      return 'the cgroup is in use: usage may be above the new limit';
    case 'EINVAL':
      if (file === 'cgroup.subtree_control') return 'the controller is not available in the parent (see its cgroup.controllers)';
      if (file.startsWith('cpuset.')) return 'the cores or memory nodes are not in the parent\'s cpuset (see cpuset.cpus.effective / cpuset.effective_cpus)';
      if (file.startsWith('memory.')) return 'the kernel refused the value: below current usage, or memsw below the memory limit';
      return 'the kernel refused the value: check the limit is within what the host allows';
    case 'ERANGE':
      return file.startsWith('cpuset.')
        ? 'no such cores or memory nodes on this host (see /sys/devices/system/cpu/online and /sys/devices/system/node/online)'
        : 'the value is out of the range the kernel accepts';
    case 'ENOSPC':
      return file.startsWith('cpuset.') || file === 'cgroup.procs'
        ? 'the cgroup has no cpus or mems to run on: set cpuset.cpus and cpuset.mems first'
        : 'a kernel limit was reached';
    case 'EAGAIN':
      return 'the kernel limit on cgroups (cgroup.max.descendants) was reached: remove unused cgroups';
    case 'EISDIR':
      return 'expected a cgroup file but found a directory: the hierarchy is not a cgroup filesystem';
    default:
      return 'check the cgroup mounts (/proc/self/mountinfo) and the kernel log';
  }
}

/** A RUNTIME_ERROR that names the file, the errno and what to do. */
export function cgroupError(op: 'write' | 'read' | 'create' | 'remove', path: string, e: unknown, value?: string): FeatherError {
  const errno = errnoCode(e);
  const what = op === 'write' ? `cannot write ${JSON.stringify(value?.trim())} to ${basename(path)}`
    : op === 'read' ? `cannot read ${basename(path)}`
      : op === 'create' ? 'cannot create cgroup' : 'cannot remove cgroup';
  const why = errno ?? messageOf(e);
  return new FeatherError('RUNTIME_ERROR', `${what} (${path}): ${why}: ${hint(op, basename(path), errno)}`, { path, errno }, { cause: e });
}

export function writeFile(fs: CgroupFs, dir: string, file: string, value: string): void {
  const path = join(dir, file);
  try {
    fs.write(path, value);
  } catch (e: unknown) {
    throw cgroupError('write', path, e, value);
  }
}

export function readFile(fs: CgroupFs, dir: string, file: string): string {
  const path = join(dir, file);
  try {
    return fs.read(path);
  } catch (e: unknown) {
    throw cgroupError('read', path, e);
  }
}

/** The file's text, or undefined when it does not exist (a controller that is not there). */
export function readOptional(fs: CgroupFs, dir: string, file: string): string | undefined {
  const path = join(dir, file);
  if (!fs.exists(path)) return undefined;
  return readFile(fs, dir, file).trim();
}

/** A whole number from a one-value file; "max" and absent give undefined. */
export function readNumber(fs: CgroupFs, dir: string, file: string): number | undefined {
  const text = readOptional(fs, dir, file);
  if (text === undefined || text === '' || text === 'max') return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/** One field of a "key value" file (cpu.stat, memory.events, memory.oom_control). */
export function readKeyed(fs: CgroupFs, dir: string, file: string, key: string): number | undefined {
  const text = readOptional(fs, dir, file);
  if (text === undefined) return undefined;
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k === key && v !== undefined) {
      const n = Number(v);
      return Number.isFinite(n) ? n : undefined;
    }
  }
  return undefined;
}

/** mkdir that tolerates an existing directory (for the shared feather/ parents). Returns true when made. */
export function ensureDir(fs: CgroupFs, path: string): boolean {
  try {
    fs.mkdir(path);
    return true;
  } catch (e: unknown) {
    if (errnoCode(e) === 'EEXIST') return false;
    throw cgroupError('create', path, e);
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * rmdir a cgroup; a missing one is fine. EBUSY (the last process is still exiting) is retried for
 * up to busyRetryMs before it fails. Never kills anything.
 */
export function removeDir(fs: CgroupFs, path: string, busyRetryMs: number): void {
  const deadline = Date.now() + busyRetryMs;
  for (let delay = 10; ; delay = Math.min(delay * 2, 100)) {
    try {
      fs.rmdir(path);
      return;
    } catch (e: unknown) {
      const errno = errnoCode(e);
      if (errno === 'ENOENT') return;
      if (errno !== 'EBUSY' || Date.now() >= deadline) throw cgroupError('remove', path, e);
    }
    sleepSync(Math.min(delay, Math.max(1, deadline - Date.now())));
  }
}

/** Remove every directory, tolerating missing ones; throws one error listing those that stayed. */
export function removeAll(fs: CgroupFs, paths: readonly string[], busyRetryMs: number): void {
  const failures: FeatherError[] = [];
  for (const path of paths) {
    try {
      removeDir(fs, path, busyRetryMs);
    } catch (e: unknown) {
      failures.push(e instanceof FeatherError ? e : cgroupError('remove', path, e));
    }
  }
  const first = failures[0];
  if (first === undefined) return;
  if (failures.length === 1) throw first;
  throw new FeatherError('RUNTIME_ERROR', failures.map((f) => f.message).join('; '), { paths: failures.map((f) => f.details?.['path']) }, { cause: first });
}
