// Load and save `.stepup/workflow.mpk.xz`: one msgpack document, xz-compressed.
//
// The document is a map (format version 1). Its shape comes from measuring 100,000 steps:
// - `strings`: every path, workdir, env name/value and pool name, once. Records refer to strings
//   by index, so a path shared by many steps and the file table is stored once.
// - `commands`: one per step, not interned because they are nearly always unique.
// - `files`: [count, path index, mode, digest length] with each column one little-endian u32
//   binary blob. Copying a few large buffers is far cheaper than packing 200,000 small records.
// - `steps`: one binary blob of unsigned LEB128 varints (order in Encoder.step). Packing or
//   unpacking a JS array of two million numbers costs more, and its garbage triggers full
//   collections of a heap that already holds the whole workflow.
// - `poolSizes`: the size of every pool the steps defined, in step order (any finite number).
// - `generation` (optional): 32 hex digits, new with every save by the director. The journal of
//   finished steps (journal.ts) names the generation it extends, so a journal left over from an
//   earlier file is never applied to a later one.
// - `raw`, always the last field: per file size, mtime, inode (float64), then every file digest,
//   then per fingerprint its two digests and the short hashes. These bytes barely compress, yet
//   xz's encoder is slowest on exactly such data (measured here: ~7 MB/s on random bytes versus
//   ~40-100 MB/s on the rest). So the file is two concatenated xz streams: everything before
//   `raw`'s bytes is compressed by lzma-native, and `raw` is written as LZMA2 "uncompressed"
//   chunks by writeStoredXz. Decompressing the file yields one ordinary msgpack document, and
//   `xz -d` or any xz library reads it as usual.
//
// Loading never throws and never returns a partly trusted state: the whole file is decoded and
// checked into fresh objects first, and any problem yields an empty state plus a warning (and a
// copy of the bad file for a bug report). Starting from scratch only costs a rebuild; a wrong
// fingerprint could skip a step that must run.
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { copyFile, mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { Packr, Unpackr } from "msgpackr";
import { isGeneration } from "./journal.js";
import { VarintReader, VarintWriter } from "./varint.js";
import {
  emptyState,
  sharedDirDigest,
  type FileHash,
  type Fingerprint,
  type GlobRecord,
  type SavedState,
  type SavedStep,
} from "./types.js";

export const STATE_FILE = "workflow.mpk.xz";

const FORMAT = "tsup-workflow";
const VERSION = 1;

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
 */
const XZ_PRESET = 0;
const XZ_THREADS = 2;

// lzma-native ships no type declarations; this is the part of its API we use.
interface LzmaNative {
  compress(data: Buffer, options: { preset: number; threads?: number }): Promise<Buffer>;
  decompress(data: Buffer, options?: { flags?: number }): Promise<Buffer>;
  isXZ(data: Buffer): boolean;
  crc32(data: Uint8Array): number;
  CONCATENATED: number;
}
const lzma = createRequire(import.meta.url)("lzma-native") as LzmaNative;

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

const SHORT_LEN = 8;
const FP_DIGEST_LEN = 32;
const FILE_COLUMNS = 4;
/** size, mtimeMs and ino of one file in `raw`. */
const STAT_BYTES = 24;

// ---------------------------------------------------------------------------------------------
// Saving

/** Thrown by saveState for values that loadState would refuse: a bug in the caller, not an I/O problem. */
function invalid(what: string): never {
  throw new TypeError(`saveState: ${what}`);
}

class Encoder {
  readonly strings: string[] = [];
  private readonly index = new Map<string, number>();
  readonly commands: string[] = [];
  readonly poolSizes: number[] = [];
  readonly tokens: VarintWriter;
  readonly raw: Buffer;
  private rawPos = 0;

  constructor(state: SavedState) {
    // Exact size of `raw`, so it is allocated once: growing buffers of this size would cost
    // copies and extra garbage collections.
    let rawSize = STAT_BYTES * state.files.size;
    for (const h of state.files.values()) rawSize += h.digest.length;
    for (const s of state.steps) {
      const fp = s.fingerprint;
      if (fp !== null) rawSize += 2 * FP_DIGEST_LEN + SHORT_LEN * (fp.inputs.length + fp.outputs.length);
    }
    this.raw = Buffer.allocUnsafe(rawSize);
    this.tokens = new VarintWriter(24 * state.steps.length);
  }

  id(s: string): number {
    let i = this.index.get(s);
    if (i === undefined) {
      if (typeof s !== "string") invalid(`expected a string, got ${typeof s}`);
      i = this.strings.length;
      this.strings.push(s);
      this.index.set(s, i);
    }
    return i;
  }

  private put(b: Uint8Array): void {
    this.raw.set(b, this.rawPos);
    this.rawPos += b.length;
  }

  private list(items: readonly string[]): void {
    const t = this.tokens;
    t.uint(items.length);
    for (let i = 0; i < items.length; i++) t.uint(this.id(items[i]!));
  }

  files(files: Map<string, FileHash>): unknown[] {
    const n = files.size;
    const paths = Buffer.allocUnsafe(4 * n);
    const modes = Buffer.allocUnsafe(4 * n);
    const lens = Buffer.allocUnsafe(4 * n);
    const raw = this.raw;
    let i = 0;
    for (const [path, h] of files) {
      if (h.mode >>> 0 !== h.mode) invalid(`file ${path}: mode ${h.mode} is not a 32-bit unsigned integer`);
      if (!Number.isFinite(h.size) || !Number.isFinite(h.mtimeMs) || !Number.isFinite(h.ino)) {
        invalid(`file ${path}: size, mtimeMs and ino must be finite numbers`);
      }
      if (!(h.digest instanceof Uint8Array)) invalid(`file ${path}: digest must be a Uint8Array`);
      paths.writeUInt32LE(this.id(path), 4 * i);
      modes.writeUInt32LE(h.mode, 4 * i);
      lens.writeUInt32LE(h.digest.length, 4 * i);
      raw.writeDoubleLE(h.size, STAT_BYTES * i);
      raw.writeDoubleLE(h.mtimeMs, STAT_BYTES * i + 8);
      raw.writeDoubleLE(h.ino, STAT_BYTES * i + 16);
      i++;
    }
    this.rawPos = STAT_BYTES * n;
    for (const h of files.values()) this.put(h.digest);
    return [n, paths, modes, lens];
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
      this.fingerprint(fp, i);
    }
  }

  private fingerprint(fp: Fingerprint, i: number): void {
    const t = this.tokens;
    if (fp.digest.length !== FP_DIGEST_LEN || fp.inpDigest.length !== FP_DIGEST_LEN) {
      invalid(`step ${i}: fingerprint digests must have ${FP_DIGEST_LEN} bytes`);
    }
    this.put(fp.digest);
    this.put(fp.inpDigest);
    this.shortList(fp.inputs, i);
    t.uint(fp.env.length);
    for (const [name, value] of fp.env) {
      if (value !== null && typeof value !== "string") invalid(`step ${i}: env value must be a string or null`);
      t.uint(this.id(name));
      t.uint(value === null ? 0 : this.id(value) + 1);
    }
    this.shortList(fp.outputs, i);
  }

  private shortList(items: Array<[string, Uint8Array]>, i: number): void {
    const t = this.tokens;
    t.uint(items.length);
    for (const [path, h] of items) {
      if (!(h instanceof Uint8Array) || h.length !== SHORT_LEN) invalid(`step ${i}: short hashes must have 8 bytes`);
      t.uint(this.id(path));
      this.put(h);
    }
  }
}

/**
 * The msgpack document in two parts: `head` is everything up to and including the header of
 * `raw`'s binary value, so that head followed by raw is the complete document.
 */
function encode(state: SavedState, generation?: string): { head: Buffer; raw: Buffer } {
  const enc = new Encoder(state);
  const files = enc.files(state.files);
  const n = state.steps.length;
  for (let i = 0; i < n; i++) enc.step(state.steps[i]!, i, n);
  const fields: Array<[string, unknown]> = [
    ["format", FORMAT],
    ["version", VERSION],
    ["strings", enc.strings],
    ["commands", enc.commands],
    ["stepCount", n],
    ["files", files],
    ["poolSizes", enc.poolSizes],
    ["steps", enc.tokens.buf.subarray(0, enc.tokens.pos)],
  ];
  if (generation !== undefined) {
    if (!isGeneration(generation)) invalid(`generation ${JSON.stringify(generation)} is not 32 hex digits`);
    fields.push(["generation", generation]);
  }
  // The map framing is written here so that `raw` never has to be copied through msgpackr:
  // a fixmap header (at most 15 entries), then each key and value as msgpackr encodes them,
  // then the key "raw" and a bin32 header whose body is `raw` itself.
  const packr = new Packr({ useRecords: false });
  const parts: Buffer[] = [Buffer.of(0x80 | (fields.length + 1))];
  for (const [k, v] of fields) parts.push(packr.pack(k), packr.pack(v));
  const binHeader = Buffer.allocUnsafe(5);
  binHeader[0] = 0xc6;
  binHeader.writeUInt32BE(enc.raw.length, 1);
  parts.push(packr.pack("raw"), binHeader);
  return { head: Buffer.concat(parts), raw: enc.raw };
}

/** The uncompressed msgpack document for a state; exported for tests and benchmarks. */
export function encodeState(state: SavedState): Buffer {
  const { head, raw } = encode(state);
  return Buffer.concat([head, raw]);
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
  return Buffer.concat([b, Buffer.from(u32le(lzma.crc32(b)))]);
}

/** One complete xz stream whose single block stores `data` without compressing it. */
export function writeStoredXz(data: Buffer): Buffer[] {
  const chunks = Math.ceil(data.length / LZMA2_CHUNK);
  // Each chunk: control byte, 16-bit big-endian (size - 1), data; then one end-of-data byte.
  const compressedSize = data.length + 3 * chunks + 1;
  // Block header: size byte (set below), flags (one filter, both sizes present), sizes, then the
  // filter: LZMA2 (0x21) with one property byte, dictionary size code 8 = 64 KiB (one chunk).
  const header = [0, 0x40 | 0x80, ...vli(compressedSize), ...vli(data.length), 0x21, 0x01, 8];
  padTo4(header);
  // The size byte counts the CRC that follows: real size = (byte + 1) * 4.
  header[0] = (header.length + 4) / 4 - 1;
  const blockHeader = withCrc(header);

  const lzma2 = Buffer.alloc(compressedSize + ((4 - (compressedSize % 4)) % 4));
  let p = 0;
  for (let c = 0; c < chunks; c++) {
    const start = c * LZMA2_CHUNK;
    const len = Math.min(LZMA2_CHUNK, data.length - start);
    // 0x01 resets the dictionary (required for the first chunk), 0x02 continues it.
    lzma2[p++] = c === 0 ? 0x01 : 0x02;
    lzma2[p++] = (len - 1) >>> 8;
    lzma2[p++] = (len - 1) & 0xff;
    data.copy(lzma2, p, start, start + len);
    p += len;
  }
  lzma2[p] = 0x00; // end of LZMA2 data; the rest is block padding, already zero
  const check = Buffer.from(u32le(lzma.crc32(data)));

  const unpaddedSize = blockHeader.length + compressedSize + check.length;
  const index = [0x00, ...vli(1), ...vli(unpaddedSize), ...vli(data.length)];
  padTo4(index);
  const indexBytes = withCrc(index);
  const footerBody = Buffer.from([...u32le(indexBytes.length / 4 - 1), ...XZ_FLAGS]);
  const footer = Buffer.concat([Buffer.from(u32le(lzma.crc32(footerBody))), footerBody, Buffer.from("YZ")]);
  const streamHeader = Buffer.concat([Buffer.from(XZ_MAGIC), withCrc(XZ_FLAGS)]);
  return [streamHeader, blockHeader, lzma2, check, indexBytes, footer];
}

/** The complete file contents for a state, as a list of buffers to write in order. */
export async function encodeFile(state: SavedState, generation?: string): Promise<Buffer[]> {
  const { head, raw } = encode(state, generation);
  const compressed = await lzma.compress(head, { preset: XZ_PRESET, threads: XZ_THREADS });
  return [compressed, ...writeStoredXz(raw)];
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
  const tmp = join(stepupDir, `${STATE_FILE}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
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

/** Reads the varint token stream and `raw`, checking every value before it is used. */
class Reader extends VarintReader {
  private rawPos = 0;
  private poolPos = 0;
  /** Where we are, for the message when something is wrong (a string per step would be garbage). */
  private atStep = -1;
  private atField = "";

  constructor(
    tokens: Buffer,
    private readonly strings: string[],
    private readonly commands: string[],
    private readonly poolSizes: unknown[],
    /** A private copy of `raw`: digests are views into it, so nothing else stays alive for them. */
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

  shortList(): Array<[string, Uint8Array]> {
    const n = this.count(1);
    const out = new Array<[string, Uint8Array]>(n);
    for (let i = 0; i < n; i++) out[i] = [this.str(), this.bytes(SHORT_LEN)];
    return out;
  }

  poolSize(): number {
    if (this.poolPos >= this.poolSizes.length) this.fail("missing pool size");
    const v = this.poolSizes[this.poolPos++];
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(`pool size ${String(v)} is not a number`);
    return v;
  }

  files(x: unknown): Map<string, FileHash> {
    this.atField = "files";
    const cols = asArray(x, "files");
    if (cols.length !== FILE_COLUMNS) this.fail(`expected ${FILE_COLUMNS} columns`);
    const count = cols[0];
    if (!isCount(count)) this.fail("bad count");
    const [paths, modes, lens] = cols.slice(1).map((c, i) => {
      const b = asBytes(c, `files column ${i + 1}`);
      if (b.length !== 4 * count) this.fail(`column ${i + 1} has ${b.length} bytes for ${count} files`);
      return b;
    }) as [Buffer, Buffer, Buffer];
    const stats = this.raw;
    if (STAT_BYTES * count > stats.length) this.fail("file data ends early");
    this.rawPos = STAT_BYTES * count;
    const map = new Map<string, FileHash>();
    const n = this.strings.length;
    for (let i = 0; i < count; i++) {
      const p = paths.readUInt32LE(4 * i);
      if (p >= n) this.fail(`string index ${p} out of range`);
      const size = stats.readDoubleLE(STAT_BYTES * i);
      const mtimeMs = stats.readDoubleLE(STAT_BYTES * i + 8);
      const ino = stats.readDoubleLE(STAT_BYTES * i + 16);
      if (!Number.isFinite(size) || !Number.isFinite(mtimeMs) || !Number.isFinite(ino)) {
        this.fail("non-finite size, mtime or inode");
      }
      const len = lens.readUInt32LE(4 * i);
      const digest = sharedDirDigest(this.bytes(len));
      map.set(this.strings[p]!, { digest, mode: modes.readUInt32LE(4 * i), size, mtimeMs, ino });
    }
    if (map.size !== count) this.fail("the same path appears more than once");
    return map;
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
    const pools = new Array<[string, number]>(nPools);
    for (let j = 0; j < nPools; j++) pools[j] = [this.str(), this.poolSize()];
    const nGlobs = this.count(4);
    const globs = new Array<GlobRecord>(nGlobs);
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
      const digest = this.bytes(FP_DIGEST_LEN);
      const inpDigest = this.bytes(FP_DIGEST_LEN);
      const inputs = this.shortList();
      const nEnv = this.count(2);
      const fpEnv = new Array<[string, string | null]>(nEnv);
      for (let j = 0; j < nEnv; j++) fpEnv[j] = [this.str(), this.strOrNull()];
      const outputs = this.shortList();
      fingerprint = { digest, inpDigest, inputs, env: fpEnv, outputs };
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

function decodeDocument(packed: Buffer): { state: SavedState; generation?: string } {
  let top: unknown;
  try {
    top = new Unpackr({ useRecords: false, mapsAsObjects: true }).unpack(packed);
  } catch (e) {
    corrupt(`not valid msgpack data (${errorText(e)})`);
  }
  if (typeof top !== "object" || top === null || Array.isArray(top) || top instanceof Uint8Array) {
    corrupt("not a tsup workflow file (no format marker)");
  }
  const t = top as Record<string, unknown>;
  if (t["format"] !== FORMAT) corrupt("not a tsup workflow file (no format marker)");
  if (t["version"] !== VERSION) {
    corrupt(`unsupported format version ${JSON.stringify(t["version"])} (this tsup reads version ${VERSION})`);
  }
  const strings = asStrings(t["strings"], "strings");
  const stepCount = t["stepCount"];
  if (!isCount(stepCount)) corrupt("stepCount: expected a count");
  const commands = asStrings(t["commands"], "commands");
  if (commands.length !== stepCount) corrupt("commands: one per step expected");
  const poolSizes = asArray(t["poolSizes"], "poolSizes");
  const tokens = asBytes(t["steps"], "steps");
  // Buffer.from copies (Buffer#slice would not), so the decompressed file can be freed.
  const raw = Buffer.from(asBytes(t["raw"], "raw"));
  const r = new Reader(tokens, strings, commands, poolSizes, raw);
  const files = r.files(t["files"]);
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
 * Read the saved state. A missing file is a first run (no warning); an unreadable or invalid file
 * gives an empty state, a warning and a kept copy. Never throws.
 */
export async function loadState(stepupDir: string): Promise<LoadResult> {
  const file = join(stepupDir, STATE_FILE);
  let reason: string;
  try {
    let raw: Buffer;
    try {
      raw = await readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return { state: emptyState(), loaded: false };
      corrupt(`cannot read the file (${errorText(e)})`);
    }
    if (raw.length === 0) corrupt("the file is empty");
    if (!lzma.isXZ(raw)) corrupt("not an xz-compressed file");
    let packed: Buffer;
    try {
      // CONCATENATED: the file is two xz streams (see the top of this module).
      packed = await lzma.decompress(raw, { flags: lzma.CONCATENATED });
    } catch (e) {
      corrupt(`xz data is damaged or truncated (${errorText(e)})`);
    }
    const doc = decodeDocument(packed);
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
