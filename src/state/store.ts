// Load and save `.stepup/workflow.mpk.xz`: one msgpack document, xz-compressed.
//
// The document is a map (format version 3). Its shape comes from measuring 100,000 steps:
// - `stepCount`, `fileCount`.
// - `strings` and `moreStrings`: every path, workdir, env name/value and pool name, once; string
//   index i is the i-th of `strings` followed by `moreStrings`. Records refer to strings by index,
//   so a path shared by many steps and the file table is stored once. `strings` holds the paths
//   of the file table, in its order, and `moreStrings` the rest, which is known only once every
//   step is encoded and is small.
// - `commands`: one per step, not interned because they are nearly always unique.
// - `poolSizes`: the size of every pool the steps defined, in step order (any finite number).
// - `generation` (optional): 32 hex digits, new with every save by the director. The journal of
//   finished steps (journal.ts) names the generation it extends, so a journal left over from an
//   earlier file is never applied to a later one.
// - `stepBytes`: the length of the step tokens at the end of `raw`.
// - `raw`, always the last field, binary: per file size, mtime, inode (float64), then every file
//   digest, then per fingerprint its two digests and the short hashes; then the file table as
//   three columns of little-endian u32 (path index, mode, digest length); then the steps, as
//   unsigned LEB128 varints (order in Encoder.step). Columns and varints in a few large buffers
//   cost far less to write and read than 200,000 msgpack records or an array of two million
//   numbers, whose garbage triggers full collections of a heap that already holds the workflow.
// The fields are written in this order so that compression runs while the steps are encoded
// (encodeParts); the decoder takes them in any order. Older versions are still read: version 2
// had all strings in `strings` (written last, after the steps, so xz compressed them only once
// the steps were encoded: about 0.1 s of waiting at 100,000 steps); version 1 kept the file table
// (`files`) and the step tokens (`steps`) as fields of their own, compressed.
//
// `raw` barely compresses or is not worth xz's time: xz's encoder is slowest on such data
// (measured here: ~7 MB/s on random bytes, ~40 MB/s with two threads on the columns and tokens).
// So the file is two concatenated xz streams: everything before `raw`'s bytes is compressed by
// lzma-native, and `raw` is written as LZMA2 "uncompressed" chunks by writeStoredXz.
// Decompressing the file yields one ordinary msgpack document, and `xz -d` or any xz library
// reads it as usual. loadState itself reads the stored stream straight into `raw`'s buffer
// (readStoredXz) and decompresses only the first stream; a file that ends otherwise
// (recompressed by hand, say) is decompressed the general way.
//
// Loading never throws and never returns a partly trusted state: the whole file is decoded and
// checked into fresh objects first, and any problem yields an empty state plus a warning (and a
// copy of the bad file for a bug report). Starting from scratch only costs a rebuild; a wrong
// fingerprint could skip a step that must run.
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from "node:fs";
import { copyFile, mkdir, open, rename, unlink, type FileHandle } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { Duplex } from "node:stream";
// xz's CRC32 check is zlib's CRC32 (the same polynomial), and zlib's is several times faster
// than lzma-native's: 39 ms less to save 100,000 steps.
import { crc32 } from "node:zlib";
// The subpath is msgpackr without its native string extractor and streams: loading those took
// about 14 ms of every start. Reading uses a decoder of our own (msgpack-read.ts).
import { Packr } from "msgpackr/pack";
import { DIGEST_SLOT, emptyState, FileHashes, type FileColumns, type SlotFinder } from "./filehashes.js";
import { isGeneration } from "./journal.js";
import { decodeMsgpack } from "./msgpack-read.js";
import { tempSuffix } from "./random.js";
import { VarintReader, VarintWriter } from "./varint.js";
import { isXz, xzDecompressSync } from "./xz-read.js";
import {
  fingerprintLength,
  FP_DIGEST_LEN,
  FP_SHORT_LEN,
  NO_ENV,
  registerCompactBuffer,
  type Fingerprint,
  type GlobRecord,
  type SavedState,
  type SavedStep,
} from "./types.js";

export const STATE_FILE = "workflow.mpk.xz";

const FORMAT = "tsup-workflow";
/**
 * Written by this tsup. Still read: version 2 (all strings in `strings`) and version 1 (files
 * and steps as msgpack binaries, all compressed).
 */
const VERSION = 3;

/*
 * xz settings for the compressed stream (everything but `raw`), chosen by measurement.
 * Workload: 100,000 steps with 1 input, 1 output and a fingerprint each, 200,000 file hashes
 * (msgpack document 37.7 MB: 18.5 MB compressed part, 19.2 MB `raw`). Machine: the 2-core dev
 * box, Node 20.20.2, liblzma 5.2.3 (lzma-native 8.0.6), with other jobs keeping the load average
 * at 2-3, so figures are ranges over several runs. "xz" is the compression step alone; encoding
 * the document adds 0.25-0.5 s, decoding it 0.35-0.55 s.
 *
 *   layout                   preset threads   xz            unxz          file
 *   raw stored (this file)   0      2         0.38-0.55 s   0.20-0.36 s   19.7 MB   <- chosen
 *   raw stored               0      1         0.53-0.68 s   0.19-0.40 s   19.7 MB
 *   raw stored               1      2         0.58-0.59 s   0.22-0.32 s   19.8 MB
 *   raw stored               3      2         0.86-0.98 s   0.30-0.35 s   19.7 MB
 *   raw stored               6      2         14.3 s        0.49 s        19.6 MB
 *   all through xz           0      2         2.2-2.6 s     0.37-0.42 s   16.2 MB
 *   all through xz           1      2         4.3-4.7 s     0.40-0.43 s   16.2 MB
 *
 * End to end with the chosen settings: saveState 0.74-1.0 s, loadState in a fresh process
 * 0.57-0.87 s. Higher presets only shave bytes off a part that already shrinks 12-fold, at
 * several times the cost; two threads match the two cores.
 *
 * Version 2 (2026-11-26, the 100,000-step state of the benchmark's flat workload, 100,000 steps
 * and 200,000 files): the compressed part was 12.3 MB, of which the file columns (2.4 MB) and
 * step tokens (3.9 MB) took 300 of xz's 540 ms of CPU for 0.3 MB of output. Stored in `raw`,
 * the file grows from 21.2 to 27.2 MB (25.3 MB once fingerprints refer to the step's own paths)
 * and xz only sees `commands` and `strings` (6 MB, 0.1 MB out). Tried as well, all slower than preset 0 for the same input: LZMA2 with mode fast and
 * match finder hc3 or hc4, nice_len 8 to 273, depth 1 to 8 (0.52-0.80 s against 0.28-0.37 s).
 */
const XZ_PRESET = 0;
const XZ_THREADS = 2;

// lzma-native ships no type declarations; this is the part of its API we use.
interface LzmaNative {
  createCompressor(options: { preset: number; threads?: number }): Duplex;
}
// Loaded when a state is saved: reading needs only its native binding (xz-read.ts), and loading
// the package itself (with readable-stream) took about 10 ms of every start.
let lzmaPackage: LzmaNative | undefined;
const lzma = (): LzmaNative => (lzmaPackage ??= createRequire(import.meta.url)("lzma-native") as LzmaNative);

export interface LoadWarning {
  /** One line for the report. */
  message: string;
  /** What exactly was wrong, and where the bad file was kept. */
  details: string;
  /** Path of the copy of the unreadable file, when the copy could be made. */
  keptCopy?: string;
}

export interface LoadResult {
  state: SavedState;
  warning?: LoadWarning;
  /** True only when a saved state was read and fully validated. */
  loaded: boolean;
  /** The file's generation id, when it has one (see the top of this module). */
  generation?: string;
}

const FLAG_ORPHAN = 1;
const FLAG_OPTIONAL = 2;
const FLAG_BLOCK = 4;
const FLAG_ALL = FLAG_ORPHAN | FLAG_OPTIONAL | FLAG_BLOCK;

const FILE_COLUMNS = 4;
/** size, mtimeMs and ino of one file in `raw`. */
const STAT_BYTES = 24;
/** Size of the buffers fingerprint digests are collected in while saving (see Encoder.put). */
const FP_CHUNK = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Saving

/** Thrown by saveState for values that loadState would refuse: a bug in the caller, not an I/O problem. */
function invalid(what: string): never {
  throw new TypeError(`saveState: ${what}`);
}

class Encoder {
  /** Strings other than file paths, which take the indices after the file table's paths. */
  readonly extra: string[] = [];
  private readonly index = new Map<string, number>();
  readonly commands: string[] = [];
  readonly poolSizes: number[] = [];
  readonly tokens: VarintWriter;
  /** The start of `raw` as buffers to write in order: file stats, file digests, then fingerprints. */
  readonly raw: Buffer[] = [];
  /** The buffer fingerprints are being written to, and the position in it. */
  private chunk: Buffer = Buffer.alloc(0);
  private chunkPos = 0;
  /** The file table as encoded: path i is string i. */
  fileColumns: FileColumns;

  private readonly fileSlots: SlotFinder;

  constructor(state: SavedState) {
    // About 40 bytes per step with a fingerprint: growing the buffer would copy it.
    this.tokens = new VarintWriter(40 * state.steps.length);
    this.fileColumns = state.files.snapshot();
    this.fileSlots = state.files.finderIn(this.fileColumns);
  }

  /**
   * The string index of `s`. A file path is found through the table's own map (its slot is its
   * index): a second map of 200,000 paths, built at every save, was a large part of saving.
   */
  id(s: string): number {
    let i = this.index.get(s);
    if (i !== undefined) return i;
    const slot = this.fileSlots.find(s);
    if (slot >= 0) return slot;
    if (typeof s !== "string") invalid(`expected a string, got ${typeof s}`);
    i = this.fileColumns.count + this.extra.length;
    this.extra.push(s);
    this.index.set(s, i);
    return i;
  }

  /**
   * Append fingerprint bytes to `raw`. They go into chunks of FP_CHUNK bytes rather than one
   * buffer of the exact size, which took a pass over all steps to find out first.
   */
  private put(b: Uint8Array): void {
    if (this.chunkPos + b.length > this.chunk.length) {
      this.flushChunk();
      this.chunk = Buffer.allocUnsafeSlow(Math.max(FP_CHUNK, b.length));
    }
    this.chunk.set(b, this.chunkPos);
    this.chunkPos += b.length;
  }

  private flushChunk(): void {
    if (this.chunkPos > 0) this.raw.push(this.chunk.subarray(0, this.chunkPos));
    this.chunkPos = 0;
  }

  /** All of `raw` before the file columns, once every step is encoded. */
  fingerprintsDone(): Buffer[] {
    this.flushChunk();
    this.chunk = Buffer.alloc(0);
    return this.raw;
  }

  private list(items: readonly string[]): void {
    const t = this.tokens;
    t.uint(items.length);
    for (let i = 0; i < items.length; i++) t.uint(this.id(items[i]!));
  }

  /**
   * The file table: stats and digests go to `raw`; returns its columns of paths, modes, digest
   * lengths. The table's own columns are written as they are (views, no copies) where the file
   * has the same layout.
   */
  files(): Buffer[] {
    // Values were checked as they came in (FileHashes.set, the decoder).
    const c = this.fileColumns;
    const n = c.count;
    let digests: Buffer;
    let digestBytes = 0;
    for (let i = 0; i < n; i++) digestBytes += c.lens[i]!;
    if (digestBytes === DIGEST_SLOT * n) digests = bytesOf(c.digests);
    else {
      // Some are directory markers: the file stores each digest at its own length.
      digests = Buffer.allocUnsafeSlow(digestBytes);
      let at = 0;
      for (let i = 0; i < n; i++) {
        const len = c.lens[i]!;
        digests.set(c.digests.subarray(DIGEST_SLOT * i, DIGEST_SLOT * i + len), at);
        at += len;
      }
    }
    const paths = new Uint32Array(n);
    for (let i = 0; i < n; i++) paths[i] = i;
    this.raw.push(littleEndian(c.stats), digests);
    return [littleEndian(paths), littleEndian(c.modes), littleEndian(new Uint32Array(c.lens))];
  }

  /**
   * Tokens of one step (its command is in `commands`): workdir, creator + 1, flags, inp, out,
   * vol, env, pool + 1 (0 = none), statics, pool count and per pool its name (sizes go to
   * `poolSizes`), glob count and per glob (patterns, substitution count and (name, value) pairs,
   * workdir, matches), amended (0 = none, else 1 and four lists), fingerprint (0 = none, else 1,
   * input paths, env count and (name, value + 1 or 0) pairs, output paths). A list is a count
   * followed by string indices.
   */
  step(s: SavedStep, i: number, nSteps: number): void {
    const t = this.tokens;
    if (typeof s.command !== "string") invalid(`step ${i}: command must be a string`);
    if (!Number.isInteger(s.creator) || s.creator < -1 || s.creator >= nSteps || s.creator === i) {
      invalid(`step ${i}: creator ${s.creator} is not -1 or the index of another step`);
    }
    this.commands.push(s.command);
    t.uint(this.id(s.workdir));
    t.uint(s.creator + 1);
    t.uint((s.orphan ? FLAG_ORPHAN : 0) | (s.optional ? FLAG_OPTIONAL : 0) | (s.block ? FLAG_BLOCK : 0));
    this.list(s.inp);
    this.list(s.out);
    this.list(s.vol);
    this.list(s.env);
    t.uint(s.pool === null ? 0 : this.id(s.pool) + 1);
    this.list(s.statics);
    t.uint(s.pools.length);
    for (const [name, size] of s.pools) {
      if (typeof size !== "number" || !Number.isFinite(size)) invalid(`step ${i}: pool ${name} size must be a finite number`);
      t.uint(this.id(name));
      this.poolSizes.push(size);
    }
    t.uint(s.globs.length);
    for (const g of s.globs) {
      this.list(g.patterns);
      const subs = Object.entries(g.subs);
      t.uint(subs.length);
      for (const [k, v] of subs) {
        if (typeof v !== "string") invalid(`step ${i}: glob substitution ${k} must be a string`);
        t.uint(this.id(k));
        t.uint(this.id(v));
      }
      t.uint(this.id(g.workdir));
      this.list(g.matches);
      t.uint(g.deferred ? 1 : 0);
    }
    const a = s.amended;
    if (a === null) t.uint(0);
    else {
      t.uint(1);
      this.list(a.inp);
      this.list(a.out);
      this.list(a.vol);
      this.list(a.env);
    }
    const fp = s.fingerprint;
    if (fp === null) t.uint(0);
    else {
      t.uint(1);
      this.fingerprint(fp, i, s);
    }
  }

  private fingerprint(fp: Fingerprint, i: number, s: SavedStep): void {
    const t = this.tokens;
    const b = fp.bytes;
    if (!(b instanceof Uint8Array) || b.length !== fingerprintLength(fp.inputs.length, fp.outputs.length)) {
      invalid(`step ${i}: fingerprint bytes must be two ${FP_DIGEST_LEN}-byte digests and ${FP_SHORT_LEN} bytes per input and output`);
    }
    // The file stores the two digests, then the short hashes of the inputs and of the outputs:
    // the layout of Fingerprint.bytes, so they go to `raw` in one piece.
    this.put(b);
    this.pathList(fp.inputs, s);
    t.uint(fp.env.length);
    for (const [name, value] of fp.env) {
      if (value !== null && typeof value !== "string") invalid(`step ${i}: env value must be a string or null`);
      t.uint(this.id(name));
      t.uint(value === null ? 0 : this.id(value) + 1);
    }
    this.pathList(fp.outputs, s);
  }

  /**
   * A fingerprint's paths, each as 2 * (index in the step's own [workdir, ...inp, ...out]) or,
   * for a path not among those, 2 * (string index) + 1. Nearly every fingerprint path is one of
   * the step's own, and finding it there is far cheaper than the string table's map lookup.
   */
  private pathList(paths: readonly string[], s: SavedStep): void {
    const t = this.tokens;
    t.uint(paths.length);
    for (let k = 0; k < paths.length; k++) {
      const path = paths[k]!;
      const local = localIndex(s, path);
      t.uint(local >= 0 ? 2 * local : 2 * this.id(path) + 1);
    }
  }
}

/** Steps with more inputs and outputs than this are not searched (see localIndex). */
const LOCAL_SEARCH_MAX = 16;

/** Index of `path` in [workdir, ...inp, ...out] of `s`, or -1 (also for long lists). */
function localIndex(s: SavedStep, path: string): number {
  if (path === s.workdir) return 0;
  const inp = s.inp;
  const out = s.out;
  if (inp.length + out.length > LOCAL_SEARCH_MAX) return -1;
  for (let j = 0; j < inp.length; j++) if (inp[j] === path) return 1 + j;
  for (let j = 0; j < out.length; j++) if (out[j] === path) return 1 + inp.length + j;
  return -1;
}

/** The bytes of a typed array, without a copy. */
function bytesOf(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

const IS_LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** The bytes of a typed array of numbers in little-endian order (the file's), without a copy where possible. */
function littleEndian(a: Uint32Array | Float64Array): Buffer {
  if (IS_LITTLE_ENDIAN) return bytesOf(a);
  const b = Buffer.allocUnsafe(a.byteLength);
  if (a instanceof Uint32Array) for (let i = 0; i < a.length; i++) b.writeUInt32LE(a[i]!, 4 * i);
  else for (let i = 0; i < a.length; i++) b.writeDoubleLE(a[i]!, 8 * i);
  return b;
}

/** Copy little-endian numbers from the file into an aligned typed array. */
function fromLittleEndian<T extends Uint32Array | Float64Array>(into: T, bytes: Buffer): T {
  if (IS_LITTLE_ENDIAN) bytesOf(into).set(bytes.subarray(0, into.byteLength));
  else if (into instanceof Uint32Array) for (let i = 0; i < into.length; i++) into[i] = bytes.readUInt32LE(4 * i);
  else for (let i = 0; i < into.length; i++) into[i] = bytes.readDoubleLE(8 * i);
  return into;
}

/** The msgpack header of an array of `n` elements (always the 32-bit form). */
function arrayHeader(n: number): Buffer {
  const b = Buffer.allocUnsafe(5);
  b[0] = 0xdd;
  b.writeUInt32BE(n, 1);
  return b;
}

/**
 * The elements `list[from..to)` of a msgpack array of strings, written directly: msgpackr grows
 * its buffer to about twice what it needs, some 12 MB more for the strings and commands of
 * 100,000 steps. Nearly every list is all ASCII (packAsciiStrings); a list that is not is written
 * string by string as UTF-8.
 */
function packStrings(list: readonly string[], from = 0, to = list.length): Buffer {
  const ascii = packAsciiStrings(list, from, to);
  if (ascii !== undefined) return ascii;
  let b = Buffer.allocUnsafe(Math.max(64, 24 * (to - from)));
  let p = 0;
  for (let i = from; i < to; i++) {
    const str = list[i]!;
    // Room for the longest header and the longest UTF-8 form.
    if (p + 5 + 3 * str.length > b.length) {
      const bigger = Buffer.allocUnsafe(Math.max(2 * b.length, p + 5 + 3 * str.length));
      b.copy(bigger, 0, 0, p);
      b = bigger;
    }
    const n = Buffer.byteLength(str, "utf8");
    p = putStringHeader(b, p, n);
    p += b.write(str, p, n, "utf8");
  }
  return b.subarray(0, p);
}

// eslint-disable-next-line no-control-regex
const NOT_ASCII = /[^\x00-\x7f]/;

/**
 * packStrings for lists of ASCII strings (nearly always: paths and commands), or undefined when
 * some string is not. The strings are joined into one and turned into bytes in one call, then
 * copied out between their headers: reading them a character at a time took 0.18 s for the
 * 300,000 strings of 100,000 steps, in a heap where they lie scattered.
 */
function packAsciiStrings(list: readonly string[], from: number, to: number): Buffer | undefined {
  const joined = (from === 0 && to === list.length ? list : list.slice(from, to)).join("");
  if (NOT_ASCII.test(joined)) return undefined;
  const chars = Buffer.from(joined, "latin1");
  const b = Buffer.allocUnsafe(chars.length + 5 * (to - from));
  let p = 0;
  let q = 0;
  for (let i = from; i < to; i++) {
    const n = list[i]!.length;
    p = putStringHeader(b, p, n);
    for (let k = 0; k < n; k++) b[p++] = chars[q++]!;
  }
  return b.subarray(0, p);
}

/** Write the msgpack header of a string of `n` UTF-8 bytes at `p`; returns the position after it. */
function putStringHeader(b: Buffer, p: number, n: number): number {
  if (n < 32) b[p++] = 0xa0 | n;
  else if (n < 0x100) {
    b[p++] = 0xd9;
    b[p++] = n;
  } else if (n < 0x10000) {
    b[p++] = 0xda;
    b.writeUInt16BE(n, p);
    p += 2;
  } else {
    b[p++] = 0xdb;
    b.writeUInt32BE(n, p);
    p += 4;
  }
  return p;
}

/** Steps encoded between two parts handed on (see encodeParts). */
const STEPS_PER_PART = 4096;

/**
 * The msgpack document as a sequence of parts: everything up to and including the header of
 * `raw`'s binary value, then (the generator's return value) the contents of `raw` as buffers to
 * write in order, so that the parts followed by raw are the complete document.
 *
 * `raw` holds (version 2) the stats and digests, then the three file table columns (u32 LE
 * each), then the step tokens (`stepBytes` of them). The columns and tokens used to be msgpack
 * binaries in the compressed part, but xz's encoder is slow (~40 MB/s on two threads here) and
 * at 100,000 steps they were 6.3 of the 12.3 MB it had to get through, for a gain of 6 MB of
 * file size. Stored, they cost nothing to write and are read straight into place.
 *
 * Parts come out while the steps are still being encoded, so that saveState compresses them
 * meanwhile on xz's own threads: `commands`, written step by step, comes first and `strings`,
 * complete only after the last step, last. The decoder reads the map's fields in any order.
 */
function* encodeParts(state: SavedState, generation?: string): Generator<Buffer, Buffer[], void> {
  if (generation !== undefined && !isGeneration(generation)) {
    invalid(`generation ${JSON.stringify(generation)} is not 32 hex digits`);
  }
  const enc = new Encoder(state);
  const packr = new Packr({ useRecords: false });
  const n = state.steps.length;
  // The map framing is written here so that `raw` never has to be copied through msgpackr: a
  // fixmap header (at most 15 entries), then each key and value, then the key "raw" and a bin32
  // header whose body is `raw` itself.
  const fieldCount = 10 + (generation === undefined ? 0 : 1);
  yield Buffer.concat([
    Buffer.of(0x80 | fieldCount),
    packr.pack("format"),
    packr.pack(FORMAT),
    packr.pack("version"),
    packr.pack(VERSION),
    packr.pack("stepCount"),
    packr.pack(n),
    packr.pack("fileCount"),
    packr.pack(state.files.size),
  ]);
  // The file table first: its paths are the first strings, in order, and go to xz first, so
  // that it compresses them while the steps are encoded.
  const columns = enc.files();
  yield Buffer.concat([packr.pack("strings"), arrayHeader(enc.fileColumns.count)]);
  yield packStrings(enc.fileColumns.paths);
  yield Buffer.concat([packr.pack("commands"), arrayHeader(n)]);
  for (let from = 0; from < n; from += STEPS_PER_PART) {
    const to = Math.min(n, from + STEPS_PER_PART);
    for (let i = from; i < to; i++) enc.step(state.steps[i]!, i, n);
    yield packStrings(enc.commands, from, to);
  }
  yield Buffer.concat([packr.pack("poolSizes"), packr.pack(enc.poolSizes)]);
  // The other strings, known only now: few, as nearly all are paths of files.
  yield Buffer.concat([packr.pack("moreStrings"), arrayHeader(enc.extra.length)]);
  yield packStrings(enc.extra);
  if (generation !== undefined) yield Buffer.concat([packr.pack("generation"), packr.pack(generation)]);
  const tokens = enc.tokens.buf.subarray(0, enc.tokens.pos);
  const raw = [...enc.fingerprintsDone(), ...columns, tokens];
  let rawLength = 0;
  for (const b of raw) rawLength += b.length;
  const binHeader = Buffer.allocUnsafe(5);
  binHeader[0] = 0xc6;
  binHeader.writeUInt32BE(rawLength, 1);
  yield Buffer.concat([packr.pack("stepBytes"), packr.pack(tokens.length), packr.pack("raw"), binHeader]);
  return raw;
}

/** The uncompressed msgpack document for a state; exported for tests and benchmarks. */
export function encodeState(state: SavedState): Buffer {
  const parts: Buffer[] = [];
  const it = encodeParts(state);
  let r = it.next();
  for (; !r.done; r = it.next()) parts.push(r.value);
  return Buffer.concat([...parts, ...r.value]);
}

// --- A hand-written xz stream holding `data` in LZMA2 uncompressed chunks (xz file format 1.2).

const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
/** Stream flags: check type CRC32, the cheapest integrity check xz offers. */
const XZ_FLAGS = [0x00, 0x01];
const LZMA2_CHUNK = 1 << 16;

function vli(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

function u32le(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

function padTo4(bytes: number[]): void {
  while (bytes.length % 4 !== 0) bytes.push(0);
}

function withCrc(bytes: number[]): Buffer {
  const b = Buffer.from(bytes);
  return Buffer.concat([b, Buffer.from(u32le(crc32(b)))]);
}

/** Everything of a stored stream (writeStoredXz) but the data and its check, for `length` bytes. */
interface StoredFrame {
  streamHeader: Buffer;
  blockHeader: Buffer;
  /** Size of the LZMA2 chunks with their end byte, before the block padding. */
  compressedSize: number;
  /** Including the block padding. */
  paddedSize: number;
  index: Buffer;
  footer: Buffer;
}

function storedFrame(length: number): StoredFrame {
  const chunks = Math.ceil(length / LZMA2_CHUNK);
  // Each chunk: control byte, 16-bit big-endian (size - 1), data; then one end-of-data byte.
  const compressedSize = length + 3 * chunks + 1;
  // Block header: size byte (set below), flags (one filter, both sizes present), sizes, then the
  // filter: LZMA2 (0x21) with one property byte, dictionary size code 8 = 64 KiB (one chunk).
  const header = [0, 0x40 | 0x80, ...vli(compressedSize), ...vli(length), 0x21, 0x01, 8];
  padTo4(header);
  // The size byte counts the CRC that follows: real size = (byte + 1) * 4.
  header[0] = (header.length + 4) / 4 - 1;
  const blockHeader = withCrc(header);
  const unpaddedSize = blockHeader.length + compressedSize + 4;
  const index = [0x00, ...vli(1), ...vli(unpaddedSize), ...vli(length)];
  padTo4(index);
  const indexBytes = withCrc(index);
  const footerBody = Buffer.from([...u32le(indexBytes.length / 4 - 1), ...XZ_FLAGS]);
  const footer = Buffer.concat([Buffer.from(u32le(crc32(footerBody))), footerBody, Buffer.from("YZ")]);
  const streamHeader = Buffer.concat([Buffer.from(XZ_MAGIC), withCrc(XZ_FLAGS)]);
  const paddedSize = compressedSize + ((4 - (compressedSize % 4)) % 4);
  return { streamHeader, blockHeader, compressedSize, paddedSize, index: indexBytes, footer };
}

/**
 * One complete xz stream whose single block stores the concatenation of `data` without
 * compressing it, as buffers to write in order. The chunks are views, not a copy: 20 MB less to
 * allocate and copy for 100,000 steps (writev takes the list as it is); a chunk that spans two
 * buffers is written as two views.
 */
export function writeStoredXz(data: Buffer[]): Buffer[] {
  let length = 0;
  for (const b of data) length += b.length;
  const f = storedFrame(length);
  const parts: Buffer[] = [f.streamHeader, f.blockHeader];
  let crc = 0;
  let k = 0;
  let at = 0;
  for (let start = 0; start < length; start += LZMA2_CHUNK) {
    const len = Math.min(LZMA2_CHUNK, length - start);
    // Control byte (0x01 resets the dictionary, required for the first chunk; 0x02 continues
    // it), then the 16-bit big-endian size - 1.
    parts.push(Buffer.of(start === 0 ? 0x01 : 0x02, (len - 1) >>> 8, (len - 1) & 0xff));
    for (let left = len; left > 0; ) {
      const b = data[k]!;
      const take = Math.min(left, b.length - at);
      const view = b.subarray(at, at + take);
      parts.push(view);
      // Never for an empty view: zlib's crc32 of a zero-length buffer without memory behind it
      // returns 0 (its initial value) instead of `crc`.
      if (take > 0) crc = crc32(view, crc);
      left -= take;
      at += take;
      if (at === b.length) {
        k++;
        at = 0;
      }
    }
  }
  // The end of the LZMA2 data, then the block padding.
  parts.push(Buffer.alloc(1 + f.paddedSize - f.compressedSize));
  parts.push(Buffer.from(u32le(crc)), f.index, f.footer);
  return parts;
}

/** Reads `len` bytes at `pos` of the state file (fewer only at its end). */
type ReadAt = (pos: number, len: number) => Buffer;

/** Chunks read at a time by readStoredXz: 1 MiB of data. */
const CHUNKS_PER_READ = 16;

/**
 * When the file (of `size` bytes) ends in a stream exactly as writeStoredXz writes it, the data
 * of that stream (in a buffer of its own) and the part of the file before it; otherwise
 * undefined, and the caller decompresses the file the general way. Loading reads `raw` this way,
 * straight from the file into its buffer, instead of reading the whole file and passing it
 * through liblzma into one decompressed document to copy `raw` out of: about 60 MB less garbage
 * for 100,000 steps (it stays until the next full garbage collection, often the end of the run),
 * and faster. The frame is compared byte for byte with the one the writer would produce, and
 * the data is checked against the stream's CRC32.
 */
function readStoredXz(size: number, readAt: ReadAt): { before: Buffer; data: Buffer } | undefined {
  // Footer (12 bytes) and the index before it: 0x00, count 1, unpadded and uncompressed size
  // (varints), padding, CRC32. 64 bytes hold every such index.
  const tailLen = Math.min(size, 64);
  const tail = readAt(size - tailLen, tailLen);
  if (tail.length !== tailLen || tailLen < 12 + 8) return undefined;
  const indexSize = (tail.readUInt32LE(tailLen - 8) + 1) * 4;
  const indexAt = tailLen - 12 - indexSize;
  if (indexAt < 0 || tail[indexAt] !== 0x00) return undefined;
  let p = indexAt + 1;
  const vli = (): number | undefined => {
    let v = 0;
    let scale = 1;
    for (let k = 0; k < 7 && p < tailLen - 12; k++) {
      const b = tail[p++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) return v;
      scale *= 0x80;
    }
    return undefined;
  };
  if (vli() !== 1 || vli() === undefined) return undefined;
  const length = vli();
  if (length === undefined || length > size) return undefined;
  const f = storedFrame(length);
  const same = (expected: Buffer, b: Buffer, at: number): boolean =>
    at >= 0 && at + expected.length <= b.length && b.compare(expected, 0, expected.length, at, at + expected.length) === 0;
  if (!same(f.footer, tail, tailLen - 12) || !same(f.index, tail, indexAt)) return undefined;
  const indexStart = size - 12 - indexSize;
  const blockStart = indexStart - 4 - f.paddedSize - f.blockHeader.length;
  const streamStart = blockStart - f.streamHeader.length;
  if (streamStart <= 0) return undefined;
  const headers = readAt(streamStart, f.streamHeader.length + f.blockHeader.length);
  if (!same(f.streamHeader, headers, 0) || !same(f.blockHeader, headers, f.streamHeader.length)) return undefined;

  const data = Buffer.allocUnsafeSlow(length);
  const chunkStart = blockStart + f.blockHeader.length;
  const stride = 3 + LZMA2_CHUNK;
  const nChunks = Math.ceil(length / LZMA2_CHUNK);
  for (let c0 = 0; c0 < nChunks; c0 += CHUNKS_PER_READ) {
    const c1 = Math.min(nChunks, c0 + CHUNKS_PER_READ);
    const wanted = (c1 - c0 - 1) * stride + 3 + Math.min(LZMA2_CHUNK, length - (c1 - 1) * LZMA2_CHUNK);
    const block = readAt(chunkStart + c0 * stride, wanted);
    if (block.length !== wanted) corrupt("xz data is damaged or truncated (stored data ends early)");
    for (let c = c0; c < c1; c++) {
      const at = (c - c0) * stride;
      const len = Math.min(LZMA2_CHUNK, length - c * LZMA2_CHUNK);
      if (block[at] !== (c === 0 ? 0x01 : 0x02) || block[at + 1] !== (len - 1) >>> 8 || block[at + 2] !== ((len - 1) & 0xff)) {
        corrupt("xz data is damaged or truncated (bad stored chunk header)");
      }
      block.copy(data, c * LZMA2_CHUNK, at + 3, at + 3 + len);
    }
  }
  // The end byte and the block padding (all zero), then the check.
  const endLen = 1 + f.paddedSize - f.compressedSize;
  const end = readAt(chunkStart + f.compressedSize - 1, endLen + 4);
  if (end.length !== endLen + 4) corrupt("xz data is damaged or truncated (stored data ends early)");
  for (let i = 0; i < endLen; i++) if (end[i] !== 0) corrupt("xz data is damaged or truncated (bad end of stored data)");
  if (end.readUInt32LE(endLen) !== crc32(data) >>> 0) corrupt("xz data is damaged or truncated (stored data fails its check)");
  return { before: readAt(0, streamStart), data };
}

/** The complete file contents for a state, as a list of buffers to write in order. */
export async function encodeFile(state: SavedState, generation?: string): Promise<Buffer[]> {
  const stream = lzma().createCompressor({ preset: XZ_PRESET, threads: XZ_THREADS });
  const out: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    stream.on("data", (b: Buffer) => out.push(b));
    stream.once("end", () => resolve());
    stream.once("error", reject);
  });
  // Awaited below; until then a failure must not count as an unhandled rejection.
  done.catch(() => undefined);
  const it = encodeParts(state, generation);
  let r = it.next();
  while (!r.done) {
    // No waiting for "drain": the parts exist anyway, and the stream holds them without copies
    // (the binding copies one chunk at a time). Parts are not concatenated first, which cost
    // about 30 MB of peak memory at 100,000 steps. The turn of the event loop lets the stream
    // hand the next part to liblzma's threads while the next steps are encoded here.
    stream.write(r.value);
    await new Promise<void>((resolve) => setImmediate(resolve));
    r = it.next();
  }
  stream.end();
  await done;
  return [Buffer.concat(out), ...writeStoredXz(r.value)];
}

/**
 * Write the state atomically: a reader (or a crash) sees either the old file or the new one,
 * never a half-written file. Throws on I/O errors (disk full, permissions) and on invalid state.
 * `generation` ties a journal to this file (the director passes a new one with every save).
 */
export async function saveState(stepupDir: string, state: SavedState, generation?: string): Promise<void> {
  const parts = await encodeFile(state, generation);
  await mkdir(stepupDir, { recursive: true });
  const target = join(stepupDir, STATE_FILE);
  // Same directory as the target, so that rename() is atomic (no cross-device move).
  const tmp = join(stepupDir, `${STATE_FILE}.tmp-${tempSuffix()}`);
  let renamed = false;
  try {
    const fh = await open(tmp, "wx");
    try {
      await fh.writev(parts);
      // Without fsync a power loss after rename can leave an empty or partial file under the
      // final name on some file systems.
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
    renamed = true;
    await syncDir(stepupDir);
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}

/** Make the rename itself durable. Not possible on every platform; best effort only. */
async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // Windows cannot open directories; the data itself was already synced.
  }
}

// ---------------------------------------------------------------------------------------------
// Loading

/** Why the file cannot be trusted: thrown by decodeState, turned into a warning by loadState. */
class Corrupt extends Error {}

function corrupt(msg: string): never {
  throw new Corrupt(msg);
}

function asBytes(x: unknown, what: string): Buffer {
  if (!(x instanceof Uint8Array)) corrupt(`${what}: expected binary data`);
  return Buffer.isBuffer(x) ? x : Buffer.from(x.buffer, x.byteOffset, x.byteLength);
}

function asArray(x: unknown, what: string): unknown[] {
  if (!Array.isArray(x)) corrupt(`${what}: expected an array`);
  return x as unknown[];
}

function asStrings(x: unknown, what: string): string[] {
  const a = asArray(x, what);
  for (let i = 0; i < a.length; i++) if (typeof a[i] !== "string") corrupt(`${what}[${i}]: expected a string`);
  return a as string[];
}

function isCount(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0;
}

/**
 * Most lists in a record are empty (vol, env, statics, pools, globs, ...): loaded records share
 * one frozen empty list instead of six new ones each (about 20 MB for 100,000 steps). Nothing
 * changes a loaded record's lists in place; frozen, a change would throw instead of spreading.
 */
const NONE: never[] = Object.freeze([]) as unknown as never[];

/** Reads the varint token stream and `raw`, checking every value before it is used. */
class Reader extends VarintReader {
  private rawPos = 0;
  private poolPos = 0;
  /** Where we are, for the message when something is wrong (a string per step would be garbage). */
  private atStep = -1;
  private atField = "";

  constructor(
    /** Format version of the file: 1 has no step-local paths in fingerprints. */
    private readonly version: 1 | 2,
    tokens: Buffer,
    private readonly strings: string[],
    private readonly commands: string[],
    private readonly poolSizes: unknown[],
    /**
     * The stats and digests part of a private copy of `raw`: digests are views into it, so
     * nothing else stays alive for them (but the rest of that copy: the columns and tokens).
     */
    private readonly raw: Buffer,
  ) {
    super(tokens, 0, tokens.length);
  }

  override fail(msg: string): never {
    const where = this.atStep >= 0 ? `steps[${this.atStep}]${this.atField && "."}${this.atField}` : this.atField;
    corrupt(`${where}: ${msg}`);
  }

  str(): string {
    const v = this.uint();
    if (v >= this.strings.length) this.fail(`string index ${v} out of range`);
    return this.strings[v]!;
  }

  /** A string index stored plus one, with 0 for null. */
  strOrNull(): string | null {
    const v = this.uint();
    if (v === 0) return null;
    if (v > this.strings.length) this.fail(`string index ${v - 1} out of range`);
    return this.strings[v - 1]!;
  }

  list(): string[] {
    const n = this.count(1);
    if (n === 0) return NONE;
    const out = new Array<string>(n);
    for (let i = 0; i < n; i++) out[i] = this.str();
    return out;
  }

  flag(): boolean {
    const v = this.uint();
    if (v > 1) this.fail(`expected 0 or 1, got ${v}`);
    return v === 1;
  }

  bytes(len: number): Uint8Array {
    if (this.rawPos + len > this.raw.length) this.fail("digest data ends early");
    const view = new Uint8Array(this.raw.buffer, this.raw.byteOffset + this.rawPos, len);
    this.rawPos += len;
    return view;
  }

  /**
   * A fingerprint's paths; from version 2 on, paths may refer to the step's own (Encoder.pathList).
   * Their short hashes are in `raw`, read by the caller.
   */
  pathList(workdir: string, inp: string[], out: string[]): string[] {
    const n = this.count(1);
    if (n === 0) return NONE;
    const list = new Array<string>(n);
    for (let i = 0; i < n; i++) {
      if (this.version === 1) {
        list[i] = this.str();
        continue;
      }
      const v = this.uint();
      if (v % 2 === 1) {
        const k = (v - 1) / 2;
        if (k >= this.strings.length) this.fail(`string index ${k} out of range`);
        list[i] = this.strings[k]!;
      } else {
        const j = v / 2;
        if (j === 0) list[i] = workdir;
        else if (j <= inp.length) list[i] = inp[j - 1]!;
        else if (j <= inp.length + out.length) list[i] = out[j - 1 - inp.length]!;
        else this.fail(`path ${j} of the step out of range`);
      }
    }
    return list;
  }

  poolSize(): number {
    if (this.poolPos >= this.poolSizes.length) this.fail("missing pool size");
    const v = this.poolSizes[this.poolPos++];
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(`pool size ${String(v)} is not a number`);
    return v;
  }

  files(x: unknown): FileHashes {
    this.atField = "files";
    const cols = asArray(x, "files");
    if (cols.length !== FILE_COLUMNS) this.fail(`expected ${FILE_COLUMNS} columns`);
    const count = cols[0];
    if (!isCount(count)) this.fail("bad count");
    const [pathColumn, modeColumn, lenColumn] = cols.slice(1).map((c, i) => {
      const b = asBytes(c, `files column ${i + 1}`);
      if (b.length !== 4 * count) this.fail(`column ${i + 1} has ${b.length} bytes for ${count} files`);
      return b;
    }) as [Buffer, Buffer, Buffer];
    const raw = this.raw;
    if (STAT_BYTES * count > raw.length) this.fail("file data ends early");
    const stats = fromLittleEndian(new Float64Array(3 * count), raw);
    for (let k = 0; k < stats.length; k++) if (!Number.isFinite(stats[k]!)) this.fail("non-finite size, mtime or inode");
    this.rawPos = STAT_BYTES * count;
    const n = this.strings.length;
    const paths = new Array<string>(count);
    const pathIndex = fromLittleEndian(new Uint32Array(count), pathColumn);
    for (let i = 0; i < count; i++) {
      const p = pathIndex[i]!;
      if (p >= n) this.fail(`string index ${p} out of range`);
      paths[i] = this.strings[p]!;
    }
    const lens32 = fromLittleEndian(new Uint32Array(count), lenColumn);
    const lens = new Uint8Array(count);
    let digestBytes = 0;
    for (let i = 0; i < count; i++) {
      const len = lens32[i]!;
      if (len > DIGEST_SLOT) this.fail(`a digest of ${len} bytes (at most ${DIGEST_SLOT})`);
      lens[i] = len;
      digestBytes += len;
    }
    if (this.rawPos + digestBytes > raw.length) this.fail("digest data ends early");
    const digests = new Uint8Array(DIGEST_SLOT * count);
    const from = raw.subarray(this.rawPos, this.rawPos + digestBytes);
    if (digestBytes === DIGEST_SLOT * count) digests.set(from);
    else {
      let at = 0;
      for (let i = 0; i < count; i++) {
        digests.set(from.subarray(at, at + lens[i]!), DIGEST_SLOT * i);
        at += lens[i]!;
      }
    }
    this.rawPos += digestBytes;
    try {
      return FileHashes.fromColumns({ count, paths, modes: fromLittleEndian(new Uint32Array(count), modeColumn), stats, lens, digests });
    } catch {
      this.fail("the same path appears more than once");
    }
  }

  step(i: number, nSteps: number): SavedStep {
    this.atStep = i;
    this.atField = "";
    const command = this.commands[i]!;
    const workdir = this.str();
    const creator = this.uint() - 1;
    if (creator >= nSteps || creator === i) this.fail(`creator ${creator} is not -1 or another step`);
    const flags = this.uint();
    if ((flags & ~FLAG_ALL) !== 0) this.fail(`${flags} is not a valid flag set`);
    const inp = this.list();
    const out = this.list();
    const vol = this.list();
    const env = this.list();
    const pool = this.strOrNull();
    const statics = this.list();
    const nPools = this.count(1);
    const pools = nPools === 0 ? NONE : new Array<[string, number]>(nPools);
    for (let j = 0; j < nPools; j++) pools[j] = [this.str(), this.poolSize()];
    const nGlobs = this.count(4);
    const globs = nGlobs === 0 ? NONE : new Array<GlobRecord>(nGlobs);
    for (let j = 0; j < nGlobs; j++) {
      this.atField = "globs";
      const patterns = this.list();
      const nSubs = this.count(2);
      const subs = new Array<[string, string]>(nSubs);
      for (let k = 0; k < nSubs; k++) subs[k] = [this.str(), this.str()];
      // fromEntries defines own properties, so even a "__proto__" name stays plain data.
      const workdir = this.str();
      const matches = this.list();
      globs[j] = { patterns, subs: Object.fromEntries(subs), workdir, matches, deferred: this.flag() };
    }
    this.atField = "amended";
    let amended: SavedStep["amended"] = null;
    if (this.flag()) amended = { inp: this.list(), out: this.list(), vol: this.list(), env: this.list() };
    this.atField = "fingerprint";
    let fingerprint: Fingerprint | null = null;
    if (this.flag()) {
      const inputs = this.pathList(workdir, inp, out);
      const nEnv = this.count(2);
      const fpEnv = nEnv === 0 ? NO_ENV : new Array<[string, string | null]>(nEnv);
      for (let j = 0; j < nEnv; j++) fpEnv[j] = [this.str(), this.strOrNull()];
      const outputs = this.pathList(workdir, inp, out);
      // Digests and short hashes are contiguous in `raw` (Encoder.fingerprint): one view.
      const bytes = this.bytes(fingerprintLength(inputs.length, outputs.length));
      fingerprint = { bytes, inputs, env: fpEnv, outputs };
    }
    return {
      command,
      workdir,
      creator,
      orphan: (flags & FLAG_ORPHAN) !== 0,
      inp,
      out,
      vol,
      env,
      pool,
      optional: (flags & FLAG_OPTIONAL) !== 0,
      block: (flags & FLAG_BLOCK) !== 0,
      statics,
      pools,
      globs,
      amended,
      fingerprint,
    };
  }

  finish(): void {
    this.atStep = -1;
    this.atField = "steps";
    if (this.pos !== this.end) this.fail("unused data after the last step");
    if (this.rawPos !== this.raw.length) this.fail("unused digest data");
    if (this.poolPos !== this.poolSizes.length) this.fail("unused pool sizes");
  }
}

/**
 * Decode and validate an uncompressed msgpack document (as made by encodeState). Throws on
 * anything unexpected; exported for tests and benchmarks (loadState is the safe entry point).
 */
export function decodeState(packed: Buffer): SavedState {
  return decodeDocument(packed).state;
}

/** The bytes that end the head of a document (see encode), before the 4-byte length of `raw`. */
const RAW_KEY = Buffer.from([0xa3, 0x72, 0x61, 0x77, 0xc6]);

/**
 * Decode a document whose `raw` bytes were read separately (readStoredXz): `head` is all of it
 * up to the length of `raw`, which must be `raw.length`. Returns undefined when `head` does not
 * end that way, so that the caller can fall back to the general path.
 */
function decodeSplit(head: Buffer, raw: Buffer): { state: SavedState; generation?: string } | undefined {
  const at = head.length - RAW_KEY.length - 4;
  if (at < 0 || head.compare(RAW_KEY, 0, RAW_KEY.length, at, at + RAW_KEY.length) !== 0) return undefined;
  if (head.readUInt32BE(at + RAW_KEY.length) !== raw.length) return undefined;
  // An empty `raw` in the document itself; the real one is passed on.
  head.writeUInt32BE(0, at + RAW_KEY.length);
  return decodeDocument(head, raw);
}

function decodeDocument(packed: Buffer, rawBytes?: Buffer): { state: SavedState; generation?: string } {
  let top: unknown;
  try {
    top = decodeMsgpack(packed);
  } catch (e) {
    corrupt(`not valid msgpack data (${errorText(e)})`);
  }
  if (typeof top !== "object" || top === null || Array.isArray(top) || top instanceof Uint8Array) {
    corrupt("not a tsup workflow file (no format marker)");
  }
  const t = top as Record<string, unknown>;
  if (t["format"] !== FORMAT) corrupt("not a tsup workflow file (no format marker)");
  const version = t["version"];
  if (version !== VERSION && version !== 2 && version !== 1) {
    corrupt(`unsupported format version ${JSON.stringify(version)} (this tsup reads versions 1 to ${VERSION})`);
  }
  let strings = asStrings(t["strings"], "strings");
  if (version === 3) strings = strings.concat(asStrings(t["moreStrings"], "moreStrings"));
  const stepCount = t["stepCount"];
  if (!isCount(stepCount)) corrupt("stepCount: expected a count");
  const commands = asStrings(t["commands"], "commands");
  if (commands.length !== stepCount) corrupt("commands: one per step expected");
  const poolSizes = asArray(t["poolSizes"], "poolSizes");
  // A copy in its own ArrayBuffer (Buffer#slice would share, Buffer.from might use the shared
  // pool), so the decompressed file can be freed and digests can be kept as views (keptBytes).
  const rawView = asBytes(t["raw"], "raw");
  let raw: Buffer;
  if (rawBytes === undefined) {
    raw = Buffer.allocUnsafeSlow(rawView.length);
    rawView.copy(raw);
  } else {
    if (rawView.length !== 0) corrupt("raw: stored twice");
    raw = rawBytes;
  }
  registerCompactBuffer(raw.buffer);
  let tokens: Buffer;
  let fileTable: unknown;
  if (version === 1) {
    tokens = asBytes(t["steps"], "steps");
    fileTable = t["files"];
  } else {
    // See encodeParts: raw ends with the three file columns and the step tokens.
    const fileCount = t["fileCount"];
    const stepBytes = t["stepBytes"];
    if (!isCount(fileCount)) corrupt("fileCount: expected a count");
    if (!isCount(stepBytes)) corrupt("stepBytes: expected a count");
    const tokensAt = raw.length - stepBytes;
    const columnsAt = tokensAt - 12 * fileCount;
    if (columnsAt < 0) corrupt("raw: too short for the file table and the steps");
    tokens = raw.subarray(tokensAt);
    const column = (k: number): Buffer => raw.subarray(columnsAt + 4 * fileCount * k, columnsAt + 4 * fileCount * (k + 1));
    fileTable = [fileCount, column(0), column(1), column(2)];
    raw = raw.subarray(0, columnsAt);
  }
  const r = new Reader(version === 1 ? 1 : 2, tokens, strings, commands, poolSizes, raw);
  const files = r.files(fileTable);
  const steps = new Array<SavedStep>(stepCount);
  for (let i = 0; i < stepCount; i++) steps[i] = r.step(i, stepCount);
  r.finish();
  const generation = t["generation"];
  if (generation === undefined) return { state: { files, steps } };
  if (!isGeneration(generation)) corrupt("generation: expected 32 hex digits");
  return { state: { files, steps }, generation };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function timestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  const day = `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}`;
  return `${day}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Keep the bad file for a bug report, under a name no later failure overwrites. */
export async function keepCopy(file: string): Promise<string | undefined> {
  const base = `${file}.bad-${timestamp(new Date())}`;
  for (let n = 0; n < 100; n++) {
    const name = n === 0 ? base : `${base}-${n}`;
    try {
      await copyFile(file, name, fsConstants.COPYFILE_EXCL);
      return name;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") return undefined;
    }
  }
  return undefined;
}

/**
 * Read and decode the state file open as `fd`. Synchronous: nothing else runs while a run starts,
 * and each asynchronous read or decompression would only add a trip through libuv's threads.
 */
function readDocument(fd: number): { state: SavedState; generation?: string } {
  const { size } = fstatSync(fd);
  if (size === 0) corrupt("the file is empty");
  const readAt: ReadAt = (pos, len) => {
    const b = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      let bytesRead: number;
      try {
        bytesRead = readSync(fd, b, got, len - got, pos + got);
      } catch (e) {
        corrupt(`cannot read the file (${errorText(e)})`);
      }
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === len ? b : b.subarray(0, got);
  };
  if (!isXz(readAt(0, 6))) corrupt("not an xz-compressed file");
  const stored = readStoredXz(size, readAt);
  if (stored !== undefined) {
    let head: Buffer;
    try {
      head = xzDecompressSync(stored.before);
    } catch (e) {
      corrupt(`xz data is damaged or truncated (${errorText(e)})`);
    }
    const doc = decodeSplit(head, stored.data);
    if (doc !== undefined) return doc;
  }
  let packed: Buffer;
  try {
    // The file is two xz streams (see the top of this module), decoded as one.
    packed = xzDecompressSync(readAt(0, size));
  } catch (e) {
    corrupt(`xz data is damaged or truncated (${errorText(e)})`);
  }
  return decodeDocument(packed);
}

/**
 * Read the saved state. A missing file is a first run (no warning); an unreadable or invalid file
 * gives an empty state, a warning and a kept copy. Never throws.
 */
export async function loadState(stepupDir: string): Promise<LoadResult> {
  const file = join(stepupDir, STATE_FILE);
  let reason: string;
  try {
    let fd: number;
    try {
      fd = openSync(file, "r");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return { state: emptyState(), loaded: false };
      corrupt(`cannot read the file (${errorText(e)})`);
    }
    let doc: { state: SavedState; generation?: string };
    try {
      doc = readDocument(fd);
    } finally {
      closeSync(fd);
    }
    const result: LoadResult = { state: doc.state, loaded: true };
    if (doc.generation !== undefined) result.generation = doc.generation;
    return result;
  } catch (e) {
    // Anything else thrown while decoding (a bug, or an exotic msgpack value) is treated the
    // same way: this file cannot be trusted.
    reason = e instanceof Corrupt ? e.message : `unexpected error while decoding: ${errorText(e)}`;
  }
  const keptCopy = await keepCopy(file);
  const details =
    `${file}: ${reason}.\n` +
    (keptCopy !== undefined ? `The unreadable file was kept as ${keptCopy}.\n` : "") +
    "All steps will run again; the file is replaced by a new one.";
  const warning: LoadWarning = { message: `Ignoring unreadable saved workflow ${file}: ${reason}`, details };
  if (keptCopy !== undefined) warning.keptCopy = keptCopy;
  return { state: emptyState(), warning, loaded: false };
}
