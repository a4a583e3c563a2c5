// Our rules for what an image archive may contain. Pure: it sees entries in archive order and
// keeps a model of the tree they build in a fresh, empty directory (nothing else writes there),
// so every decision is made before the tar library touches the disk.
//
// - paths: no absolute paths, no `..` components; the root itself may only be a directory;
// - symlinks are kept as they are (absolute targets are normal in a root filesystem: they
//   resolve inside the container), but nothing is ever written through one: an entry below a
//   symlink is refused, and an entry at a symlink's own path replaces the link (tar unlinks it);
// - hardlinks must name an earlier file of the archive, by a path that obeys the same rules
//   and does not pass through a symlink;
// - device nodes and fifos are skipped (the runtime provides /dev);
// - a non-directory may not replace a directory, nor be used as a directory;
// - every entry is charged against the space left; one that does not fit is refused.
import { formatBytes } from '../../shared/limits.js';

export type Kind = 'dir' | 'file' | 'symlink';

export interface PolicyEntry {
  path: string;
  type: string;
  linkpath?: string | undefined;
  size: number;
}

export type Verdict =
  | { action: 'extract'; key: string; kind: Kind; hardlink: boolean }
  | { action: 'skip'; reason: string }
  | { action: 'refuse'; code: 'BAD_REQUEST' | 'NO_SPACE'; message: string };

const DIR_TYPES = new Set(['Directory', 'GNUDumpDir']);
const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
const SKIP_TYPES = new Set(['CharacterDevice', 'BlockDevice', 'FIFO']);

function refuse(message: string, code: 'BAD_REQUEST' | 'NO_SPACE' = 'BAD_REQUEST'): Verdict {
  return { action: 'refuse', code, message };
}

/** Split an archive path into components, or say why it is not allowed. */
export function splitArchivePath(p: string): string[] | string {
  if (p.startsWith('/')) return 'is an absolute path';
  if (p.includes('\0')) return 'contains a NUL byte';
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) return "has a '..' component";
  return parts;
}

export class ArchivePolicy {
  private readonly tree = new Map<string, Kind>();
  private left: number;
  private readonly block: number;

  /** `spaceBytes`: what may be written; `blockSize`: the unit the filesystem allocates in. */
  constructor(opts: { spaceBytes: number; blockSize: number }) {
    this.left = Math.max(0, opts.spaceBytes);
    this.block = Math.max(1, opts.blockSize);
  }

  /** Space still available to entries, as charged so far. */
  get spaceLeft(): number {
    return this.left;
  }

  check(e: PolicyEntry): Verdict {
    const name = JSON.stringify(e.path);
    const parts = splitArchivePath(e.path);
    if (typeof parts === 'string') return refuse(`archive entry ${name} ${parts}`);
    const key = parts.join('/');

    if (SKIP_TYPES.has(e.type)) return { action: 'skip', reason: `${e.type} entries are not extracted (the runtime provides /dev)` };
    const isDir = DIR_TYPES.has(e.type);
    const isFile = FILE_TYPES.has(e.type);
    const isSymlink = e.type === 'SymbolicLink';
    const isHardlink = e.type === 'Link';
    if (!isDir && !isFile && !isSymlink && !isHardlink) return refuse(`archive entry ${name} has an unsupported type ${e.type}`);

    if (key === '') {
      return isDir ? { action: 'extract', key, kind: 'dir', hardlink: false } : refuse(`archive entry ${name} would replace the image root with a ${e.type}`);
    }
    const parentProblem = this.walkParents(parts, name, true);
    if (parentProblem) return parentProblem;
    const existing = this.tree.get(key);
    if (existing === 'dir' && !isDir) return refuse(`archive entry ${name} (${e.type}) would replace a directory`);

    let kind: Kind;
    let charge = 0;
    if (isDir) {
      kind = 'dir';
      if (existing !== 'dir') charge = this.block;
    } else if (isFile) {
      kind = 'file';
      charge = Math.ceil(Math.max(0, e.size) / this.block) * this.block;
    } else if (isSymlink) {
      kind = 'symlink';
      if (!e.linkpath) return refuse(`symlink ${name} has no target`);
    } else {
      const target = this.hardlinkTarget(e, name, key);
      if (typeof target !== 'string') return target;
      kind = this.tree.get(target) as Kind;
    }
    if (charge > this.left) {
      return refuse(`archive entry ${name} needs ${formatBytes(charge)} but only ${formatBytes(this.left)} is left`, 'NO_SPACE');
    }
    this.left -= charge;
    this.tree.set(key, kind);
    return { action: 'extract', key, kind, hardlink: isHardlink };
  }

  /** Every proper prefix must be a directory (or not exist yet: tar creates it). */
  private walkParents(parts: string[], name: string, create: boolean): Verdict | undefined {
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      const kind = this.tree.get(prefix);
      if (kind === 'symlink') return refuse(`archive entry ${name} would be written through the symlink "${prefix}"`);
      if (kind === 'file') return refuse(`archive entry ${name} needs "${prefix}" to be a directory, but it is a file`);
      if (kind === undefined && create) this.tree.set(prefix, 'dir');
    }
    return undefined;
  }

  private hardlinkTarget(e: PolicyEntry, name: string, key: string): string | Verdict {
    const raw = e.linkpath ?? '';
    const parts = splitArchivePath(raw);
    if (typeof parts === 'string' || parts.length === 0) {
      return refuse(`hardlink ${name} points outside the image (${JSON.stringify(raw)})`);
    }
    const target = parts.join('/');
    if (target === key) return refuse(`hardlink ${name} points to itself`);
    const parentProblem = this.walkParents(parts, `hardlink target ${JSON.stringify(raw)} of ${name}`, false);
    if (parentProblem) return parentProblem;
    const kind = this.tree.get(target);
    if (kind === undefined) return refuse(`hardlink ${name} points to ${JSON.stringify(raw)}, which is not an earlier entry of the archive`);
    if (kind === 'dir') return refuse(`hardlink ${name} points to the directory ${JSON.stringify(raw)}`);
    return target;
  }
}
