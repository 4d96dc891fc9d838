// Unsigned varints (7 bits per byte, least significant first, below 2^32), the integer encoding
// of both the state file's token stream (store.ts) and the journal's entries (journal.ts).
// Readers check every byte against the end, so truncated or garbage input fails cleanly.

/** A growing buffer that varints (and whatever a subclass adds) are appended to. */
export class VarintWriter {
  buf: Buffer;
  pos = 0;

  constructor(initialSize: number) {
    this.buf = Buffer.allocUnsafe(Math.max(initialSize, 1024));
  }

  /** Make room for `n` more bytes. */
  protected room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const bigger = Buffer.allocUnsafe(size);
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  uint(v: number): void {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new TypeError(`${v} is not a 32-bit count`);
    this.room(5);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }
}

/** Reads varints from `buf` between a start and `end`; subclasses say how a failure is reported. */
export abstract class VarintReader {
  protected pos: number;

  constructor(
    protected readonly buf: Buffer,
    start: number,
    protected readonly end: number,
  ) {
    this.pos = start;
  }

  abstract fail(msg: string): never;

  uint(): number {
    let v = 0;
    let scale = 1;
    for (let k = 0; k < 5; k++) {
      if (this.pos >= this.end) this.fail("data ends early");
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (v > 0xffffffff) this.fail("number out of range");
        return v;
      }
      scale *= 0x80;
    }
    this.fail("number out of range");
  }

  /** A count of items that take at least `minBytes` each: garbage cannot allocate huge arrays. */
  count(minBytes: number): number {
    const n = this.uint();
    if (n * minBytes > this.end - this.pos) this.fail(`bad count ${n}`);
    return n;
  }
}
