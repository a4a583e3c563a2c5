// Image recipes that work without the internet: each writes a .tar.gz, hashes it, and imports
// it into the store (images/<name>.tar.gz plus its manifest record, source "recipe:<name>").
//   busybox  Debian's busybox-static: bin/busybox, an applet symlink per `busybox --list`
//   debian   debootstrap --variant=minbase against the host's Debian mirror (slow)
//   host     named host executables with the shared libraries ldd lists, and the loader
//   onnx     a runtime module layer: the host's node, the inference runner, onnxruntime-node
import { execFile } from 'node:child_process';
import { mkdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FeatherError, isFeatherError, messageOf, toFeatherError, type ErrorCode } from '../../shared/errors.js';
import { createLogger, type Logger } from '../../shared/logging.js';
import { validateName } from '../../shared/limits.js';
import { debianTarball } from './debootstrap.js';
import { tempName } from '../../shared/fs-durable.js';
import { hostBundleEntries, sharedLibraries } from './hostbundle.js';
import { onnxTarball } from './recipes/onnx.js';
import type { ImageInfo, ImageStore } from './store.js';
import { writeTarball, type TarEntrySpec } from './tarwriter.js';

const execFileP = promisify(execFile);

export const RECIPE_NAMES = ['busybox', 'debian', 'host', 'onnx'] as const;
export type RecipeName = (typeof RECIPE_NAMES)[number];

export interface RecipeInfo {
  name: RecipeName;
  description: string;
  /** Needs a Debian mirror (the host's apt sources). */
  needsMirror: boolean;
  /** Takes minutes rather than seconds. */
  slow: boolean;
}

const RECIPES: readonly RecipeInfo[] = [
  { name: 'busybox', description: "busybox from Debian's busybox-static, with its applet symlinks", needsMirror: false, slow: false },
  { name: 'debian', description: "Debian minbase by debootstrap from the host's apt mirror", needsMirror: true, slow: true },
  { name: 'host', description: 'named host executables (--bin) with their shared libraries and loader', needsMirror: false, slow: false },
  { name: 'onnx', description: "runtime module layer (stack over busybox): the host's node, the inference runner, onnxruntime-node", needsMirror: false, slow: false },
];

export function recipes(): RecipeInfo[] {
  return RECIPES.map((r) => ({ ...r }));
}

export function parseRecipe(name: string): RecipeName {
  if (!(RECIPE_NAMES as readonly string[]).includes(name)) {
    throw new FeatherError('BAD_REQUEST', `unknown recipe "${name}": choose one of ${RECIPE_NAMES.join(', ')} (feather-agent image recipes)`);
  }
  return name as RecipeName;
}

export interface RecipeOptions {
  /** Image name (default: the recipe's name). */
  name?: string | undefined;
  /** host: executables to bundle, names on PATH or paths (default sh, ls, cat). */
  bins?: string[] | undefined;
  /** busybox: the static busybox binary (default /bin/busybox or /usr/bin/busybox). */
  busybox?: string | undefined;
  /** debian: mirror URL and suite (default: the host's apt sources). */
  mirror?: string | undefined;
  suite?: string | undefined;
  signal?: AbortSignal | undefined;
}

export interface BuildResult extends ImageInfo {
  recipe: RecipeName;
  durationMs: number;
}

export type BuildAllResult =
  | { recipe: RecipeName; ok: true; image: BuildResult }
  | { recipe: RecipeName; ok: false; error: { code: ErrorCode; message: string } };

export const DEFAULT_HOST_BINS = ['sh', 'ls', 'cat'];

/** What every root filesystem here gets: the usual empty directories and a few /etc files. */
export function rootfsSkeleton(): TarEntrySpec[] {
  const dir = (path: string, mode = 0o755): TarEntrySpec => ({ type: 'dir', path, mode });
  const file = (path: string, data: string): TarEntrySpec => ({ type: 'file', path, data, mode: 0o644 });
  return [
    dir('.'), dir('etc'), dir('dev'), dir('proc', 0o555), dir('sys', 0o555), dir('tmp', 0o1777),
    dir('root', 0o700), dir('run'), dir('var'), dir('var/tmp', 0o1777),
    file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n'),
    file('etc/group', 'root:x:0:\nnogroup:x:65534:\n'),
    file('etc/hostname', 'feather\n'),
    file('etc/hosts', '127.0.0.1\tlocalhost\n::1\tlocalhost\n'),
  ];
}

async function findBusybox(explicit: string | undefined): Promise<string> {
  for (const p of explicit !== undefined ? [explicit] : ['/bin/busybox', '/usr/bin/busybox']) {
    try {
      if ((await stat(p)).isFile()) return p;
    } catch { /* next */ }
  }
  throw new FeatherError('RUNTIME_ERROR', 'busybox is not installed on this host: apt-get install busybox-static');
}

/** The busybox image: a static busybox, a symlink per applet in bin/, merged sbin and usr. */
export async function busyboxTarball(dest: string, opts: { busybox?: string | undefined } = {}): Promise<{ sha256: string; bytes: number }> {
  const bb = await findBusybox(opts.busybox);
  if ((await sharedLibraries(bb)).length > 0) {
    throw new FeatherError('RUNTIME_ERROR', `${bb} is dynamically linked and would not run in an image: apt-get install busybox-static`);
  }
  const { stdout } = await execFileP(bb, ['--list'], { encoding: 'utf8' });
  const applets = new Set(stdout.split('\n').map((s) => s.trim()).filter((s) => /^[A-Za-z0-9_.[\]-]+$/.test(s) && s !== 'busybox'));
  applets.add('sh');
  const entries: TarEntrySpec[] = [
    ...rootfsSkeleton(),
    { type: 'dir', path: 'bin' },
    { type: 'file', path: 'bin/busybox', source: bb, mode: 0o755 },
    ...[...applets].sort().map((a): TarEntrySpec => ({ type: 'symlink', path: `bin/${a}`, target: 'busybox' })),
    { type: 'symlink', path: 'sbin', target: 'bin' },
    { type: 'dir', path: 'usr' },
    { type: 'symlink', path: 'usr/bin', target: '../bin' },
    { type: 'symlink', path: 'usr/sbin', target: '../bin' },
  ];
  return writeTarball(dest, entries, { mtime: (await stat(bb)).mtime });
}

/** The host bundle: `bins` with their libraries, on the skeleton (bin/ and usr/ come from the host's layout). */
export async function hostTarball(dest: string, opts: { bins?: string[] | undefined } = {}): Promise<{ sha256: string; bytes: number }> {
  const bins = opts.bins !== undefined && opts.bins.length > 0 ? opts.bins : DEFAULT_HOST_BINS;
  const entries = [...rootfsSkeleton(), ...(await hostBundleEntries(bins))];
  return writeTarball(dest, entries);
}

export class RecipeBuilder {
  private readonly log: Logger;

  constructor(private readonly store: ImageStore, opts: { logger?: Logger } = {}) {
    this.log = opts.logger ?? createLogger('agent:images');
  }

  list(): RecipeInfo[] {
    return recipes();
  }

  /** Build `recipe` into a tarball under tmp/, import it as `opts.name`, remove the tarball. */
  async build(recipe: string, opts: RecipeOptions = {}): Promise<BuildResult> {
    const r = parseRecipe(recipe);
    const name = validateName('image', opts.name ?? r);
    const started = Date.now();
    const tmp = this.store.paths.tmp;
    await mkdir(tmp, { recursive: true });
    const out = join(tmp, tempName(`recipe-${r}`));
    try {
      let built: { sha256: string; bytes: number };
      if (r === 'busybox') built = await busyboxTarball(out, { busybox: opts.busybox });
      else if (r === 'host') built = await hostTarball(out, { bins: opts.bins });
      else if (r === 'onnx') built = await onnxTarball(out);
      else {
        built = await debianTarball(out, {
          workDir: join(tmp, tempName('debootstrap')), mirror: opts.mirror, suite: opts.suite, log: this.log, signal: opts.signal,
        });
      }
      const info = await this.store.import(out, { name, sha256: built.sha256, source: `recipe:${r}`, signal: opts.signal });
      this.log.info('image.built', { recipe: r, name, sha256: built.sha256, bytes: built.bytes, durationMs: Date.now() - started });
      return { ...info, recipe: r, durationMs: Date.now() - started };
    } catch (e: unknown) {
      throw isFeatherError(e) ? e : new FeatherError('RUNTIME_ERROR', `recipe ${r} failed: ${messageOf(e)}`, undefined, { cause: e });
    } finally {
      await unlink(out).catch(() => undefined);
    }
  }

  /** Build every recipe (except `skip`), each under its own name; one failure does not stop the rest. */
  async buildAll(opts: Omit<RecipeOptions, 'name'> & { skip?: string[] } = {}): Promise<BuildAllResult[]> {
    const skip = new Set((opts.skip ?? []).map(parseRecipe));
    const results: BuildAllResult[] = [];
    for (const r of RECIPE_NAMES) {
      if (skip.has(r)) continue;
      try {
        results.push({ recipe: r, ok: true, image: await this.build(r, opts) });
      } catch (e: unknown) {
        const fe = toFeatherError(e);
        results.push({ recipe: r, ok: false, error: { code: fe.code, message: fe.message } });
      }
    }
    return results;
  }
}

/** Build one recipe into `store` (shorthand for `new RecipeBuilder(store).build(...)`). */
export function buildRecipe(store: ImageStore, recipe: string, opts: RecipeOptions = {}): Promise<BuildResult> {
  return new RecipeBuilder(store).build(recipe, opts);
}
