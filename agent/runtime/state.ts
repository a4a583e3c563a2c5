// The two files that describe a container on disk: config.json (written by the agent: what
// the container is) and state.json (written by feather-shim: whether and how it runs).
import { readFileSync, writeFileSync, renameSync, openSync, fsyncSync, closeSync, readdirSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { errnoCode, FeatherError } from '../../shared/errors.js';
import type { Limits } from '../../shared/limits.js';
import type { BindMount, ContainerInfo, DeviceNode } from './types.js';
import type { NetworkMode, RestartPolicy } from '../../shared/protocol/types.js';

export interface ContainerConfig {
  version: 1;
  name: string;
  image: string;
  imageSha256: string;
  /** Lower layer directories, topmost first. */
  lowers: string[];
  args: string[];
  env: Record<string, string>;
  limits: Limits;
  network: NetworkMode;
  restart: RestartPolicy;
  userns: { uid: number; gid: number; size: number } | undefined;
  /** The lowers are the cached layers as they are, shifted by idmapped mounts (else chowned copies). */
  idmap?: boolean;
  init: boolean;
  binds: BindMount[];
  devices: DeviceNode[];
  labels: Record<string, string>;
  createdAt: number;
  restarts: number;
}

export interface ShimState {
  version: number;
  status: 'running' | 'exited';
  pid: number;
  shimPid: number;
  startedAt: number;
  finishedAt?: number;
  exitCode?: number;
  signal?: number;
  oomKills?: number;
  /** Set by the agent when it had to record the end itself (supervisor killed). */
  reaped?: boolean;
}

/** Write a file so that readers see the old or the new content, never half of it. */
export function writeFileAtomic(path: string, data: string | Buffer): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  writeFileSync(tmp, data, { mode: 0o644 });
  const fd = openSync(tmp, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
  renameSync(tmp, path);
}

export function readJson<T>(path: string, what: string): T | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e: unknown) {
    if (errnoCode(e) === 'ENOENT') return undefined;
    throw e;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new FeatherError('RUNTIME_ERROR', `${what} ${path} is corrupt (not JSON); remove the container with feather-agent rm`);
  }
}

export function readConfig(path: string): ContainerConfig | undefined {
  return readJson<ContainerConfig>(path, 'container config');
}

export function readState(path: string): ShimState | undefined {
  // The shim renames its state into place, so a parse error means real corruption; treat it as unknown.
  try {
    return readJson<ShimState>(path, 'container state');
  } catch {
    return undefined;
  }
}

/** Whether a process exists and is a feather-shim (guards against pid reuse). */
export function isShimAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
    return cmdline.includes('feather-shim');
  } catch {
    return false;
  }
}

export function listContainerNames(containersDir: string): string[] {
  try {
    return readdirSync(containersDir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch (e: unknown) {
    if (errnoCode(e) === 'ENOENT') return [];
    throw e;
  }
}

/** What ps and container.list show of a container. */
export function containerInfo(config: ContainerConfig, state: ShimState | undefined): ContainerInfo {
  return {
    name: config.name,
    image: config.image,
    imageSha256: config.imageSha256,
    status: state ? state.status : 'created',
    pid: state?.status === 'running' ? state.pid : undefined,
    exitCode: state?.status === 'exited' ? state.exitCode : undefined,
    oomKilled: (state?.oomKills ?? 0) > 0,
    createdAt: config.createdAt,
    startedAt: state?.startedAt,
    finishedAt: state?.finishedAt,
    limits: config.limits,
    args: config.args,
    restart: config.restart,
    restarts: config.restarts,
    labels: config.labels,
  };
}

/**
 * Containers (by name) whose config names this image digest. An unreadable config counts as
 * none and is reported to `unreadable`.
 */
export function containersUsingImage(containersDir: string, sha256: string, unreadable?: (file: string, e: unknown) => void): string[] {
  return listContainerNames(containersDir).filter((name) => {
    const file = join(containersDir, name, 'config.json');
    try {
      return readConfig(file)?.imageSha256 === sha256;
    } catch (e: unknown) {
      unreadable?.(file, e);
      return false;
    }
  });
}
