// One daemon per data dir: a pid file created exclusively. A file left by a dead agent
// (SIGKILL, power cut) is taken over; one held by a live feather-agent is a CONFLICT.
import { openSync, writeSync, closeSync, readFileSync, unlinkSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { FeatherError, errnoCode } from '../../shared/errors.js';

function holder(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
    return cmdline.includes('daemon') ? pid : undefined;
  } catch {
    return undefined;
  }
}

export interface DaemonLock {
  release(): void;
}

export function acquireDaemonLock(path: string): DaemonLock {
  mkdirSync(dirname(path), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return {
        release() {
          try { if (holder(path) === process.pid) unlinkSync(path); } catch { /* already gone */ }
        },
      };
    } catch (e: unknown) {
      if (errnoCode(e) !== 'EEXIST') throw e;
      const pid = holder(path);
      if (pid !== undefined && pid !== process.pid) {
        throw new FeatherError('CONFLICT', `another feather-agent daemon (pid ${pid}) uses this data dir (${dirname(path)}); stop it or use another --data-dir`);
      }
      unlinkSync(path); // stale: its agent is gone
    }
  }
  throw new FeatherError('CONFLICT', `cannot take the daemon lock ${path}`);
}
