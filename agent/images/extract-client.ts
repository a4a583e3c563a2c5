// StreamExtractor's work (gunzip, tar parsing, file creation) in a worker thread: the
// extraction's per-entry garbage lives and dies with the worker's heap instead of staying in the
// daemon's (an idle daemon never runs the major GC that would give it back: 40-50 MB after a
// 200 MB image). Same contract as StreamExtractor: start, write (resolves once the worker can
// take more: at most MAX_IN_FLIGHT chunks are queued), finish, abort.
import { Worker } from 'node:worker_threads';
import { FeatherError, type ErrorCode } from '../../shared/errors.js';
import type { ExtractStats } from './extract.js';
import type { Logger } from '../../shared/logging.js';
import type { ExtractLog, ExtractReply, ExtractRequest, ExtractWorkerData } from './extract-worker.js';

const MAX_IN_FLIGHT = 8;

// Under the test runner this module is TypeScript, and so is its worker.
const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './extract-worker.ts' : './extract-worker.js', import.meta.url);

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

export class WorkerExtractor {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly writes: Promise<unknown>[] = [];
  private failure: Error | undefined;

  constructor(private readonly data: ExtractWorkerData, private readonly log: Logger) {}

  async start(): Promise<void> {
    const worker = new Worker(WORKER_URL, { workerData: this.data });
    this.worker = worker;
    worker.on('message', (m: ExtractReply | ExtractLog) => {
      if ('log' in m) {
        this.log[m.log.level](m.log.event, m.log.fields);
        return;
      }
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(new FeatherError(m.error.code as ErrorCode, m.error.message, m.error.details as Record<string, unknown> | undefined));
    });
    const gone = (e: Error): void => {
      this.failure ??= e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', gone);
    worker.on('exit', (code) => gone(new FeatherError('RUNTIME_ERROR', `the extraction worker of ${this.data.label} exited (${code})`)));
    try {
      await this.call({ op: 'start' });
    } catch (e: unknown) {
      await this.stop();
      throw e;
    }
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    const copy = new Uint8Array(chunk); // the HTTP chunk may share its memory with others: send a copy
    const done = this.call({ op: 'write', chunk: copy }, [copy.buffer]);
    done.catch(() => undefined); // surfaced by the next write or finish
    this.writes.push(done);
    if (this.writes.length >= MAX_IN_FLIGHT) await this.writes.shift();
  }

  async finish(): Promise<ExtractStats> {
    try {
      await Promise.all(this.writes.splice(0));
      return await this.call({ op: 'finish' }) as ExtractStats;
    } finally {
      await this.stop();
    }
  }

  /** Remove what was extracted. Never throws. */
  async abort(): Promise<void> {
    if (this.worker === undefined) return;
    await Promise.allSettled(this.writes.splice(0));
    await this.call({ op: 'abort' }).catch(() => undefined);
    await this.stop();
  }

  private call(req: WithoutId<ExtractRequest>, transfer: ArrayBuffer[] = []): Promise<unknown> {
    const worker = this.worker;
    if (worker === undefined) return Promise.reject(new Error('WorkerExtractor used before start'));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ ...req, id } as ExtractRequest, transfer);
    });
  }

  private async stop(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker !== undefined) await worker.terminate();
  }
}
