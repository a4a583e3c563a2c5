// The `onnx` runtime module: an image layer meant to be stacked over a base (busybox), built
// offline from what this host has:
//   usr/local/bin/node                          the host's own Node binary
//   lib -> usr/lib, usr/lib/<triplet>/…         the shared libraries and loader ldd lists for
//                                               node and for every native addon below
//   usr/local/lib/feather-runner/package.json   {"type":"module"}
//   usr/local/lib/feather-runner/runner/*.js    the reference runner (dist/runner)
//   usr/local/lib/feather-runner/node_modules/  onnxruntime-node, onnxruntime-common, koffi and
//                                               its native package: runtime files only, native
//                                               binaries of this platform and arch only
//   usr/local/bin/feather-runner -> ../lib/feather-runner/runner/main.js
// It holds no top-level directory a base has (bin, etc, tmp, …), so that stacking it cannot hide
// or change the base's; only usr/ (merged) and the host's lib* links are at its top.
import { existsSync } from 'node:fs';
import { lstat, readFile, readdir, realpath } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FeatherError } from '../../../shared/errors.js';
import { addHostPath, sharedLibraries } from '../hostbundle.js';
import { writeTarball, type TarEntrySpec } from '../tarwriter.js';

export const RUNNER_PREFIX = 'usr/local/lib/feather-runner';
export const NODE_PATH = 'usr/local/bin/node';
export const RUNNER_MAIN = `${RUNNER_PREFIX}/runner/main.js`;

/** The packages the runner imports; their dependencies are followed. */
export const ROOT_PACKAGES = ['onnxruntime-node', 'koffi'] as const;

/**
 * Dependencies only an install script uses, left out: onnxruntime-node's postinstall (which
 * the project never runs: allowScripts false, and .npmrc onnxruntime-node-install=skip) needs
 * adm-zip and global-agent to fetch CUDA binaries; the runtime code requires neither.
 */
export const INSTALL_ONLY_PACKAGES: Readonly<Record<string, string>> = {
  'adm-zip': 'unzips the CUDA packages onnxruntime-node\'s postinstall downloads',
  'global-agent': 'proxy support for that download',
};

/** Files and directories of a package that only installing or building uses. */
const INSTALL_ONLY_PATHS: Readonly<Record<string, readonly string[]>> = {
  'onnxruntime-node': ['script/', 'lib/'],
  koffi: ['cnoke.cjs', 'doc/'],
};

const LICENSE = /^(licen[cs]e|notice|thirdpartynotices|copying)([._-].*)?$/i;
const RUNTIME_FILE = /\.(js|cjs|mjs|json|node)$|\.so(\.\d+)*$|\.dylib$|\.dll$/;
/** onnxruntime-node's layout: bin/napi-v<N>/<platform>/<arch>/… */
const NAPI_BIN = /^bin\/napi-v\d+\/([^/]+)\/([^/]+)\//;
/** koffi's native packages: <platform>_<arch>/koffi.node, musl_<arch>/ for musl. */
const KOFFI_BIN = /^([a-z]+)_([a-z0-9]+)\/koffi\.node$/;

export type Libc = 'glibc' | 'musl';

/** What the module is built for: the host's Node. */
export interface ModuleTarget {
  platform: string;
  arch: string;
  libc: Libc;
}

/**
 * Whether a package file (path relative to the package, '/'-separated) goes into the module:
 * runtime code, JSON, native binaries of the target platform, arch and libc, and licences; no
 * sources, type declarations, source maps, docs, or what only an install script uses.
 */
export function keepPackageFile(pkg: string, rel: string, target: ModuleTarget): boolean {
  if (rel.startsWith('node_modules/') || rel.includes('/node_modules/')) return false;
  for (const p of INSTALL_ONLY_PATHS[pkg] ?? []) if (p.endsWith('/') ? rel.startsWith(p) : rel === p) return false;
  const napi = NAPI_BIN.exec(rel);
  if (napi !== null && (napi[1] !== target.platform || napi[2] !== target.arch)) return false;
  const koffi = KOFFI_BIN.exec(rel);
  if (koffi !== null) {
    const wanted = target.libc === 'musl' ? 'musl' : target.platform;
    if (koffi[1] !== wanted || koffi[2] !== target.arch) return false;
  }
  const base = rel.slice(rel.lastIndexOf('/') + 1);
  if (LICENSE.test(base)) return true;
  if (base.endsWith('.map') || /\.d\.[cm]?ts$/.test(base)) return false;
  return RUNTIME_FILE.test(base);
}

interface PackageJson {
  name?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  os?: string[];
  cpu?: string[];
}

/** Node's lookup: <dir>/node_modules/<name>, then the same from each parent directory. */
export function findPackageDir(name: string, fromDir: string): string | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

/** npm's os/cpu fields: a leading "!" excludes. */
function matches(list: string[] | undefined, value: string): boolean {
  if (list === undefined || list.length === 0) return true;
  if (list.includes(`!${value}`)) return false;
  const positive = list.filter((v) => !v.startsWith('!'));
  return positive.length === 0 || positive.includes(value);
}

export interface ModulePackage { name: string; dir: string }

/** The packages to carry: the roots and their runtime dependencies, for this platform. */
export async function runtimePackages(fromDir: string, target: Pick<ModuleTarget, 'platform' | 'arch'>): Promise<ModulePackage[]> {
  const found = new Map<string, string>();
  const queue: { name: string; from: string; optional: boolean }[] = ROOT_PACKAGES.map((name) => ({ name, from: fromDir, optional: false }));
  while (queue.length > 0) {
    const { name, from, optional } = queue.shift() as { name: string; from: string; optional: boolean };
    if (name in INSTALL_ONLY_PACKAGES) continue;
    const dir = findPackageDir(name, from);
    if (dir === undefined) {
      if (optional) continue;
      throw new FeatherError('RUNTIME_ERROR', `package ${name} is not installed (looked up from ${from}); run npm ci in the feather-fleet package`);
    }
    const real = await realpath(dir);
    const known = found.get(name);
    if (known !== undefined) {
      if (known !== real) throw new FeatherError('RUNTIME_ERROR', `two copies of ${name} are needed (${known}, ${real}); the onnx module holds one of each package`);
      continue;
    }
    const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as PackageJson;
    if (!matches(pkg.os, target.platform) || !matches(pkg.cpu, target.arch)) {
      if (optional) continue;
      throw new FeatherError('RUNTIME_ERROR', `package ${name} does not support ${target.platform}/${target.arch}`);
    }
    found.set(name, real);
    for (const dep of Object.keys(pkg.dependencies ?? {})) queue.push({ name: dep, from: real, optional: false });
    for (const dep of Object.keys(pkg.optionalDependencies ?? {})) queue.push({ name: dep, from: real, optional: true });
  }
  return [...found].map(([name, dir]) => ({ name, dir })).sort((a, b) => a.name.localeCompare(b.name));
}

async function walk(root: string, rel = ''): Promise<{ rel: string; abs: string; mode: number }[]> {
  const out: { rel: string; abs: string; mode: number }[] = [];
  const entries = await readdir(join(root, rel), { withFileTypes: true });
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const r = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) {
      if (e.name !== 'node_modules') out.push(...(await walk(root, r)));
    } else if (e.isFile()) {
      out.push({ rel: r, abs: join(root, r), mode: (await lstat(join(root, r))).mode & 0o777 });
    }
  }
  return out;
}

/** The compiled runner: dist/runner beside the agent's sources, or beside its build. */
export function locateRunner(moduleUrl: string = import.meta.url): string {
  const up = fileURLToPath(new URL('../../../', moduleUrl));
  for (const dir of [join(up, 'runner'), join(up, 'dist', 'runner')]) {
    if (existsSync(join(dir, 'main.js'))) return dir;
  }
  throw new FeatherError('RUNTIME_ERROR', `the runner is not built (no runner/main.js under ${up} or ${join(up, 'dist')}); run npm run build`);
}

export interface OnnxModuleOptions {
  /** The Node binary to carry (default: this process's). */
  node?: string | undefined;
  /** The compiled runner directory (default: located beside this module). */
  runnerDir?: string | undefined;
}

export interface OnnxModuleContents {
  entries: TarEntrySpec[];
  packages: ModulePackage[];
  /** Host libraries carried, by host path. */
  libraries: string[];
}

/** Ensure a directory entry for `path` and each of its parents. */
function addDirs(path: string, acc: Map<string, TarEntrySpec>): void {
  const parts = path.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const p = parts.slice(0, i).join('/');
    if (!acc.has(p)) acc.set(p, { type: 'dir', path: p, mode: 0o755 });
  }
}

const TOP_LEVEL_ALLOWED = new Set(['usr', 'lib', 'lib32', 'lib64', 'libx32']);

export async function onnxModuleEntries(opts: OnnxModuleOptions = {}): Promise<OnnxModuleContents> {
  const node = await realpath(opts.node ?? process.execPath);
  const runnerDir = opts.runnerDir ?? locateRunner();
  const nodeLibs = await sharedLibraries(node);
  const target: ModuleTarget = {
    platform: process.platform,
    arch: process.arch,
    libc: nodeLibs.some((l) => /ld-musl|libc\.musl/.test(l)) ? 'musl' : 'glibc',
  };
  const acc = new Map<string, TarEntrySpec>([['.', { type: 'dir', path: '.', mode: 0o755 }]]);
  const natives: string[] = [node];

  addDirs('usr/local/bin', acc);
  acc.set(NODE_PATH, { type: 'file', path: NODE_PATH, source: node, mode: 0o755 });

  addDirs(`${RUNNER_PREFIX}/runner`, acc);
  acc.set(`${RUNNER_PREFIX}/package.json`, {
    type: 'file', path: `${RUNNER_PREFIX}/package.json`, mode: 0o644,
    data: `${JSON.stringify({ name: 'feather-runner', private: true, type: 'module' }, null, 2)}\n`,
  });
  const runnerFiles = (await walk(runnerDir)).filter((f) => f.rel.endsWith('.js') && !f.rel.includes('/'));
  if (!runnerFiles.some((f) => f.rel === 'main.js')) throw new FeatherError('RUNTIME_ERROR', `${runnerDir} has no main.js`);
  for (const f of runnerFiles) {
    const path = `${RUNNER_PREFIX}/runner/${f.rel}`;
    acc.set(path, { type: 'file', path, source: f.abs, mode: f.rel === 'main.js' ? 0o755 : 0o644 });
  }
  acc.set('usr/local/bin/feather-runner', { type: 'symlink', path: 'usr/local/bin/feather-runner', target: '../lib/feather-runner/runner/main.js' });

  const packages = await runtimePackages(runnerDir, target);
  for (const pkg of packages) {
    const base = `${RUNNER_PREFIX}/node_modules/${pkg.name}`;
    addDirs(base, acc);
    for (const f of await walk(pkg.dir)) {
      if (!keepPackageFile(pkg.name, f.rel, target)) continue;
      const path = `${base}/${f.rel}`;
      addDirs(dirname(path), acc);
      acc.set(path, { type: 'file', path, source: f.abs, mode: f.mode });
      if (f.rel.endsWith('.node') || /\.so(\.\d+)*$/.test(f.rel)) natives.push(f.abs);
    }
  }

  // Libraries of node and of every native addon, except those the packages carry themselves
  // (libonnxruntime.so.1 beside its binding, found through RUNPATH $ORIGIN).
  const inPackages = (p: string): boolean => packages.some((pkg) => p === pkg.dir || p.startsWith(pkg.dir + sep));
  const libraries = new Set<string>();
  for (const bin of natives) {
    for (const lib of await sharedLibraries(bin)) {
      if (!inPackages(await realpath(lib))) libraries.add(lib);
    }
  }
  for (const lib of [...libraries].sort()) await addHostPath(lib, acc);

  for (const key of acc.keys()) {
    const top = key.split('/')[0] as string;
    if (key !== '.' && !TOP_LEVEL_ALLOWED.has(top)) {
      throw new FeatherError('RUNTIME_ERROR', `the onnx module would hold /${key}, which would hide a base image's /${top}; it may only add under ${[...TOP_LEVEL_ALLOWED].join(', ')}`);
    }
  }
  return { entries: [...acc.values()], packages, libraries: [...libraries].sort() };
}

/** Write the module as a tarball (a layer; stack it over busybox). */
export async function onnxTarball(dest: string, opts: OnnxModuleOptions = {}): Promise<{ sha256: string; bytes: number }> {
  const { entries } = await onnxModuleEntries(opts);
  return writeTarball(dest, entries);
}

/** Paths inside a built module, for callers that run it (relative to the container's /). */
export function runnerCommand(args: string[]): string[] {
  return [`/${NODE_PATH}`, `/${RUNNER_MAIN}`, ...args];
}

