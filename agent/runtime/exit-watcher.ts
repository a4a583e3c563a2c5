// Notices container exits by polling the shims' state files (the shim writes "exited" when its
// workload ends; a vanished supervisor is reaped). One timer, only while someone listens.
import type { Logger } from '../../shared/logging.js';
import type { ContainerExit } from './api.js';
import { isShimAlive, type ShimState } from './state.js';

const POLL_MS = 1000;

export interface ExitWatcherDeps {
  /** Names of the containers running now. */
  running(): string[];
  readState(name: string): ShimState | undefined;
  /** Record the end of a container whose supervisor died. */
  reap(name: string, state: ShimState): void;
  log: Logger;
}

export class ExitWatcher {
  private readonly listeners = new Set<(exit: ContainerExit) => void>();
  private readonly watched = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ExitWatcherDeps) {}

  /** A container the caller just started (so a quick exit is not missed before the next poll). */
  watch(name: string): void {
    this.watched.add(name);
  }

  forget(name: string): void {
    this.watched.delete(name);
  }

  subscribe(listener: (exit: ContainerExit) => void): () => void {
    this.listeners.add(listener);
    if (!this.timer) {
      for (const name of this.deps.running()) this.watched.add(name);
      this.timer = setInterval(() => this.poll(), POLL_MS);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  private poll(): void {
    for (const name of [...this.watched]) {
      let state = this.deps.readState(name);
      if (state?.status === 'running') {
        if (isShimAlive(state.shimPid)) continue;
        this.deps.reap(name, state);
        state = this.deps.readState(name);
      }
      this.watched.delete(name);
      if (!state) continue;
      const exit: ContainerExit = {
        name,
        exitCode: state.exitCode,
        signal: state.signal,
        oomKilled: (state.oomKills ?? 0) > 0,
        finishedAt: state.finishedAt ?? Date.now(),
      };
      for (const listener of this.listeners) {
        try { listener(exit); } catch (e: unknown) { this.deps.log.error('exit.listener.failed', { name, error: e }); }
      }
    }
    for (const name of this.deps.running()) this.watched.add(name);
  }
}
