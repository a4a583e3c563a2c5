// Removing a directory tree that may have filesystems mounted below it (image builds, extraction).
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Mount points at or below `dir` (from /proc/self/mountinfo), deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const root = resolve(dir);
  const found: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    // mountinfo escapes space, tab, newline and backslash as octal
    const mp = field.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === root || mp.startsWith(root + sep)) found.push(mp);
  }
  return found.sort((a, b) => b.length - a.length);
}

/**
 * Remove a tree. Anything mounted below it (a debootstrap that died with /proc mounted) is
 * unmounted first, so the removal never reaches into a host filesystem; if an unmount fails
 * the tree is left alone and the error is thrown.
 */
export async function removeTree(dir: string): Promise<void> {
  for (const mp of await mountsUnder(dir)) {
    await execFileP('umount', ['-l', mp]);
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 2 });
}
