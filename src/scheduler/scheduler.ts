// Which step runs next. Steps that must execute wait in one FIFO queue per pool; a pool of size k
// never has more than k running steps. Skipping never comes here: pools limit execution only.
//
// Picking is O(number of pools): among the pools with a free slot, the one whose oldest queued
// step was queued first wins, so steps start in the order they became ready whenever the limits
// allow it.
//
// A step of a full pool can also be taken to wait behind a running step of its pool
// (takeBehind): it takes over that step's slot when it is over (leftBehind), so it needs no slot
// of its own. The session places it on the same lane, which then goes on to it without a round
// trip through the director.

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
  /** Steps taken with takeBehind that have no slot yet, per pool. */
  private readonly behind = new Map<string, number>();
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

  /**
   * Take the oldest queued step of `pool` to wait behind a running step of that pool, when the
   * pool is exactly full (with a free slot, next() starts it): it gets a slot only from a step
   * that ends. Not while the pool runs more steps than its size (it was made smaller): waiting
   * steps take over slots, so the pool would never come down to its new size.
   */
  takeBehind(pool: string): T | undefined {
    if (this.held) return undefined;
    const size = this.limits.sizeOf(pool) ?? 0;
    if (this.runningIn(pool) !== size) return undefined;
    const entry = this.queues.get(pool)?.shift();
    if (!entry) return undefined;
    this.queuedCount--;
    this.behind.set(pool, (this.behind.get(pool) ?? 0) + 1);
    return entry.item;
  }

  /**
   * A step taken with takeBehind waits no more: it took over the slot of a finished step of its
   * pool (the running count stays), or it ended, or was handed back, without ever having one.
   */
  leftBehind(pool: string): void {
    this.behind.set(pool, Math.max(0, (this.behind.get(pool) ?? 0) - 1));
  }

  /** A step that holds a slot (from next(), or taken over) finished: free the slot. */
  done(pool: string | null): void {
    this.running.set(pool, Math.max(0, (this.running.get(pool) ?? 0) - 1));
  }

  /** Whether `pool` runs more steps than its size (it was made smaller meanwhile). */
  overFull(pool: string): boolean {
    return this.runningIn(pool) > (this.limits.sizeOf(pool) ?? 0);
  }

  runningIn(pool: string | null): number {
    return this.running.get(pool) ?? 0;
  }

  /** Steps of `pool` waiting for a slot: queued, or behind a running step of the pool. */
  queuedIn(pool: string | null): number {
    return (this.queues.get(pool)?.length ?? 0) + (pool === null ? 0 : (this.behind.get(pool) ?? 0));
  }

  /** Steps of `pool` that wait in its queue (not those behind a running step). */
  waitingIn(pool: string | null): number {
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
