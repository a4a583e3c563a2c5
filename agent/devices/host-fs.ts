// Read-only access to the host's /proc, /sys, /dev and /etc under a configurable root, so the
// inventory and device stats run against fake trees in tests (config hostRoot, default "/").
// Every read is forgiving: a missing or unreadable file is `undefined`, never an exception;
// hardware differs from board to board and a missing file is an answer, not an error.
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';

export class HostFs {
  constructor(readonly root: string = '/') {}

  /** The host path `p` (absolute, as on the host) under the root. */
  path(p: string): string {
    return join(this.root, p);
  }

  /** File contents, or undefined when it cannot be read. */
  read(p: string): string | undefined {
    try {
      return readFileSync(this.path(p), 'utf8');
    } catch {
      return undefined;
    }
  }

  /** First line, trimmed (sysfs attributes), or undefined. */
  line(p: string): string | undefined {
    const text = this.read(p);
    if (text === undefined) return undefined;
    return text.split('\n')[0]?.replace(/\0+$/, '').trim();
  }

  /** An integer attribute, or undefined. */
  int(p: string): number | undefined {
    const text = this.line(p);
    if (text === undefined || !/^-?\d+$/.test(text)) return undefined;
    return Number(text);
  }

  exists(p: string): boolean {
    return existsSync(this.path(p));
  }

  /** Entry names of a directory (sorted), [] when it cannot be read. */
  list(p: string, pattern?: RegExp): string[] {
    try {
      const names = readdirSync(this.path(p)).sort(naturalCompare);
      return pattern === undefined ? names : names.filter((n) => pattern.test(n));
    } catch {
      return [];
    }
  }

  /** The last path component a symlink points to (sysfs driver links), or undefined. */
  linkName(p: string): string | undefined {
    try {
      return basename(readlinkSync(this.path(p)));
    } catch {
      return undefined;
    }
  }
}

/** "thermal_zone2" < "thermal_zone10". */
export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
