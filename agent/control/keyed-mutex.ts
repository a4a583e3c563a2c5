// Serializes work by key ("container:web1", "image:busybox"); different keys run concurrently.
//
// Invariants: holders of a key run one at a time, in the order they asked. A holder of several
// keys takes them all at once (registered synchronously, so every key sees waiters in the same
// order and no two holders can wait on each other). A failing holder releases its keys.
// Keys nobody holds or waits for are forgotten.
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    const unique = [...new Set(keys)];
    let release: () => void = () => undefined;
    const done = new Promise<void>((resolve) => { release = resolve; });
    const before = unique.map((k) => this.tails.get(k));
    for (const k of unique) this.tails.set(k, done);
    try {
      await Promise.all(before);
      return await fn();
    } finally {
      release();
      for (const k of unique) if (this.tails.get(k) === done) this.tails.delete(k);
    }
  }

  /** Keys held or waited for (tests, debugging). */
  get busyKeys(): string[] { return [...this.tails.keys()]; }
}
