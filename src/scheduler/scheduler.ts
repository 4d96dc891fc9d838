// Which step runs next. Steps that must execute wait in one FIFO queue per pool; a pool of size k
// never has more than k running steps. Skipping never comes here: pools limit execution only.
//
// Picking is O(number of pools): among the pools with a free slot, the one whose oldest queued
// step was queued first wins, so steps start in the order they became ready whenever the limits
// allow it.

export interface PoolLimits {
  /** The size of a pool, or undefined when the pool is not defined. */
  sizeOf(pool: string): number | undefined;
}

interface Queued<T> {
  item: T;
  seq: number;
}

class Fifo<T> {
  private items: Array<Queued<T> | undefined> = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(entry: Queued<T>): void {
    this.items.push(entry);
  }
  peek(): Queued<T> | undefined {
    return this.items[this.head];
  }
  shift(): Queued<T> | undefined {
    const entry = this.items[this.head];
    this.items[this.head++] = undefined;
    // Compact now and then so a long build does not keep every finished entry alive.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return entry;
  }
  drain(): T[] {
    const out: T[] = [];
    for (let e = this.shift(); e; e = this.shift()) out.push(e.item);
    return out;
  }
}

export class Scheduler<T> {
  private readonly queues = new Map<string | null, Fifo<T>>();
  private readonly running = new Map<string | null, number>();
  private seq = 0;
  private queuedCount = 0;
  /** On hold: nothing new starts (drain, interruption). */
  held = false;

  constructor(private readonly limits: PoolLimits) {}

  enqueue(item: T, pool: string | null): void {
    let queue = this.queues.get(pool);
    if (!queue) {
      queue = new Fifo<T>();
      this.queues.set(pool, queue);
    }
    queue.push({ item, seq: this.seq++ });
    this.queuedCount++;
  }

  get queued(): number {
    return this.queuedCount;
  }

  /** Take the next item allowed to start, marking its pool slot used. */
  next(): { item: T; pool: string | null } | undefined {
    if (this.held) return undefined;
    let best: { pool: string | null; seq: number } | undefined;
    for (const [pool, queue] of this.queues) {
      const head = queue.peek();
      if (!head) continue;
      if (pool !== null) {
        const size = this.limits.sizeOf(pool) ?? 0;
        if ((this.running.get(pool) ?? 0) >= size) continue;
      }
      if (!best || head.seq < best.seq) best = { pool, seq: head.seq };
    }
    if (!best) return undefined;
    const entry = this.queues.get(best.pool)!.shift()!;
    this.queuedCount--;
    this.running.set(best.pool, (this.running.get(best.pool) ?? 0) + 1);
    return { item: entry.item, pool: best.pool };
  }

  /** A step taken with next() finished: free its pool slot. */
  done(pool: string | null): void {
    this.running.set(pool, Math.max(0, (this.running.get(pool) ?? 0) - 1));
  }

  runningIn(pool: string | null): number {
    return this.running.get(pool) ?? 0;
  }

  queuedIn(pool: string | null): number {
    return this.queues.get(pool)?.length ?? 0;
  }

  /** Remove everything still queued (used when a run is interrupted). */
  clear(): T[] {
    const out: T[] = [];
    for (const queue of this.queues.values()) out.push(...queue.drain());
    this.queuedCount = 0;
    return out;
  }
}
