// A single-flight runner: runs one task at a time, coalesces requests, retries failures with a
// capped exponential backoff, and stops on an AbortSignal. Generic; the reconciler's task is one
// reconciliation pass.
//
// Invariants:
//  1. At most one task runs at any time.
//  2. trigger() while a task runs marks the runner dirty: exactly one more run follows that run,
//     however many triggers came in meanwhile.
//  3. trigger() while idle (or waiting to retry) starts a run at once.
//  4. A failed run is retried after min(baseMs * 2^(failures-1), maxMs); the failure count resets
//     after a run that succeeds, or with trigger({ resetBackoff: true }).
//  5. After stop() (or when the given signal aborts) no new run starts; stop() resolves once the
//     run in flight, which sees its signal aborted, has returned.
//  6. The loop is a loop: no recursion, no unbounded promise chains.
import { setTimeout as sleepTimer } from 'node:timers/promises';

export type Task = (signal: AbortSignal) => Promise<void>;

export interface RunnerOptions {
  /** First retry delay (default 1000 ms). */
  baseMs?: number | undefined;
  /** Retry delay cap (default 60000 ms). */
  maxMs?: number | undefined;
  /** Stops the runner when aborted (as stop() does). */
  signal?: AbortSignal | undefined;
  /** Called for every failed run, with the delay before the retry. */
  onError?: ((error: unknown, failures: number, retryInMs: number) => void) | undefined;
  /** Waits `ms` unless `signal` aborts first (resolves either way). Replaceable for tests. */
  sleep?: ((ms: number, signal: AbortSignal) => Promise<void>) | undefined;
}

export function backoffMs(failures: number, baseMs: number, maxMs: number): number {
  if (failures <= 0) return 0;
  return Math.min(baseMs * 2 ** Math.min(failures - 1, 40), maxMs);
}

async function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleepTimer(ms, undefined, { signal });
  } catch {
    // aborted: the caller looks at why
  }
}

export class SingleFlightRunner {
  private readonly controller = new AbortController();
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private dirty = false;
  private running = false;
  private failures = 0;
  private runs = 0;
  /** Wakes the loop from waiting (for a trigger or a retry delay). */
  private wake: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly task: Task, private readonly opts: RunnerOptions = {}) {
    this.baseMs = opts.baseMs ?? 1000;
    this.maxMs = opts.maxMs ?? 60_000;
    this.sleep = opts.sleep ?? defaultSleep;
    opts.signal?.addEventListener('abort', () => this.abort(), { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Failed runs since the last success. */
  get consecutiveFailures(): number {
    return this.failures;
  }

  /** Runs started so far. */
  get runCount(): number {
    return this.runs;
  }

  /** Start the loop; runs nothing until trigger(). Calling start twice is harmless. */
  start(): void {
    if (this.loop || this.controller.signal.aborted) return;
    this.loop = this.main();
  }

  /** Ask for a run: now when idle, right after the current one when running. */
  trigger(opts: { resetBackoff?: boolean } = {}): void {
    if (this.controller.signal.aborted) return;
    if (opts.resetBackoff) this.failures = 0;
    this.dirty = true;
    this.wake?.abort();
  }

  /** Resolves when no run is in flight and none is requested (a retry may still be scheduled). */
  idle(): Promise<void> {
    if (!this.running && !this.dirty) return Promise.resolve();
    if (this.controller.signal.aborted && !this.running) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Abort the run in flight, run nothing more, and resolve when the loop has ended. */
  async stop(): Promise<void> {
    this.abort();
    await this.loop;
    this.flushIdle();
  }

  private abort(): void {
    this.controller.abort();
    this.wake?.abort();
  }

  private async main(): Promise<void> {
    const signal = this.controller.signal;
    while (!signal.aborted) {
      if (!this.dirty) {
        this.flushIdle();
        // Idle: wait for a trigger, or for the retry delay after a failure.
        const wake = new AbortController();
        this.wake = wake;
        const retry = this.failures > 0 ? backoffMs(this.failures, this.baseMs, this.maxMs) : undefined;
        if (retry === undefined) await waitForAbort(wake.signal);
        else await this.sleep(retry, wake.signal);
        this.wake = undefined;
        if (signal.aborted) break;
        if (!wake.signal.aborted) this.dirty = true; // the retry delay ran out
        continue;
      }
      this.dirty = false;
      this.running = true;
      this.runs += 1;
      try {
        await this.task(signal);
        this.failures = 0;
      } catch (e: unknown) {
        if (signal.aborted) break;
        this.failures += 1;
        try {
          this.opts.onError?.(e, this.failures, backoffMs(this.failures, this.baseMs, this.maxMs));
        } catch {
          // a reporting hook must not end the loop
        }
      } finally {
        this.running = false;
      }
    }
    this.running = false;
    this.flushIdle();
  }

  private flushIdle(): void {
    if (this.running || (this.dirty && !this.controller.signal.aborted)) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

function waitForAbort(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
