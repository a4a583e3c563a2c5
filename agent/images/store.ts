// The image store over the data dir (../../shared/DESIGN.md, "Agent data layout"):
// images/<name>.tar.gz as pulled, images/manifest.json, cache/<sha256>/ extracted once,
// models/<sha256>/ for model files, tmp/ for partial downloads and extractions in progress.
import { lstatSync, statSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FeatherError, errnoCode, messageOf, toFeatherError } from '../../shared/errors.js';
import { createLogger, type Logger } from '../../shared/logging.js';
import type { DataPaths } from '../paths.js';
import { validateName } from '../../shared/limits.js';
import { BlobFetcher, type FetchProgress, type FetchResult } from './blobs.js';
import { hashFile, isSha256, parseSha256 } from '../../shared/digest.js';
import { isPidAlive } from '../../shared/process.js';
import { parseTempName, tempName } from '../../shared/fs-durable.js';
import { modelFileName } from '../../shared/protocol/model-file.js';
import { removeTree } from './remove-tree.js';
import { LayerCache } from './extract.js';
import { Manifest, type ManifestEntry } from './manifest.js';
import { parseBlobUrl } from './sources.js';

export interface ImageInfo extends ManifestEntry {
  /** Whether cache/<sha256>/ holds the extracted layer. */
  cached: boolean;
}

export interface PullResult {
  name: string;
  sha256: string;
  bytes: number;
  durationMs: number;
}

export interface VerifyResult {
  name: string;
  ok: boolean;
  expected: string;
  /** The tarball's sha256 now; null when it could not be read. */
  actual: string | null;
  error?: string;
}

export interface GcResult {
  /** sha256 of the cache directories removed. */
  removedCache: string[];
  /** Names of the tmp/ (and images/) leftovers removed. */
  removedTmp: string[];
}

/** Which containers use an image, by sha256 (the runtime's config.json field imageSha256). */
export type InUseBy = (sha256: string) => string[] | Promise<string[]>;

export interface ImageStoreOptions {
  fetcher?: BlobFetcher;
  logger?: Logger;
}

const DAY_MS = 24 * 3600 * 1000;

export class ImageStore {
  readonly manifest: Manifest;
  private readonly fetcher: BlobFetcher;
  private readonly layers: LayerCache;
  private readonly log: Logger;

  constructor(readonly paths: DataPaths, opts: ImageStoreOptions = {}) {
    this.log = opts.logger ?? createLogger('agent:images');
    this.manifest = new Manifest(paths.manifest);
    this.fetcher = opts.fetcher ?? new BlobFetcher({ logger: this.log });
    this.layers = new LayerCache({ cache: paths.cache, tmp: paths.tmp }, this.log);
  }

  private info(e: ManifestEntry): ImageInfo {
    let cached = false;
    try {
      cached = statSync(this.paths.cacheDir(e.sha256)).isDirectory();
    } catch { /* not extracted */ }
    return { ...e, cached };
  }

  private require(name: string): ManifestEntry {
    const entry = this.manifest.get(validateName('image', name));
    if (!entry) throw new FeatherError('NOT_FOUND', `image "${name}" is not on this device; pull or import it first (feather-agent images lists what is here)`);
    return entry;
  }

  async list(): Promise<ImageInfo[]> {
    return this.manifest.read().map((e) => this.info(e));
  }

  /** The image's record, or undefined. Synchronous: the runtime looks images up this way. */
  get(name: string): ImageInfo | undefined {
    const entry = this.manifest.get(validateName('image', name));
    return entry ? this.info(entry) : undefined;
  }

  /** Copy a local tarball into images/<name>.tar.gz through the verified path. */
  async import(file: string, opts: { name: string; sha256?: string | undefined; source?: string; signal?: AbortSignal }): Promise<ImageInfo> {
    const name = validateName('image', opts.name);
    const abs = resolve(file);
    try {
      if (!(await stat(abs)).isFile()) throw new FeatherError('BAD_REQUEST', `${abs} is not a regular file`);
    } catch (e: unknown) {
      if (errnoCode(e) === 'ENOENT') throw new FeatherError('NOT_FOUND', `${abs} does not exist`);
      throw e;
    }
    const sha256 = opts.sha256 !== undefined ? parseSha256(opts.sha256) : (await hashFile(abs, opts.signal)).sha256;
    const url = pathToFileURL(abs).href;
    const r = await this.fetcher.fetchVerified({ url, sha256, dest: this.paths.imageTarball(name), tmpDir: this.paths.tmp, signal: opts.signal });
    const entry: ManifestEntry = { name, sha256, size: r.bytes, source: opts.source ?? url, pulledAt: new Date().toISOString() };
    await this.manifest.upsert(entry);
    this.log.info('image.imported', { name, sha256, bytes: r.bytes, source: entry.source });
    return this.info(entry);
  }

  /** Fetch `url` into images/<name>.tar.gz, verified against `sha256`. Present already: no transfer. */
  async pull(url: string, opts: { name: string; sha256: string; onProgress?: (p: FetchProgress) => void; signal?: AbortSignal }): Promise<PullResult> {
    const name = validateName('image', opts.name);
    const sha256 = parseSha256(opts.sha256);
    parseBlobUrl(url);
    const dest = this.paths.imageTarball(name);
    const current = this.manifest.get(name);
    if (current?.sha256 === sha256) {
      try {
        if ((await stat(dest)).size === current.size) return { name, sha256, bytes: current.size, durationMs: 0 };
      } catch { /* tarball gone: fetch it again */ }
    }
    let r: FetchResult;
    try {
      r = await this.fetcher.fetchVerified({ url, sha256, dest, tmpDir: this.paths.tmp, onProgress: opts.onProgress, signal: opts.signal });
    } catch (e: unknown) {
      const fe = toFeatherError(e);
      this.log.info('pull.failed', { name, url, sha256, code: fe.code, reason: fe.message });
      throw fe;
    }
    await this.manifest.upsert({ name, sha256, size: r.bytes, source: url, pulledAt: new Date().toISOString() });
    this.log.info('image.pulled', { name, sha256, bytes: r.bytes, durationMs: r.durationMs, resumedFrom: r.resumedFrom, attempts: r.attempts });
    return { name, sha256, bytes: r.bytes, durationMs: r.durationMs };
  }

  /** Absolute path of cache/<sha256>/ (the overlay lower layer), extracting it once if needed. */
  async ensureExtracted(name: string, signal?: AbortSignal): Promise<string> {
    const entry = this.require(name);
    const { path } = await this.layers.ensure(this.paths.imageTarball(entry.name), entry.sha256, signal);
    return path;
  }

  /** Remove an image; CONFLICT while a container uses it. Its cache goes when no other image shares it. */
  async remove(name: string, opts: { inUseBy: InUseBy }): Promise<void> {
    const entry = this.require(name);
    const users = await opts.inUseBy(entry.sha256);
    if (users.length > 0) {
      throw new FeatherError('CONFLICT', `image "${entry.name}" is used by container${users.length > 1 ? 's' : ''} ${users.join(', ')}; remove ${users.length > 1 ? 'them' : 'it'} first (feather-agent rm NAME)`);
    }
    await this.manifest.remove(entry.name);
    await unlink(this.paths.imageTarball(entry.name)).catch((e: unknown) => {
      if (errnoCode(e) !== 'ENOENT') throw e;
    });
    if (!this.manifest.read().some((e) => e.sha256 === entry.sha256)) await this.removeCache(entry.sha256);
    this.log.info('image.removed', { name: entry.name, sha256: entry.sha256 });
  }

  /** Recompute every tarball's sha256 against the manifest. */
  async verify(signal?: AbortSignal): Promise<VerifyResult[]> {
    const results: VerifyResult[] = [];
    for (const e of this.manifest.read()) {
      try {
        const { sha256 } = await hashFile(this.paths.imageTarball(e.name), signal);
        results.push({ name: e.name, ok: sha256 === e.sha256, expected: e.sha256, actual: sha256 });
      } catch (err: unknown) {
        results.push({ name: e.name, ok: false, expected: e.sha256, actual: null, error: errnoCode(err) === 'ENOENT' ? 'tarball missing' : messageOf(err) });
      }
    }
    return results;
  }

  /**
   * Remove cache directories no manifest entry references (and no container uses), and what
   * dead processes left in tmp/: extraction and copy temps, locks, partial downloads older than
   * `partialMaxAgeMs` (default one day; they are kept that long for a resume).
   */
  async gc(opts: { inUseBy?: InUseBy; partialMaxAgeMs?: number } = {}): Promise<GcResult> {
    const referenced = new Set(this.manifest.read().map((e) => e.sha256));
    const removedCache: string[] = [];
    const removedTmp: string[] = [];
    for (const name of await readdirOrEmpty(this.paths.cache)) {
      if (!isSha256(name) || referenced.has(name)) continue;
      if (opts.inUseBy && (await opts.inUseBy(name)).length > 0) continue;
      await this.removeCache(name);
      removedCache.push(name);
    }
    const maxAge = opts.partialMaxAgeMs ?? DAY_MS;
    for (const name of await readdirOrEmpty(this.paths.tmp)) {
      const p = join(this.paths.tmp, name);
      let stale = false;
      const lock = /^([0-9a-f]{64})\.lock$/.exec(name);
      const partial = /^([0-9a-f]{64})\.partial$/.exec(name);
      if (lock) {
        stale = !this.fetcher.inFlight(lock[1] as string) && !(await lockHolderAlive(p));
      } else if (partial) {
        const sha = partial[1] as string;
        const age = Date.now() - (await stat(p)).mtimeMs;
        stale = !this.fetcher.inFlight(sha) && !(await lockHolderAlive(join(this.paths.tmp, `${sha}.lock`))) && age >= maxAge;
      } else {
        const t = parseTempName(name);
        stale = t !== undefined && t.pid !== process.pid && !isPidAlive(t.pid);
      }
      if (stale) {
        await removeTree(p);
        removedTmp.push(name);
      }
    }
    for (const name of await readdirOrEmpty(this.paths.images)) {
      const t = name.startsWith('.') ? parseTempName(name) : undefined;
      if (t !== undefined && t.pid !== process.pid && !isPidAlive(t.pid)) {
        await unlink(join(this.paths.images, name)).catch(() => undefined);
        removedTmp.push(name);
      }
    }
    if (removedCache.length + removedTmp.length > 0) this.log.info('image.gc', { removedCache, removedTmp });
    return { removedCache, removedTmp };
  }

  /** models/<sha256>/ holding the verified model file (named after the URL's basename). */
  async ensureModel(url: string, sha256: string, opts: { onProgress?: (p: FetchProgress) => void; signal?: AbortSignal } = {}): Promise<string> {
    const sha = parseSha256(sha256);
    parseBlobUrl(url);
    const dir = this.paths.modelDir(sha);
    for (const name of await readdirOrEmpty(dir)) {
      if (!name.startsWith('.') && lstatSync(join(dir, name)).isFile()) return dir;
    }
    const dest = join(dir, modelFileName(url));
    await this.fetcher.fetchVerified({ url, sha256: sha, dest, tmpDir: this.paths.tmp, onProgress: opts.onProgress, signal: opts.signal });
    await chmod(dest, 0o444);
    this.log.info('model.pulled', { url, sha256: sha, path: dest });
    return dir;
  }

  /** Move cache/<sha256> aside first, so a half-removed layer is never taken for a whole one. */
  private async removeCache(sha256: string): Promise<void> {
    const trash = join(this.paths.tmp, tempName(`trash-${sha256}`));
    await mkdir(this.paths.tmp, { recursive: true });
    try {
      await rename(this.paths.cacheDir(sha256), trash);
    } catch (e: unknown) {
      if (errnoCode(e) === 'ENOENT') return;
      throw e;
    }
    await removeTree(trash);
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e: unknown) {
    if (errnoCode(e) === 'ENOENT') return [];
    throw e;
  }
}

async function lockHolderAlive(lockPath: string): Promise<boolean> {
  try {
    return isPidAlive(Number((await readFile(lockPath, 'utf8')).trim()));
  } catch {
    return false;
  }
}
