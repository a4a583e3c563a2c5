// A binary min-heap of numbers (device indexes) under a caller's order. The order may read state
// that changes, as long as an item's key changes only while it is out of the heap (the scheduler
// pops a device, places on it, and pushes it back).
export class Heap {
  private readonly items: number[];

  /** Builds in O(n). */
  constructor(items: number[], private readonly less: (a: number, b: number) => boolean) {
    this.items = items;
    for (let i = (items.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  get size(): number {
    return this.items.length;
  }

  /** Adds many at once: O(n) rebuild. */
  pushAll(xs: readonly number[]): void {
    for (const x of xs) this.items.push(x);
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  push(x: number): void {
    this.items.push(x);
    this.up(this.items.length - 1);
  }

  /** The smallest item, left in place. */
  peek(): number | undefined {
    return this.items[0];
  }

  pop(): number | undefined {
    const items = this.items;
    if (items.length === 0) return undefined;
    const top = items[0] as number;
    const last = items.pop() as number;
    if (items.length > 0) {
      items[0] = last;
      this.down(0);
    }
    return top;
  }

  private up(i: number): void {
    const items = this.items;
    const x = items[i] as number;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p] as number;
      if (!this.less(x, parent)) break;
      items[i] = parent;
      i = p;
    }
    items[i] = x;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const x = items[i] as number;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && this.less(items[r] as number, items[l] as number)) c = r;
      const child = items[c] as number;
      if (!this.less(child, x)) break;
      items[i] = child;
      i = c;
    }
    items[i] = x;
  }
}
