// The table of file hashes (path -> FileHash), kept as columns of typed arrays instead of one
// object per file.
//
// Why: at 100,000 steps the table holds 200,000 files. As objects (a FileHash and its digest's
// Uint8Array each, allocated as steps finish) they end up scattered over a heap of several
// hundred MB, and every pass over them (saving the state, comparing tables) was a cache miss per
// object: encoding the table took 0.55 s inside the director against 0.15 s in a fresh process.
// Columns make saving a copy of a few buffers, loading a fill of a few buffers, and leave the
// collector 400,000 fewer objects to trace.
//
// Lookups still hand out FileHash objects (made on demand; short-lived). Their digests are views
// into the digest column, so a region of a column, once written, is never written again: a new
// hash for a path goes to a new slot and the old slot becomes a hole; growing and compacting
// allocate new columns and leave the old ones, still referenced by earlier views, as they were.
// That also lets the encoder read the columns while the table goes on changing (see snapshot()).
import { DIR_DIGEST, sharedDirDigest, type FileHash, type SavedState } from "./types.js";

/** Bytes of digest stored per slot: BLAKE3's 32; the directory marker takes 1 of them. */
export const DIGEST_SLOT = 32;

const INITIAL_SLOTS = 64;

export function emptyState(): SavedState {
  return { files: new FileHashes(), steps: [] };
}

/**
 * The columns of a table without holes, slot i being the i-th file: what the state file stores.
 * Later changes to the table never show in these arrays (only in the table).
 */
export interface FileColumns {
  count: number;
  /** Path of each slot (a copy: the table's own list changes as paths are deleted). */
  paths: string[];
  modes: Uint32Array;
  /** size, mtimeMs, ino of each slot, in that order. */
  stats: Float64Array;
  /** Digest length of each slot (at most DIGEST_SLOT). */
  lens: Uint8Array;
  /** DIGEST_SLOT bytes per slot, of which the first `lens[i]` are the digest. */
  digests: Uint8Array;
}

export class FileHashes {
  private slotOf = new Map<string, number>();
  /** Path of each slot, undefined for a hole. */
  private pathAt: Array<string | undefined> = [];
  private modes!: Uint32Array;
  private stats!: Float64Array;
  private lens!: Uint8Array;
  private digests!: Uint8Array;
  /** Slots written so far, holes included. */
  private used = 0;

  constructor(capacity = INITIAL_SLOTS) {
    this.allocate(capacity);
  }

  static from(entries: Iterable<readonly [string, FileHash]>): FileHashes {
    const t = new FileHashes();
    for (const [path, hash] of entries) t.set(path, hash);
    return t;
  }

  /**
   * A table from decoded columns (store.ts), which it takes over. The caller has checked the
   * values; a path that appears twice makes this throw.
   */
  static fromColumns(c: FileColumns): FileHashes {
    const t = new FileHashes(0);
    t.modes = c.modes;
    t.stats = c.stats;
    t.lens = c.lens;
    t.digests = c.digests;
    t.pathAt = c.paths;
    t.used = c.count;
    for (let i = 0; i < c.count; i++) t.slotOf.set(c.paths[i]!, i);
    if (t.slotOf.size !== c.count) throw new RangeError("the same path appears more than once");
    return t;
  }

  get size(): number {
    return this.slotOf.size;
  }

  has(path: string): boolean {
    return this.slotOf.has(path);
  }

  get(path: string): FileHash | undefined {
    const slot = this.slotOf.get(path);
    return slot === undefined ? undefined : this.at(slot);
  }

  private at(slot: number): FileHash {
    const len = this.lens[slot]!;
    const o = DIGEST_SLOT * slot;
    const digest = len === 1 && this.digests[o] === DIR_DIGEST[0] ? DIR_DIGEST : this.digests.subarray(o, o + len);
    return { digest, mode: this.modes[slot]!, size: this.stats[3 * slot]!, mtimeMs: this.stats[3 * slot + 1]!, ino: this.stats[3 * slot + 2]! };
  }

  /** Whether `path` has exactly these stat values and content (no FileHash is made for it). */
  holds(path: string, h: FileHash): boolean {
    const slot = this.slotOf.get(path);
    if (slot === undefined) return false;
    const s = this.stats;
    if (this.modes[slot] !== h.mode || s[3 * slot] !== h.size || s[3 * slot + 1] !== h.mtimeMs || s[3 * slot + 2] !== h.ino) return false;
    const len = this.lens[slot]!;
    const d = h.digest;
    if (d.length !== len) return false;
    const o = DIGEST_SLOT * slot;
    for (let k = 0; k < len; k++) if (this.digests[o + k] !== d[k]) return false;
    return true;
  }

  set(path: string, h: FileHash): this {
    const digest = sharedDirDigest(h.digest);
    // Checked here, where a bad value comes in, rather than when saving, long after.
    if (!(digest instanceof Uint8Array) || digest.length > DIGEST_SLOT) throw new RangeError(`file ${path}: the digest must be a Uint8Array of at most ${DIGEST_SLOT} bytes`);
    if (h.mode >>> 0 !== h.mode) throw new RangeError(`file ${path}: mode ${h.mode} is not a 32-bit unsigned integer`);
    if (!Number.isFinite(h.size) || !Number.isFinite(h.mtimeMs) || !Number.isFinite(h.ino)) {
      throw new RangeError(`file ${path}: size, mtimeMs and ino must be finite numbers`);
    }
    const old = this.slotOf.get(path);
    if (old !== undefined) {
      if (this.holds(path, h)) return this;
      // Never overwrite: views handed out for the old hash must keep showing it.
      this.pathAt[old] = undefined;
      if (this.used - this.slotOf.size > Math.max(1024, this.slotOf.size)) this.compact();
    }
    // At least INITIAL_SLOTS: a table made from columns may have none to spare, or none at all.
    if (this.used === this.modes.length) this.grow(Math.max(INITIAL_SLOTS, 2 * this.modes.length));
    const slot = this.used++;
    this.modes[slot] = h.mode;
    this.stats[3 * slot] = h.size;
    this.stats[3 * slot + 1] = h.mtimeMs;
    this.stats[3 * slot + 2] = h.ino;
    this.lens[slot] = digest.length;
    this.digests.set(digest, DIGEST_SLOT * slot);
    this.pathAt[slot] = path;
    this.slotOf.set(path, slot);
    return this;
  }

  delete(path: string): boolean {
    const slot = this.slotOf.get(path);
    if (slot === undefined) return false;
    this.slotOf.delete(path);
    this.pathAt[slot] = undefined;
    return true;
  }

  /** Paths in slot order. */
  *keys(): IterableIterator<string> {
    for (let i = 0; i < this.used; i++) {
      const p = this.pathAt[i];
      if (p !== undefined) yield p;
    }
  }

  *entries(): IterableIterator<[string, FileHash]> {
    for (let i = 0; i < this.used; i++) {
      const p = this.pathAt[i];
      if (p !== undefined) yield [p, this.at(i)];
    }
  }

  [Symbol.iterator](): IterableIterator<[string, FileHash]> {
    return this.entries();
  }

  /** An independent copy without holes. */
  clone(): FileHashes {
    const c = this.snapshot();
    return FileHashes.fromColumns({ ...c, modes: c.modes.slice(), stats: c.stats.slice(), lens: c.lens.slice(), digests: c.digests.slice() });
  }

  /** Start choosing paths of this table, for selected(), which must follow before the table changes. */
  selection(): FileSelection {
    return new FileSelection(this.slotOf, this.pathAt, this.used);
  }

  /**
   * The table of the chosen paths: this very table when they are all of its paths (saving
   * then copies nothing), else a copy of just those.
   */
  selected(sel: FileSelection): FileHashes {
    if (sel.count === this.slotOf.size) return this;
    const chosen = sel.chosen;
    const t = new FileHashes(Math.max(INITIAL_SLOTS, sel.count));
    t.copySlots(this, (slot) => chosen[slot] === 1);
    return t;
  }

  /**
   * The columns as they are now, without holes (compacting first if needed). The arrays are
   * views that later changes to the table leave alone: a new slot goes past `count`, a deleted
   * one only leaves the table's path list, and compacting or growing allocates new columns.
   */
  snapshot(): FileColumns {
    if (this.used !== this.slotOf.size) this.compact();
    const n = this.used;
    return {
      count: n,
      paths: this.pathAt.slice(0, n) as string[],
      modes: this.modes.subarray(0, n),
      stats: this.stats.subarray(0, 3 * n),
      lens: this.lens.subarray(0, n),
      digests: this.digests.subarray(0, DIGEST_SLOT * n),
    };
  }

  /**
   * Finds the slots of paths in a snapshot taken earlier: this is how the encoder turns a
   * step's paths into string indices without a map of its own. A path the table has moved
   * since may be reported as missing (-1), never at a wrong slot.
   */
  finderIn(snapshot: FileColumns): SlotFinder {
    return new SlotFinder(this.slotOf, snapshot.paths, snapshot.count);
  }

  private grow(capacity: number): void {
    const modes = new Uint32Array(capacity);
    const stats = new Float64Array(3 * capacity);
    const lens = new Uint8Array(capacity);
    const digests = new Uint8Array(DIGEST_SLOT * capacity);
    modes.set(this.modes.subarray(0, this.used));
    stats.set(this.stats.subarray(0, 3 * this.used));
    lens.set(this.lens.subarray(0, this.used));
    digests.set(this.digests.subarray(0, DIGEST_SLOT * this.used));
    this.modes = modes;
    this.stats = stats;
    this.lens = lens;
    this.digests = digests;
  }

  /** Renumber the live slots into new columns, dropping the holes. */
  private compact(): void {
    const live = this.slotOf.size;
    // Room to grow by half again before the next allocation.
    const t = new FileHashes(Math.max(INITIAL_SLOTS, live + (live >> 1)));
    t.copySlots(this, null);
    this.slotOf = t.slotOf;
    this.pathAt = t.pathAt;
    this.modes = t.modes;
    this.stats = t.stats;
    this.lens = t.lens;
    this.digests = t.digests;
    this.used = t.used;
  }

  private allocate(capacity: number): void {
    const n = Math.max(1, capacity);
    this.modes = new Uint32Array(n);
    this.stats = new Float64Array(3 * n);
    this.lens = new Uint8Array(n);
    this.digests = new Uint8Array(DIGEST_SLOT * n);
  }

  /** Append the live slots of `from` (those `keep` accepts; all when null) to this table. */
  private copySlots(from: FileHashes, keep: ((slot: number) => boolean) | null): void {
    let j = this.used;
    for (let i = 0; i < from.used; i++) {
      const p = from.pathAt[i];
      if (p === undefined || (keep !== null && !keep(i))) continue;
      if (j === this.modes.length) this.grow(Math.max(INITIAL_SLOTS, 2 * this.modes.length));
      this.modes[j] = from.modes[i]!;
      this.stats[3 * j] = from.stats[3 * i]!;
      this.stats[3 * j + 1] = from.stats[3 * i + 1]!;
      this.stats[3 * j + 2] = from.stats[3 * i + 2]!;
      this.lens[j] = from.lens[i]!;
      this.digests.set(from.digests.subarray(DIGEST_SLOT * i, DIGEST_SLOT * i + from.lens[i]!), DIGEST_SLOT * j);
      this.pathAt[j] = p;
      this.slotOf.set(p, j);
      j++;
    }
    this.used = j;
  }
}

/**
 * Finds the slot of a path among `paths[0..count)`, trying first the slots that follow the last
 * few found. Steps are saved in the order they were defined, which is about the order their
 * files were hashed, so the next path asked for is nearly always right after one found just
 * before: an array read where a lookup in a map of 200,000 paths was a cache miss or three
 * (at 100,000 steps the lookups took about 0.25 s of the save).
 */
export class SlotFinder {
  /** The slot each cursor expects next. */
  private readonly next = new Int32Array(4);
  /** When each cursor last found a path (a count of finds): the oldest is reused on a miss. */
  private readonly used = new Float64Array(4);
  private finds = 0;

  constructor(
    private readonly slotOf: ReadonlyMap<string, number>,
    private readonly paths: ReadonlyArray<string | undefined>,
    private readonly count: number,
  ) {}

  /** The slot of `path`, or -1 when it is not among the paths. */
  find(path: string): number {
    const next = this.next;
    const paths = this.paths;
    const n = this.count;
    this.finds++;
    for (let k = 0; k < next.length; k++) {
      const s = next[k]!;
      // The slot expected, or one near it: steps that finish out of order (two lanes) swap their
      // files by a few slots. Paths are unique among `paths`: a match is the one slot of `path`.
      for (let d = 0; d < WINDOW.length; d++) {
        const at = s + WINDOW[d]!;
        if (at >= 0 && at < n && paths[at] === path) {
          if (at >= s) next[k] = at + 1;
          this.used[k] = this.finds;
          return at;
        }
      }
    }
    const slot = this.slotOf.get(path);
    if (slot === undefined || slot >= n || paths[slot] !== path) return -1;
    let oldest = 0;
    for (let k = 1; k < next.length; k++) if (this.used[k]! < this.used[oldest]!) oldest = k;
    next[oldest] = slot + 1;
    this.used[oldest] = this.finds;
    return slot;
  }
}

/** Where SlotFinder looks around the slot it expects, in this order. */
const WINDOW = [0, 1, 2, 3, -1, -2, -3, -4];

/** Paths chosen from a table (FileHashes.selection), marked by slot rather than kept in a set. */
export class FileSelection {
  /** 1 for each chosen slot. */
  readonly chosen: Uint8Array;
  count = 0;
  private readonly finder: SlotFinder;

  constructor(slotOf: ReadonlyMap<string, number>, paths: ReadonlyArray<string | undefined>, slots: number) {
    this.chosen = new Uint8Array(slots);
    this.finder = new SlotFinder(slotOf, paths, slots);
  }

  /** Choose `path` if the table has it (choosing it twice is fine). */
  add(path: string): void {
    const slot = this.finder.find(path);
    if (slot < 0 || this.chosen[slot] === 1) return;
    this.chosen[slot] = 1;
    this.count++;
  }
}
