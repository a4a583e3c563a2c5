// Verified fetch of a content-addressed blob (file://, http://, https://).
//
// Bytes stream through sha256 into tmp/<sha256>.partial (same filesystem as the destination),
// are fsynced, verified, and only then renamed to the destination. So a wrong digest, a short
// read, a killed agent or a power cut never leave a file at the destination that was not
// verified. What a failed transfer received stays in the .partial file and the next attempt
// resumes it with an HTTP Range request; a resumed download that does not verify is fetched
// once more from byte 0 before CHECKSUM_MISMATCH is reported.
//
// Invariants:
// - one transfer per digest at a time: in this process through a SingleFlight (callers share
//   it), across processes through tmp/<sha256>.lock (the second process gets CONFLICT);
// - the .partial file's first `state.length` bytes are exactly what `state.hash` has seen;
// - NO_SPACE (checked before from the announced length, during from statfs and ENOSPC)
//   removes the partial; other failures keep it for a resume.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, truncate, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FeatherError, errnoCode, isFeatherError, messageOf } from '../../shared/errors.js';
import { createLogger, type Logger } from '../../shared/logging.js';
import { formatBytes } from '../../shared/limits.js';
import { parseSha256 } from '../../shared/digest.js';
import { isPidAlive } from '../../shared/process.js';
import { freeBytes, renameDurable, tempName } from '../../shared/fs-durable.js';
import { abortReason, SingleFlight } from './singleflight.js';
import { isTransientNetworkError, openSource, parseBlobUrl, RangeNotSatisfiable, TransientError } from './sources.js';

export interface FetchProgress {
  /** Bytes of the blob held so far (resumed bytes included). */
  bytes: number;
  /** The blob's length, when the source announced it. */
  total: number | undefined;
  /** Recent transfer rate, bytes per second. */
  rate: number;
}

export interface FetchRequest {
  url: string;
  sha256: string;
  /** Where the verified blob is renamed to. */
  dest: string;
  /** Partial downloads and locks live here; keep it on the filesystem of `dest`. */
  tmpDir: string;
  onProgress?: ((p: FetchProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface FetchResult {
  sha256: string;
  bytes: number;
  durationMs: number;
  /** Byte offset the transfer resumed from (0: from the start). */
  resumedFrom: number;
  /** Requests made (1 when nothing had to be retried). */
  attempts: number;
  /** Whether this call joined a transfer another caller had started. */
  shared: boolean;
}

export interface BlobFetcherOptions {
  /** A transfer that receives nothing for this long is aborted and retried. Default 30 s. */
  idleTimeoutMs?: number;
  /** Retries after a transient failure (reset, 5xx, stall, short read). Default 4. */
  retries?: number;
  /** Backoff before retry n: min(max, base * 2^n), with jitter. Defaults 500 ms and 10 s. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** statfs is consulted every this many bytes while writing. Default 8 MiB. */
  spaceCheckBytes?: number;
  /** Progress callbacks at most this often. Default 250 ms. */
  progressIntervalMs?: number;
  logger?: Logger;
}

interface Downloaded {
  path: string;
  bytes: number;
  resumedFrom: number;
  attempts: number;
}

interface HashState {
  hash: Hash;
  length: number;
}

function noSpace(dir: string, need: number, free: number): FeatherError {
  return new FeatherError(
    'NO_SPACE',
    `not enough space in ${dir}: ${formatBytes(need)} more needed, ${formatBytes(free)} free; free disk space (feather-agent image rm, gc) and retry`,
    { need, free },
  );
}

function isNoSpaceErrno(e: unknown): boolean {
  const code = errnoCode(e);
  return code === 'ENOSPC' || code === 'EDQUOT';
}

async function writeAll(fh: FileHandle, chunk: Buffer): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}

/** Hash what an earlier transfer left in `partial` (nothing there: an empty state). */
async function hashExisting(partial: string, signal: AbortSignal): Promise<HashState> {
  const hash = createHash('sha256');
  let length = 0;
  try {
    for await (const chunk of createReadStream(partial, { signal, highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer);
      length += (chunk as Buffer).length;
    }
  } catch (e: unknown) {
    if (errnoCode(e) !== 'ENOENT') throw e;
  }
  return { hash, length };
}

async function truncateTo(partial: string, length: number): Promise<void> {
  try {
    await truncate(partial, length);
  } catch (e: unknown) {
    if (errnoCode(e) !== 'ENOENT' || length > 0) throw e;
  }
}

async function discard(partial: string): Promise<HashState> {
  await unlink(partial).catch(() => undefined);
  return { hash: createHash('sha256'), length: 0 };
}

/** tmp/<sha256>.lock holds the pid of the process transferring that digest. */
async function acquireLock(path: string, sha256: string): Promise<() => Promise<void>> {
  for (let tries = 0; tries < 3; tries++) {
    try {
      const fh = await open(path, 'wx');
      try {
        await fh.writeFile(`${process.pid}\n`);
      } finally {
        await fh.close();
      }
      return async () => { await unlink(path).catch(() => undefined); };
    } catch (e: unknown) {
      if (errnoCode(e) !== 'EEXIST') throw e;
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (isPidAlive(pid)) {
        throw new FeatherError('CONFLICT', `another feather-agent process (pid ${pid}) is downloading sha256 ${sha256}; retry when it has finished`);
      }
      await unlink(path).catch(() => undefined); // left by a process that died
    }
  }
  throw new FeatherError('CONFLICT', `could not take the download lock ${path}; retry`);
}

/** Throttled progress with a smoothed rate; a suppressed update is emitted when the interval ends. */
class ProgressMeter {
  private lastAt = 0;
  private lastBytes = -1;
  private rate = 0;
  private pending: { bytes: number; total: number | undefined } | undefined;
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly emit: (p: FetchProgress) => void, private readonly intervalMs: number) {}

  update(bytes: number, total: number | undefined, final = false): void {
    const now = Date.now();
    if (this.lastBytes < 0 || bytes < this.lastBytes) {
      this.lastAt = now;
      this.lastBytes = bytes;
    }
    const dt = now - this.lastAt;
    if (!final && dt < this.intervalMs) {
      this.pending = { bytes, total };
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        if (this.pending) this.update(this.pending.bytes, this.pending.total, true);
      }, this.intervalMs - dt);
      return;
    }
    this.stop();
    if (dt > 0) {
      const inst = ((bytes - this.lastBytes) * 1000) / dt;
      this.rate = this.rate === 0 ? inst : 0.7 * this.rate + 0.3 * inst;
    }
    this.lastAt = now;
    this.lastBytes = bytes;
    this.emit({ bytes, total, rate: Math.round(this.rate) });
  }

  /** Drop a pending update (the transfer attempt is over). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }
}

/** Copy a local blob to `dest` through sha256 (temp file next to `dest`, fsync, verify, rename). */
export async function copyVerified(src: string, sha256: string, dest: string): Promise<void> {
  const tmp = join(dirname(dest), `.${tempName('copy')}`);
  const hash = createHash('sha256');
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      for await (const chunk of createReadStream(src, { highWaterMark: 1 << 20 })) {
        hash.update(chunk as Buffer);
        await writeAll(fh, chunk as Buffer);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    const actual = hash.digest('hex');
    if (actual !== sha256) {
      throw new FeatherError('CHECKSUM_MISMATCH', `${src} does not match its digest: expected sha256 ${sha256}, got ${actual}`, { expected: sha256, actual });
    }
    await renameDurable(tmp, dest);
  } catch (e: unknown) {
    await unlink(tmp).catch(() => undefined);
    throw isNoSpaceErrno(e) ? new FeatherError('NO_SPACE', `no space left to copy ${src} to ${dest}: ${messageOf(e)}`, undefined, { cause: e }) : e;
  }
}

export class BlobFetcher {
  private readonly flights = new SingleFlight<Downloaded>();
  private readonly listeners = new Map<string, Set<(p: FetchProgress) => void>>();
  private readonly log: Logger;
  private readonly idleTimeoutMs: number;
  private readonly retries: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly spaceCheckBytes: number;
  private readonly progressIntervalMs: number;

  /** Whether a transfer of this digest is running in this fetcher. */
  inFlight(sha256: string): boolean {
    return this.flights.inFlight(sha256);
  }

  constructor(opts: BlobFetcherOptions = {}) {
    this.log = opts.logger ?? createLogger('agent:images');
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 30_000;
    this.retries = opts.retries ?? 4;
    this.backoffBaseMs = opts.backoffBaseMs ?? 500;
    this.backoffMaxMs = opts.backoffMaxMs ?? 10_000;
    this.spaceCheckBytes = opts.spaceCheckBytes ?? 8 * 2 ** 20;
    this.progressIntervalMs = opts.progressIntervalMs ?? 250;
  }

  /** Fetch `url` to `dest`, verified against `sha256`. See the header of this file. */
  async fetchVerified(req: FetchRequest): Promise<FetchResult> {
    const sha256 = parseSha256(req.sha256);
    const url = parseBlobUrl(req.url);
    const dest = resolve(req.dest);
    const tmpDir = resolve(req.tmpDir);
    const started = Date.now();
    let set = this.listeners.get(sha256);
    if (!set) {
      set = new Set();
      this.listeners.set(sha256, set);
    }
    const onProgress = req.onProgress;
    if (onProgress) set.add(onProgress);
    try {
      const { value, shared } = await this.flights.run(sha256, (signal) => this.download(url, sha256, dest, tmpDir, signal), req.signal);
      if (value.path !== dest) await copyVerified(value.path, sha256, dest);
      return { sha256, bytes: value.bytes, durationMs: Date.now() - started, resumedFrom: value.resumedFrom, attempts: value.attempts, shared };
    } catch (e: unknown) {
      if (req.signal?.aborted && !isFeatherError(e)) {
        throw new FeatherError('PULL_FAILED', `pull of ${url.href} was cancelled`, undefined, { cause: e });
      }
      throw e;
    } finally {
      if (onProgress) set.delete(onProgress);
      if (set.size === 0 && !this.flights.inFlight(sha256)) this.listeners.delete(sha256);
    }
  }

  private emitter(sha256: string): (p: FetchProgress) => void {
    return (p) => {
      for (const cb of this.listeners.get(sha256) ?? []) {
        try {
          cb(p);
        } catch (e: unknown) {
          this.log.warn('pull.progress_listener_failed', { sha256, error: e });
        }
      }
    };
  }

  private async download(url: URL, sha256: string, dest: string, tmpDir: string, signal: AbortSignal): Promise<Downloaded> {
    await mkdir(tmpDir, { recursive: true });
    await mkdir(dirname(dest), { recursive: true });
    const release = await acquireLock(join(tmpDir, `${sha256}.lock`), sha256);
    try {
      return await this.transfer(url, sha256, dest, join(tmpDir, `${sha256}.partial`), signal);
    } finally {
      await release();
    }
  }

  private async transfer(url: URL, sha256: string, dest: string, partial: string, signal: AbortSignal): Promise<Downloaded> {
    const meter = new ProgressMeter(this.emitter(sha256), this.progressIntervalMs);
    let state: HashState | undefined;
    let resumedFrom = 0;
    let resumedThisRun = false;
    let freshTried = false;
    let transientFailures = 0;
    for (let attempts = 1; ; attempts++) {
      signal.throwIfAborted();
      try {
        if (!state) state = await hashExisting(partial, signal);
        else await truncateTo(partial, state.length); // drop a torn last write: the file holds exactly what was hashed
        if (state.length > 0) {
          resumedThisRun = true;
          if (resumedFrom === 0) resumedFrom = state.length;
        }
        await this.receive(url, partial, state, signal, meter);
        const actual = state.hash.copy().digest('hex');
        if (actual === sha256) {
          await this.publish(partial, sha256, dest);
          this.log.info('pull.verified', { url: url.href, sha256, bytes: state.length, attempts, resumedFrom });
          return { path: dest, bytes: state.length, resumedFrom, attempts };
        }
        if (resumedThisRun && !freshTried) {
          // The kept bytes may be what is wrong (a power cut can leave garbage): once more from 0.
          this.log.warn('pull.resumed_mismatch', { url: url.href, sha256, actual });
          state = await discard(partial);
          freshTried = true;
          resumedThisRun = false;
          continue;
        }
        const bytes = state.length;
        state = await discard(partial);
        throw new FeatherError(
          'CHECKSUM_MISMATCH',
          `${url.href} does not match its digest: expected sha256 ${sha256}, got ${actual} (${bytes} bytes); nothing was kept`,
          { expected: sha256, actual },
        );
      } catch (e: unknown) {
        if (isNoSpaceErrno(e) || (isFeatherError(e) && e.code === 'NO_SPACE')) {
          await discard(partial);
          if (isFeatherError(e)) throw e;
          throw new FeatherError('NO_SPACE', `no space left while writing ${partial}: ${messageOf(e)}; free disk space (feather-agent image rm, gc) and retry`, undefined, { cause: e });
        }
        if (e instanceof RangeNotSatisfiable && state !== undefined && state.length > 0 && !freshTried) {
          // We hold as much as the server has, or more: check what we hold, else start over.
          if (e.total === state.length && state.hash.copy().digest('hex') === sha256) {
            await this.publish(partial, sha256, dest);
            return { path: dest, bytes: state.length, resumedFrom, attempts };
          }
          this.log.warn('pull.partial_discarded', { url: url.href, sha256, held: state.length, total: e.total });
          state = await discard(partial);
          freshTried = true;
          resumedThisRun = false;
          continue;
        }
        if (isFeatherError(e)) throw e;
        if (signal.aborted) throw new FeatherError('PULL_FAILED', `pull of ${url.href} was cancelled`, { held: state?.length ?? 0 }, { cause: e });
        const transient = isTransientNetworkError(e);
        const reason = messageOf(e);
        if (transient && transientFailures < this.retries) {
          const delay = this.backoff(transientFailures++);
          this.log.warn('pull.retry', { url: url.href, sha256, reason, attempt: attempts, delayMs: delay, held: state?.length ?? 0 });
          await sleep(delay, undefined, { signal });
          continue;
        }
        const held = state?.length ?? 0;
        throw new FeatherError(
          'PULL_FAILED',
          transient
            ? `${url.href}: ${reason} (gave up after ${attempts} attempts; ${formatBytes(held)} received are kept and the next pull resumes from there)`
            : `${url.href}: ${reason}`,
          { attempts, held },
          { cause: e },
        );
      }
    }
  }

  /** One request: append the body to `partial`, feeding `state`. Throws on a short read or a stall. */
  private async receive(url: URL, partial: string, state: HashState, signal: AbortSignal, meter: ProgressMeter): Promise<void> {
    const watchdog = new AbortController();
    const combined = AbortSignal.any([signal, watchdog.signal]);
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => watchdog.abort(new TransientError(`no data received for ${this.idleTimeoutMs / 1000}s`)), this.idleTimeoutMs);
    };
    const dir = dirname(partial);
    let fh: FileHandle | undefined;
    let close: (() => void) | undefined;
    arm();
    try {
      const src = await openSource(url, state.length, combined);
      close = src.close;
      // An aborted request does not always end its response stream: end it here.
      combined.addEventListener('abort', src.close, { once: true });
      if (src.start !== state.length) {
        this.log.info('pull.range_ignored', { url: url.href, held: state.length });
        state.hash = createHash('sha256');
        state.length = 0;
        await truncateTo(partial, 0);
      }
      const total = src.total;
      if (total !== undefined) {
        if (state.length > total) throw new RangeNotSatisfiable(total);
        const free = await freeBytes(dir);
        if (total - state.length > free) throw noSpace(dir, total - state.length, free);
      }
      fh = await open(partial, 'a', 0o644);
      let sinceCheck = 0;
      meter.update(state.length, total, true);
      for await (const chunk of src.body) {
        arm();
        await writeAll(fh, chunk);
        state.hash.update(chunk);
        state.length += chunk.length;
        if (total !== undefined && state.length > total) {
          throw new FeatherError('PULL_FAILED', `${url.href}: the server sent more than the ${total} bytes it announced`);
        }
        sinceCheck += chunk.length;
        if (sinceCheck >= this.spaceCheckBytes) {
          sinceCheck = 0;
          const free = await freeBytes(dir);
          const need = total === undefined ? 0 : total - state.length;
          if (need > free) throw noSpace(dir, need, free);
        }
        meter.update(state.length, total);
        combined.throwIfAborted();
      }
      if (total !== undefined && state.length < total) {
        throw new TransientError(`short read: ${state.length} of ${total} bytes`);
      }
      await fh.sync();
      meter.update(state.length, total, true);
    } catch (e: unknown) {
      if (watchdog.signal.aborted && !signal.aborted) throw abortReason(watchdog.signal);
      throw e;
    } finally {
      clearTimeout(timer);
      meter.stop();
      close?.();
      await fh?.close();
    }
  }

  /** Rename the verified partial to `dest` (copying when `dest` is on another filesystem). */
  private async publish(partial: string, sha256: string, dest: string): Promise<void> {
    try {
      await renameDurable(partial, dest);
    } catch (e: unknown) {
      if (errnoCode(e) !== 'EXDEV') throw e;
      await copyVerified(partial, sha256, dest);
      await unlink(partial);
    }
  }

  private backoff(n: number): number {
    const cap = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** n);
    return Math.round(cap / 2 + Math.random() * (cap / 2));
  }
}
