// A msgpack decoder for the head of the state file: a map of a few scalars, arrays of strings
// (every path and command of the workflow) and binary data. msgpackr decodes those strings a
// character at a time in JavaScript when its native extractor is not loaded (and loading that cost
// more than decoding), about 13 ms for the 15,000 strings of 5000 steps; here each string is one
// slice of the buffer. It reads all of msgpack except extension types, which tsup never writes.

/** Thrown for bytes that are not one complete msgpack value. */
export class MsgpackError extends Error {}

/**
 * The value encoded in `buf`, which must hold exactly one. Maps become objects without a
 * prototype (a "__proto__" key stays plain data), byte strings Buffers sharing `buf`'s memory.
 */
export function decodeMsgpack(buf: Buffer): unknown {
  const r = new HeadReader(buf);
  const value = r.value(0);
  if (r.pos !== buf.length) throw new MsgpackError(`${buf.length - r.pos} bytes after the value`);
  return value;
}

// eslint-disable-next-line no-control-regex
const NOT_ASCII = /[^\x00-\x7f]/;

/** Nesting deeper than this is not a state file (and must not exhaust the stack). */
const MAX_DEPTH = 64;

class HeadReader {
  pos = 0;

  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new MsgpackError(`truncated at byte ${this.pos}`);
  }

  /** Step over the next `n` bytes (they must be there); returns where they start. */
  private take(n: number): number {
    this.need(n);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  private u8(): number {
    return this.buf[this.take(1)]!;
  }

  private u16(): number {
    return this.buf.readUInt16BE(this.take(2));
  }

  private u32(): number {
    return this.buf.readUInt32BE(this.take(4));
  }

  private str(n: number): string {
    const at = this.take(n);
    return this.buf.toString("utf8", at, at + n);
  }

  private bin(n: number): Buffer {
    const at = this.take(n);
    return this.buf.subarray(at, at + n);
  }

  private array(n: number, depth: number): unknown[] {
    // Each element takes at least one byte: a count beyond the rest is a corrupt header, and
    // must not allocate an array of billions first.
    this.need(n);
    const strings = this.stringArray(n);
    if (strings !== undefined) return strings;
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  private map(n: number, depth: number): Record<string, unknown> {
    this.need(2 * n);
    const out = Object.create(null) as Record<string, unknown>;
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      if (typeof key !== "string" && typeof key !== "number") throw new MsgpackError(`map key at byte ${this.pos} is not a string or number`);
      out[String(key)] = this.value(depth + 1);
    }
    return out;
  }

  /**
   * `n` strings from here, or undefined (nothing read) when the elements are not all strings.
   * They are cut out of one latin1 string spanning the whole array, so the array costs one call
   * into C++ instead of one per string; only the few that are not ASCII are decoded one by one.
   */
  private stringArray(n: number): string[] | undefined {
    const buf = this.buf;
    const start = this.pos;
    const bounds = new Int32Array(2 * n);
    let p = start;
    for (let i = 0; i < n; i++) {
      if (p >= buf.length) return undefined;
      const b = buf[p]!;
      let len: number;
      if (b >= 0xa0 && b < 0xc0) {
        len = b & 0x1f;
        p += 1;
      } else if (b === 0xd9 && p + 2 <= buf.length) {
        len = buf[p + 1]!;
        p += 2;
      } else if (b === 0xda && p + 3 <= buf.length) {
        len = buf.readUInt16BE(p + 1);
        p += 3;
      } else if (b === 0xdb && p + 5 <= buf.length) {
        len = buf.readUInt32BE(p + 1);
        p += 5;
      } else return undefined;
      if (p + len > buf.length) return undefined;
      bounds[2 * i] = p;
      p += len;
      bounds[2 * i + 1] = p;
    }
    this.pos = p;
    const out = new Array<string>(n);
    // Read as latin1, an ASCII string is its UTF-8 self; one with other bytes is read again.
    const all = buf.toString("latin1", start, p);
    for (let i = 0; i < n; i++) {
      const s = all.slice(bounds[2 * i]! - start, bounds[2 * i + 1]! - start);
      out[i] = NOT_ASCII.test(s) ? buf.toString("utf8", bounds[2 * i], bounds[2 * i + 1]) : s;
    }
    return out;
  }

  value(depth: number): unknown {
    if (depth > MAX_DEPTH) throw new MsgpackError("nested too deeply");
    const at = this.pos;
    const b = this.u8();
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0xa0 && b < 0xc0) return this.str(b & 0x1f);
    if (b >= 0x90 && b < 0xa0) return this.array(b & 0x0f, depth);
    if (b >= 0x80 && b < 0x90) return this.map(b & 0x0f, depth);
    const buf = this.buf;
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.bin(this.u8());
      case 0xc5:
        return this.bin(this.u16());
      case 0xc6:
        return this.bin(this.u32());
      case 0xca:
        return buf.readFloatBE(this.take(4));
      case 0xcb:
        return buf.readDoubleBE(this.take(8));
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xcf:
        return Number(buf.readBigUInt64BE(this.take(8)));
      case 0xd0:
        return buf.readInt8(this.take(1));
      case 0xd1:
        return buf.readInt16BE(this.take(2));
      case 0xd2:
        return buf.readInt32BE(this.take(4));
      case 0xd3:
        return Number(buf.readBigInt64BE(this.take(8)));
      case 0xd9:
        return this.str(this.u8());
      case 0xda:
        return this.str(this.u16());
      case 0xdb:
        return this.str(this.u32());
      case 0xdc:
        return this.array(this.u16(), depth);
      case 0xdd:
        return this.array(this.u32(), depth);
      case 0xde:
        return this.map(this.u16(), depth);
      case 0xdf:
        return this.map(this.u32(), depth);
      default:
        throw new MsgpackError(`unsupported type byte 0x${b.toString(16)} at byte ${at}`);
    }
  }
}
