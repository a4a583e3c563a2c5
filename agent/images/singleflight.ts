// Single flight: one piece of work per key at a time; callers that arrive while it runs
// share its result.
//
// Invariants:
// - at most one `work` runs per key; it is forgotten the moment it settles, so a later call
//   starts afresh (a failure is never cached);
// - a caller's AbortSignal only ends that caller's wait; the work itself is aborted (through
//   the signal it was given) when every caller waiting for it has gone, and that last caller
//   returns only once the work has settled;
// - a new caller never joins work that is being aborted: it waits for it, then starts afresh.

interface Flight<T> {
  readonly promise: Promise<T>;
  readonly controller: AbortController;
  waiters: number;
}

export function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new DOMException('The operation was aborted', 'AbortError');
}

function waitFor<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e); },
    );
  });
}

export class SingleFlight<T> {
  readonly #flights = new Map<string, Flight<T>>();

  inFlight(key: string): boolean {
    return this.#flights.has(key);
  }

  async run(key: string, work: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<{ value: T; shared: boolean }> {
    if (signal?.aborted) throw abortReason(signal);
    let flight = this.#flights.get(key);
    // A flight whose callers all left is winding down: never join it, start after it.
    while (flight !== undefined && flight.controller.signal.aborted) {
      await flight.promise.catch(() => undefined);
      flight = this.#flights.get(key);
    }
    if (signal?.aborted) throw abortReason(signal);
    const shared = flight !== undefined;
    if (!flight) flight = this.#start(key, work);
    flight.waiters++;
    try {
      return { value: await waitFor(flight.promise, signal), shared };
    } finally {
      flight.waiters--;
      if (flight.waiters === 0 && this.#flights.get(key) === flight) {
        // The last caller left: stop the work, and return only once it has stopped (its
        // files and locks are then in a known state).
        flight.controller.abort(signal?.reason);
        await flight.promise.catch(() => undefined);
      }
    }
  }

  #start(key: string, work: (signal: AbortSignal) => Promise<T>): Flight<T> {
    const controller = new AbortController();
    const holder: { flight?: Flight<T> } = {};
    const promise = (async (): Promise<T> => {
      try {
        return await work(controller.signal);
      } finally {
        if (holder.flight !== undefined && this.#flights.get(key) === holder.flight) this.#flights.delete(key);
      }
    })();
    // Waiters that abort leave nobody to observe a later rejection.
    promise.catch(() => undefined);
    const flight: Flight<T> = { promise, controller, waiters: 0 };
    holder.flight = flight;
    this.#flights.set(key, flight);
    return flight;
  }
}
