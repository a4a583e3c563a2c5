// The debian recipe: `debootstrap --variant=minbase` against the mirror the host's apt
// sources name (offline from the internet, online to the Debian mirror), packed with node-tar.
import { spawn } from 'node:child_process';
import { readFile, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { create as tarCreate } from 'tar';
import { FeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { hashFile } from '../../shared/digest.js';
import { removeTree } from './remove-tree.js';
import { findExecutable } from './hostbundle.js';

export interface AptSource {
  types: string[];
  uri: string;
  suites: string[];
  components: string[];
}

/** Parse one-line (`deb [opts] URI SUITE COMP...`) and deb822 (.sources) apt source files. */
export function parseAptSources(text: string, deb822: boolean): AptSource[] {
  const out: AptSource[] = [];
  if (!deb822) {
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').replace(/\[[^\]]*\]/, ' ').trim();
      const [type, uri, suite, ...components] = line.split(/\s+/);
      if ((type === 'deb' || type === 'deb-src') && uri !== undefined && suite !== undefined) {
        out.push({ types: [type], uri, suites: [suite], components });
      }
    }
    return out;
  }
  for (const para of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = '';
    for (const raw of para.split('\n')) {
      if (raw.startsWith('#')) continue;
      if (/^\s/.test(raw) && last !== '') {
        fields.set(last, `${fields.get(last) ?? ''} ${raw.trim()}`);
        continue;
      }
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(raw);
      if (m) {
        last = (m[1] as string).toLowerCase();
        fields.set(last, m[2] as string);
      }
    }
    if ((fields.get('enabled') ?? 'yes').trim().toLowerCase() === 'no') continue;
    const list = (k: string): string[] => (fields.get(k) ?? '').split(/\s+/).filter((s) => s !== '');
    for (const uri of list('uris')) out.push({ types: list('types'), uri, suites: list('suites'), components: list('components') });
  }
  return out;
}

/** The host's Debian mirror and release suite, from /etc/apt/sources.list{,.d/}. */
export async function hostMirror(root = '/'): Promise<{ mirror: string; suite: string } | undefined> {
  const sources: AptSource[] = [];
  const etc = join(root, 'etc/apt');
  const read = async (p: string, deb822: boolean): Promise<void> => {
    try {
      sources.push(...parseAptSources(await readFile(p, 'utf8'), deb822));
    } catch { /* absent */ }
  };
  await read(join(etc, 'sources.list'), false);
  let names: string[] = [];
  try {
    names = (await readdir(join(etc, 'sources.list.d'))).sort();
  } catch { /* absent */ }
  for (const n of names) {
    if (n.endsWith('.list')) await read(join(etc, 'sources.list.d', n), false);
    else if (n.endsWith('.sources')) await read(join(etc, 'sources.list.d', n), true);
  }
  for (const s of sources) {
    if (!s.types.includes('deb') || !/^https?:\/\//.test(s.uri)) continue;
    const suite = s.suites.find((x) => /^[a-z]+$/.test(x));
    if (suite !== undefined) return { mirror: s.uri, suite };
  }
  return undefined;
}

async function osCodename(): Promise<string | undefined> {
  try {
    return /^VERSION_CODENAME=(\S+)$/m.exec(await readFile('/etc/os-release', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

function run(cmd: string, args: string[], log: Logger, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], signal });
    let tail = '';
    const keep = (b: Buffer): void => {
      tail = (tail + b.toString()).slice(-4000);
    };
    child.stdout.on('data', (b: Buffer) => { keep(b); log.debug('debootstrap.output', { text: b.toString().trimEnd() }); });
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new FeatherError('RUNTIME_ERROR', `${cmd} exited with ${code}: ${tail.trim().split('\n').slice(-3).join(' | ')}`));
    });
  });
}

/** debootstrap into `workDir`, pack it as a .tar.gz at `dest`, remove `workDir`. */
export async function debianTarball(
  dest: string,
  opts: { workDir: string; mirror?: string | undefined; suite?: string | undefined; log: Logger; signal?: AbortSignal | undefined },
): Promise<{ sha256: string; bytes: number }> {
  let debootstrap: string;
  try {
    debootstrap = await findExecutable('debootstrap');
  } catch {
    throw new FeatherError('RUNTIME_ERROR', 'debootstrap is not installed: apt-get install debootstrap');
  }
  const host = await hostMirror();
  const mirror = opts.mirror ?? host?.mirror ?? 'http://deb.debian.org/debian';
  const suite = opts.suite ?? host?.suite ?? (await osCodename()) ?? 'bookworm';
  opts.log.info('debootstrap.start', { suite, mirror, dir: opts.workDir });
  try {
    await run(debootstrap, ['--variant=minbase', suite, opts.workDir, mirror], opts.log, opts.signal);
    const debs = join(opts.workDir, 'var/cache/apt/archives');
    for (const n of await readdir(debs).catch(() => [] as string[])) {
      if (n.endsWith('.deb')) await unlink(join(debs, n));
    }
    await tarCreate(
      {
        gzip: true,
        file: dest,
        cwd: opts.workDir,
        portable: false,
        // devices, fifos and sockets: the runtime provides /dev, and extraction skips them anyway
        filter: (_p, st) => !('isCharacterDevice' in st) || !(st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO() || st.isSocket()),
      },
      ['.'],
    );
    return await hashFile(dest);
  } catch (e: unknown) {
    throw e instanceof FeatherError ? e : new FeatherError('RUNTIME_ERROR', `debian recipe failed: ${messageOf(e)}`, undefined, { cause: e });
  } finally {
    await removeTree(opts.workDir);
  }
}
