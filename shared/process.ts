// Whether a process exists (EPERM: it exists but belongs to someone else).
import { errnoCode } from './errors.js';

export function isPidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e: unknown) {
    return errnoCode(e) === 'EPERM';
  }
}
