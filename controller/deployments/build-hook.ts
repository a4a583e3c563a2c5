// Build hooks (docs/scheduling.md, "Build hooks"): a deployment may list model variants to build
// (`model.build: [{accelerator, precision}]`) with a `buildHook`, a shell command run on the
// controller that turns the base model into each of them (quantize, prune, compile with the
// user's own tools). On apply, before the spec is validated again and stored:
//
//   1. the base variant (the fp32 one, else the first) is read from the blob store when its
//      sha256 is stored there, else fetched over http(s) and verified against its sha256;
//   2. the hook runs once per variant to build: `sh -c HOOK` in a fresh temp dir with
//      FEATHER_MODEL_IN, FEATHER_MODEL_OUT, FEATHER_ACCELERATOR, FEATHER_PRECISION,
//      FEATHER_DEPLOYMENT (and PATH, HOME, LANG, TMPDIR: not the controller's own environment),
//      killed with its process group after the timeout;
//   3. the file it wrote is stored in the blob store (content-addressed, verified) and the variant
//      completed with its /blobs URL and sha256.
//
// A failing hook fails the apply (BAD_REQUEST naming the variant, the exit status and the last
// lines of its output); nothing is stored for the deployment. Results are cached by (base sha256,
// hook, accelerator, precision) in <blobs>/builds.json: applying the same file again builds
// nothing. Hooks run only when the controller enables them (FEATHER_CONTROLLER_BUILD_HOOKS=1):
// a deployment file is otherwise not a way to run commands on the controller.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { modelFileName } from '../../shared/protocol/model-file.js';
import { writeFileAtomic } from '../../shared/fs-durable.js';
import { errnoCode, FeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { blobPath } from '../blobs/http.js';
import type { BlobStore } from '../blobs/store.js';
import type { DeploymentSpec, ModelBuild, ModelVariant } from '../model/types.js';

export const DEFAULT_BUILD_TIMEOUT_MS = 10 * 60_000;
/** Output kept per hook run (the tail shows in the error). */
const OUTPUT_TAIL_BYTES = 16 * 1024;
const TAIL_LINES = 10;

export interface ModelBuilderOptions {
  blobs: BlobStore;
  /** False: a deployment that asks for a build is refused (BAD_REQUEST) and nothing runs. */
  enabled: boolean;
  timeoutMs?: number;
  logger?: Logger | undefined;
  /** For tests: where temp dirs go (default the OS temp dir). */
  tmpDir?: string;
}

interface CacheEntry { digest: string; size: number; builtAt: number }

export class ModelBuilder {
  private readonly timeoutMs: number;
  private readonly cacheFile: string;
  private cache: Record<string, CacheEntry> | undefined;
  /** Builds in progress by cache key: concurrent applies of one build run the hook once. */
  private readonly inflight = new Map<string, Promise<CacheEntry>>();
  private cacheChain: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: ModelBuilderOptions) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS;
    this.cacheFile = join(opts.blobs.root, 'builds.json');
  }

  /**
   * The spec with every `model.build` entry turned into a variant (url under `baseUrl`, the
   * controller's address as clients see it) and `model.build` removed; the spec itself when there
   * is nothing to build.
   */
  async complete<T extends DeploymentSpec>(spec: T, baseUrl: string): Promise<T> {
    const builds = spec.model.build ?? [];
    if (builds.length === 0) return spec;
    const hook = spec.buildHook;
    if (hook === undefined || hook.trim() === '') throw new FeatherError('BAD_REQUEST', `deployment ${spec.name}: model.build needs a buildHook (the command that builds each variant)`);
    if (!this.opts.enabled) {
      throw new FeatherError('BAD_REQUEST', `deployment ${spec.name} asks for model variants built by its buildHook, but build hooks are disabled on this controller; set FEATHER_CONTROLLER_BUILD_HOOKS=1 on the controller, or build the variants yourself and list them with url and sha256`);
    }
    const base = spec.model.variants.find((v) => v.precision === 'fp32') ?? spec.model.variants[0];
    if (base === undefined) throw new FeatherError('BAD_REQUEST', `deployment ${spec.name}: model.build needs a base variant (with url and sha256) in model.variants`);

    const work = await mkdtemp(join(this.opts.tmpDir ?? tmpdir(), 'feather-build-'));
    try {
      let input: string | undefined;
      const built: ModelVariant[] = [];
      const fileName = modelFileName(base.url);
      for (const [i, b] of builds.entries()) {
        const key = cacheKey(base.sha256, hook, b);
        let entry = await this.cached(key);
        if (entry === undefined) {
          input ??= await this.locateBase(spec.name, base, work);
          entry = await this.singleFlight(key, () => this.build(spec.name, hook, input as string, b, i, work, fileName));
        }
        const url = `${baseUrl.replace(/\/+$/, '')}${blobPath(entry.digest)}${fileName === 'model' ? '' : `/${fileName}`}`;
        built.push({ accelerator: b.accelerator, precision: b.precision, url, sha256: entry.digest });
      }
      const model: DeploymentSpec['model'] = { name: spec.model.name, variants: [...spec.model.variants, ...built] };
      return { ...spec, model };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** The base model as a local file: the blob store's copy, or a verified download into `work`. */
  private async locateBase(deployment: string, base: ModelVariant, work: string): Promise<string> {
    if ((await this.opts.blobs.stat(base.sha256)) !== undefined) return this.opts.blobs.path(base.sha256);
    let url: URL;
    try { url = new URL(base.url); } catch { throw new FeatherError('BAD_REQUEST', `deployment ${deployment}: the base model URL ${base.url} is not a URL`); }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new FeatherError('BAD_REQUEST', `deployment ${deployment}: the base model ${base.url} is not in the controller's blob store and is not an http(s) URL; push it first (featherctl push FILE --name NAME) and use the URL it prints`);
    }
    const file = join(work, 'base');
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (e: unknown) {
      throw new FeatherError('PULL_FAILED', `deployment ${deployment}: could not fetch the base model ${base.url} to build variants from: ${messageOf(e)}`);
    }
    if (!res.ok || res.body === null) {
      throw new FeatherError('PULL_FAILED', `deployment ${deployment}: fetching the base model ${base.url} answered HTTP ${res.status}; fix the URL or push the file to the controller`);
    }
    const hash = createHash('sha256');
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (chunk: Buffer) => hash.update(chunk));
    await pipeline(body, createWriteStream(file, { mode: 0o600 }));
    const actual = hash.digest('hex');
    if (actual !== base.sha256) {
      throw new FeatherError('CHECKSUM_MISMATCH', `deployment ${deployment}: the base model ${base.url} hashes to sha256:${actual}, not sha256:${base.sha256} as the file says; nothing was built`);
    }
    return file;
  }

  private async build(deployment: string, hook: string, input: string, b: ModelBuild, index: number, work: string, fileName: string): Promise<CacheEntry> {
    const what = `model.build[${index}] (${b.accelerator}/${b.precision})`;
    const dir = join(work, `build-${index}`);
    const outDir = join(dir, 'out');
    await mkdir(outDir, { recursive: true, mode: 0o700 });
    const output = join(outDir, fileName);
    const started = Date.now();
    const run = await runHook(hook, {
      cwd: dir,
      timeoutMs: this.timeoutMs,
      env: {
        PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin',
        HOME: dir,
        LANG: process.env['LANG'] ?? 'C.UTF-8',
        TMPDIR: dir,
        FEATHER_MODEL_IN: input,
        FEATHER_MODEL_OUT: output,
        FEATHER_ACCELERATOR: b.accelerator,
        FEATHER_PRECISION: b.precision,
        FEATHER_DEPLOYMENT: deployment,
      },
    });
    if (run.timedOut) {
      throw new FeatherError('BAD_REQUEST', `deployment ${deployment}: the build hook for ${what} ran longer than ${this.timeoutMs / 1000}s and was killed${tailOf(run)}; nothing was stored`);
    }
    if (run.code !== 0) {
      const status = run.code === null ? `was killed by ${run.signal ?? 'a signal'}` : `exited with status ${run.code}`;
      throw new FeatherError('BAD_REQUEST', `deployment ${deployment}: the build hook for ${what} ${status}${tailOf(run)}; nothing was stored`);
    }
    let size: number;
    try {
      const s = await stat(output);
      size = s.isFile() ? s.size : 0;
    } catch (e: unknown) {
      if (errnoCode(e) !== 'ENOENT') throw e;
      size = 0;
    }
    if (size === 0) {
      throw new FeatherError('BAD_REQUEST', `deployment ${deployment}: the build hook for ${what} exited 0 but wrote nothing to $FEATHER_MODEL_OUT (${output})${tailOf(run)}; nothing was stored`);
    }
    const digest = await hashFile(output);
    await this.opts.blobs.put(digest, createReadStream(output), { size });
    const entry: CacheEntry = { digest, size, builtAt: Date.now() };
    this.opts.logger?.info('deployments.variant_built', { deployment, accelerator: b.accelerator, precision: b.precision, digest, bytes: size, ms: Date.now() - started });
    return entry;
  }

  private singleFlight(key: string, fn: () => Promise<CacheEntry>): Promise<CacheEntry> {
    const running = this.inflight.get(key);
    if (running !== undefined) return running;
    const p = (async () => {
      try {
        const entry = await fn();
        await this.remember(key, entry);
        return entry;
      } finally {
        this.inflight.delete(key);
      }
    })();
    this.inflight.set(key, p);
    return p;
  }

  /** A cached build whose blob is still stored. */
  private async cached(key: string): Promise<CacheEntry | undefined> {
    const cache = await this.loadCache();
    const entry = cache[key];
    if (entry === undefined) return undefined;
    return (await this.opts.blobs.stat(entry.digest)) !== undefined ? entry : undefined;
  }

  private async loadCache(): Promise<Record<string, CacheEntry>> {
    if (this.cache !== undefined) return this.cache;
    let loaded: Record<string, CacheEntry> = {};
    try {
      const v = JSON.parse(await readFile(this.cacheFile, 'utf8')) as { builds?: unknown };
      if (typeof v.builds === 'object' && v.builds !== null && !Array.isArray(v.builds)) loaded = v.builds as Record<string, CacheEntry>;
    } catch (e: unknown) {
      if (errnoCode(e) !== 'ENOENT') this.opts.logger?.warn('deployments.build_cache_unreadable', { file: this.cacheFile, error: messageOf(e), action: 'variants are built again' });
    }
    this.cache ??= loaded;
    return this.cache;
  }

  private remember(key: string, entry: CacheEntry): Promise<void> {
    const run = async (): Promise<void> => {
      const cache = await this.loadCache();
      cache[key] = entry;
      await writeFileAtomic(this.cacheFile, `${JSON.stringify({ version: 1, builds: cache }, null, 2)}\n`, 0o644);
    };
    const next = this.cacheChain.then(run, run);
    this.cacheChain = next.catch(() => undefined);
    return next;
  }
}

/** The cache key of one build: base model, hook text, target. */
export function cacheKey(baseSha256: string, hook: string, b: ModelBuild): string {
  return createHash('sha256').update(JSON.stringify([baseSha256, hook, b.accelerator, b.precision])).digest('hex');
}

export interface HookRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/** `sh -c hook` in its own process group, killed (group and all) after `timeoutMs`. */
export function runHook(hook: string, opts: { cwd: string; env: Record<string, string>; timeoutMs: number }): Promise<HookRun> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', hook], { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    const keep = (s: string, d: Buffer): string => { const all = s + d.toString('utf8'); return all.length > OUTPUT_TAIL_BYTES ? all.slice(-OUTPUT_TAIL_BYTES) : all; };
    child.stdout.on('data', (d: Buffer) => { stdout = keep(stdout, d); });
    child.stderr.on('data', (d: Buffer) => { stderr = keep(stderr, d); });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
    }, opts.timeoutMs);
    child.once('error', (e) => { clearTimeout(timer); reject(new FeatherError('INTERNAL', `could not run the build hook with sh: ${messageOf(e)}`)); });
    child.once('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, timedOut, stdout, stderr }); });
  });
}

/** ": <last lines of stderr (or stdout)>", or "" when the hook printed nothing. */
function tailOf(run: HookRun): string {
  const text = (run.stderr.trim() !== '' ? run.stderr : run.stdout).trim();
  if (text === '') return '';
  const lines = text.split('\n').slice(-TAIL_LINES).join(' | ');
  return `; its last output: ${lines}`;
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
