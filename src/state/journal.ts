// The journal of finished steps: `.stepup/workflow.journal`, an append-only file next to the
// state file. Every step that succeeds adds one entry before its SUCCESS is reported, so a
// SIGKILL loses no finished work. The journal extends one particular state file: its header
// carries that file's generation id (store.ts), and a journal of another generation is ignored.
// The director folds the journal into the state file (director/persistence.ts) when a run starts
// with a non-empty journal, and at the end of every run.
//
// Layout (all integers little-endian):
//   header  "TSUPJNL1", 16-byte generation, u32 CRC-32 of those 24 bytes
//   entry*  u32 CRC-32 of the next 4 + n bytes, u32 n, n bytes of payload (see EntryWriter)
// A torn last entry, a checksum mismatch or a payload that does not decode exactly ends the
// readable part: everything before it is kept, everything from it on is ignored. Each entry is a
// complete step record named by its key, so any prefix of a journal is a consistent history.
//
// The payload is a small binary encoding rather than msgpack: msgpackr took about twice as long
// per entry and left garbage buffers behind. Measured on the 2-core dev box under load, for a
// step with one input and one output: ~2.5 µs to encode, ~1.5 µs for the write() system call,
// 350 bytes. There is no fsync: a killed process leaves what it wrote in the page cache, and
// only a power loss can tear an entry.
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { crc32 } from "node:zlib";
import { sameDefinition, sameWork, type StepDefinition } from "../workflow/definition.js";
import { stepKey } from "../workflow/graph.js";
import {
  FP_DIGEST_LEN,
  FP_SHORT_LEN as SHORT_LEN,
  fingerprintLength,
  keptAlloc,
  NO_ENV,
  sharedDirDigest,
  type Amended,
  type FileHash,
  type Fingerprint,
  type GlobRecord,
  type SavedState,
  type SavedStep,
} from "./types.js";
import { randomHex } from "./random.js";
import { VarintReader, VarintWriter } from "./varint.js";

export const JOURNAL_FILE = "workflow.journal";

const MAGIC = Buffer.from("TSUPJNL1", "latin1");
const GENERATION_BYTES = 16;
const HEADER_LEN = MAGIC.length + GENERATION_BYTES + 4;
const FRAME_LEN = 8;
/** Larger than any real entry (a step with a million inputs is ~50 MB): garbage, not a length. */
const MAX_ENTRY = 256 * 1024 * 1024;
const ENTRY_TAG = 1;

/** A step record without its place in the saved list: the journal names steps by key. */
export type StepRecord = Omit<SavedStep, "creator" | "orphan">;

export interface JournalEntry {
  step: StepRecord;
  /** Step key of the step that defined this one, or null for the boot plan (defined by the root). */
  creator: string | null;
  /** Every step this one defined while it ran, in order. For a step that defines none: empty. */
  children: StepDefinition[];
  /** Hashes of the step's required paths and outputs, as known when it succeeded. */
  files: Array<[string, FileHash]>;
}

/** A fresh generation id: 32 lowercase hex digits. */
export function newGeneration(): string {
  return randomHex(GENERATION_BYTES);
}

export function isGeneration(x: unknown): x is string {
  return typeof x === "string" && /^[0-9a-f]{32}$/.test(x);
}

function header(generation: string): Buffer {
  const h = Buffer.alloc(HEADER_LEN);
  MAGIC.copy(h, 0);
  h.write(generation, MAGIC.length, "hex");
  h.writeUInt32LE(crc32(h.subarray(0, HEADER_LEN - 4)), HEADER_LEN - 4);
  return h;
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Encodes one entry into a buffer reused for every entry, frame included, so that appending
 * allocates nothing but the entry's strings' bytes. Field order (lists are a count followed by
 * the items; strings are a byte length and UTF-8; counts, lengths and modes are LEB128 varints;
 * sizes, times and inodes float64, as in the state file; "?" is a 0/1 byte followed by the value
 * when 1):
 *
 *   1, definition, creator?, statics, pools (name, float64 size), globs (patterns, subs (name,
 *   value), workdir, matches, deferred byte), amended? (inp, out, vol, env), fingerprint?
 *   (32-byte digest, 32-byte input digest, inputs (path, 8 bytes), env (name, value?), outputs
 *   (path, 8 bytes)), children (definitions), files (path, digest (length, bytes), mode, size,
 *   mtime, inode)
 *
 * A definition is command, workdir, inp, out, vol, env, pool?, flags byte (1 optional, 2 block).
 */
class EntryWriter extends VarintWriter {
  constructor() {
    super(64 * 1024);
    this.pos = FRAME_LEN;
  }

  byte(v: number): void {
    this.room(1);
    this.buf[this.pos++] = v;
  }

  f64(v: number): void {
    if (!Number.isFinite(v)) throw new TypeError(`journal: ${v} is not a finite number`);
    this.room(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  str(s: string): void {
    const n = Buffer.byteLength(s);
    this.uint(n);
    this.room(n);
    this.pos += this.buf.write(s, this.pos, n, "utf8");
  }

  strOrNull(s: string | null): void {
    if (s === null) this.byte(0);
    else {
      this.byte(1);
      this.str(s);
    }
  }

  list(items: readonly string[]): void {
    this.uint(items.length);
    for (let i = 0; i < items.length; i++) this.str(items[i]!);
  }

  /** The length of `b`, then its bytes. */
  bytes(b: Uint8Array): void {
    this.uint(b.length);
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  definition(d: StepDefinition): void {
    this.str(d.command);
    this.str(d.workdir);
    this.list(d.inp);
    this.list(d.out);
    this.list(d.vol);
    this.list(d.env);
    this.strOrNull(d.pool);
    this.byte((d.optional ? 1 : 0) | (d.block ? 2 : 0));
  }

  /** `len` bytes of `b` from `at` on, as they are. */
  rawBytes(b: Uint8Array, at: number, len: number): void {
    this.room(len);
    const buf = this.buf;
    for (let k = 0; k < len; k++) buf[this.pos + k] = b[at + k]!;
    this.pos += len;
  }

  /** Each path followed by its short hash, which is in `b` from `at` on (Fingerprint.bytes). */
  shortList(paths: readonly string[], b: Uint8Array, at: number): void {
    this.uint(paths.length);
    for (let i = 0; i < paths.length; i++) {
      this.str(paths[i]!);
      this.rawBytes(b, at + SHORT_LEN * i, SHORT_LEN);
    }
  }

  /** Encode `e` after the frame's place; returns the whole frame and payload (a view of `buf`). */
  entry(e: JournalEntry): Buffer {
    this.pos = FRAME_LEN;
    const s = e.step;
    this.byte(ENTRY_TAG);
    this.definition(s);
    this.strOrNull(e.creator);
    this.list(s.statics);
    this.uint(s.pools.length);
    for (const [name, size] of s.pools) {
      this.str(name);
      this.f64(size);
    }
    this.uint(s.globs.length);
    for (const g of s.globs) {
      this.list(g.patterns);
      const subs = Object.entries(g.subs);
      this.uint(subs.length);
      for (const [k, v] of subs) {
        this.str(k);
        this.str(v);
      }
      this.str(g.workdir);
      this.list(g.matches);
      this.byte(g.deferred ? 1 : 0);
    }
    const a = s.amended;
    this.byte(a === null ? 0 : 1);
    if (a !== null) {
      this.list(a.inp);
      this.list(a.out);
      this.list(a.vol);
      this.list(a.env);
    }
    const fp = s.fingerprint;
    this.byte(fp === null ? 0 : 1);
    if (fp !== null) {
      const b = fp.bytes;
      const ni = fp.inputs.length;
      if (b.length !== fingerprintLength(ni, fp.outputs.length)) {
        throw new TypeError(`journal: expected ${fingerprintLength(ni, fp.outputs.length)} fingerprint bytes, got ${b.length}`);
      }
      // The entry keeps the layout it had when fingerprints held each hash apart: each short
      // hash follows its path.
      this.rawBytes(b, 0, 2 * FP_DIGEST_LEN);
      this.shortList(fp.inputs, b, 2 * FP_DIGEST_LEN);
      this.uint(fp.env.length);
      for (const [name, value] of fp.env) {
        this.str(name);
        this.strOrNull(value);
      }
      this.shortList(fp.outputs, b, 2 * FP_DIGEST_LEN + SHORT_LEN * ni);
    }
    this.uint(e.children.length);
    for (const c of e.children) this.definition(c);
    this.uint(e.files.length);
    for (const [path, h] of e.files) {
      this.str(path);
      this.bytes(h.digest);
      this.uint(h.mode);
      this.f64(h.size);
      this.f64(h.mtimeMs);
      this.f64(h.ino);
    }
    const n = this.pos - FRAME_LEN;
    this.buf.writeUInt32LE(n, 4);
    const frame = this.buf.subarray(0, this.pos);
    this.buf.writeUInt32LE(crc32(frame.subarray(4)), 0);
    return frame;
  }
}

/** Shared by all writers: entries are encoded and written one at a time, synchronously. */
const encoder = new EntryWriter();

/** The bytes `JournalWriter.append` writes for `e`: frame and payload. Exported for tests. */
export function encodeEntry(e: JournalEntry): Buffer {
  return Buffer.from(encoder.entry(e));
}

/**
 * Appends entries to the journal of one generation. The file is created (replacing any older
 * journal) by the first append, so a run that executes nothing writes nothing.
 */
export class JournalWriter {
  private fd: number | undefined;
  /** Entries appended since this writer was made. */
  count = 0;

  constructor(
    readonly file: string,
    readonly generation: string,
    /**
     * Continue a journal that exists, is intact and names `generation` (a run that ended normally
     * without compacting it), instead of starting the file afresh.
     */
    private readonly resume = false,
  ) {}

  /**
   * Synchronous on purpose: when it returns, the entry survives the death of this process.
   * Throws on I/O errors, and on values the reader would refuse (before writing anything).
   */
  append(entry: JournalEntry): void {
    const bytes = encoder.entry(entry);
    if (this.fd === undefined) {
      const fd = openSync(this.file, this.resume ? "a" : "w");
      try {
        if (!this.resume) writeAll(fd, header(this.generation));
      } catch (e) {
        closeSync(fd);
        throw e;
      }
      this.fd = fd;
    }
    // One write: a kill lands before or after it.
    writeAll(this.fd, bytes);
    this.count++;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function writeAll(fd: number, b: Buffer): void {
  let done = 0;
  while (done < b.length) done += writeSync(fd, b, done, b.length - done);
}

export function removeJournal(file: string): void {
  try {
    unlinkSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

export interface JournalContents {
  /** False when there is no journal file (the normal case after a run that ended properly). */
  exists: boolean;
  /** The generation of the state file the journal extends; null when the header is unreadable. */
  generation: string | null;
  /** The readable entries, in order. */
  entries: JournalEntry[];
  /** Why reading stopped before the end of the file, if it did. */
  problem?: string;
  /** Bytes of the file that were read as valid (header and entries). */
  validBytes: number;
}

class Bad extends Error {}

/** Decodes one payload, checking every value before it is used. */
/** Reads `buf` (the whole journal: digests are views into it) from `start` to `end`. */
class EntryReader extends VarintReader {
  private field = "";

  override fail(msg: string): never {
    throw new Bad(`${this.field}: ${msg}`);
  }

  byte(): number {
    if (this.pos >= this.end) this.fail("data ends early");
    return this.buf[this.pos++]!;
  }

  flag(): boolean {
    const b = this.byte();
    if (b > 1) this.fail(`expected 0 or 1, got ${b}`);
    return b === 1;
  }

  f64(): number {
    if (this.end - this.pos < 8) this.fail("data ends early");
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    if (!Number.isFinite(v)) this.fail("not a finite number");
    return v;
  }

  str(): string {
    const n = this.count(1);
    const s = this.buf.toString("utf8", this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  strOrNull(): string | null {
    return this.flag() ? this.str() : null;
  }

  list(): string[] {
    const n = this.count(1);
    const out = new Array<string>(n);
    for (let i = 0; i < n; i++) out[i] = this.str();
    return out;
  }

  bytes(len: number): Uint8Array {
    if (this.end - this.pos < len) this.fail("data ends early");
    const view = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return view;
  }

  definition(): StepDefinition {
    const command = this.str();
    const workdir = this.str();
    const inp = this.list();
    const out = this.list();
    const vol = this.list();
    const env = this.list();
    const pool = this.strOrNull();
    const flags = this.byte();
    if (flags > 3) this.fail(`${flags} is not a valid flag set`);
    return { command, workdir, inp, out, vol, env, pool, optional: (flags & 1) !== 0, block: (flags & 2) !== 0 };
  }

  /**
   * Paths each followed by a short hash; the hashes' positions in `buf` are appended to
   * `hashesAt`.
   */
  shortList(hashesAt: number[]): string[] {
    const n = this.count(1 + SHORT_LEN);
    const out = new Array<string>(n);
    for (let i = 0; i < n; i++) {
      out[i] = this.str();
      if (this.end - this.pos < SHORT_LEN) this.fail("data ends early");
      hashesAt.push(this.pos);
      this.pos += SHORT_LEN;
    }
    return out;
  }

  entry(): JournalEntry {
    this.field = "tag";
    const tag = this.byte();
    if (tag !== ENTRY_TAG) this.fail(`unknown entry type ${tag}`);
    this.field = "step";
    const d = this.definition();
    this.field = "creator";
    const creator = this.strOrNull();
    this.field = "statics";
    const statics = this.list();
    this.field = "pools";
    const nPools = this.count(9);
    const pools = new Array<[string, number]>(nPools);
    for (let i = 0; i < nPools; i++) pools[i] = [this.str(), this.f64()];
    this.field = "globs";
    const nGlobs = this.count(5);
    const globs = new Array<GlobRecord>(nGlobs);
    for (let i = 0; i < nGlobs; i++) {
      const patterns = this.list();
      const nSubs = this.count(2);
      const subs = new Array<[string, string]>(nSubs);
      for (let k = 0; k < nSubs; k++) subs[k] = [this.str(), this.str()];
      const workdir = this.str();
      const matches = this.list();
      // fromEntries defines own properties, so even a "__proto__" name stays plain data.
      globs[i] = { patterns, subs: Object.fromEntries(subs), workdir, matches, deferred: this.flag() };
    }
    this.field = "amended";
    let amended: Amended | null = null;
    if (this.flag()) amended = { inp: this.list(), out: this.list(), vol: this.list(), env: this.list() };
    this.field = "fingerprint";
    let fingerprint: Fingerprint | null = null;
    if (this.flag()) {
      const digestsAt = this.pos;
      this.bytes(2 * FP_DIGEST_LEN);
      const hashesAt: number[] = [];
      const inputs = this.shortList(hashesAt);
      const nEnv = this.count(2);
      const env = nEnv === 0 ? NO_ENV : new Array<[string, string | null]>(nEnv);
      for (let i = 0; i < nEnv; i++) env[i] = [this.str(), this.strOrNull()];
      const outputs = this.shortList(hashesAt);
      // Gathered into one array in a slab: the entry's layout interleaves hashes and paths, and
      // views would keep the whole journal buffer alive.
      const bytes = keptAlloc(fingerprintLength(inputs.length, outputs.length));
      bytes.set(this.buf.subarray(digestsAt, digestsAt + 2 * FP_DIGEST_LEN));
      for (let k = 0; k < hashesAt.length; k++) {
        const at = hashesAt[k]!;
        bytes.set(this.buf.subarray(at, at + SHORT_LEN), 2 * FP_DIGEST_LEN + SHORT_LEN * k);
      }
      fingerprint = { bytes, inputs, env, outputs };
    }
    this.field = "children";
    const nChildren = this.count(8);
    const children = new Array<StepDefinition>(nChildren);
    for (let i = 0; i < nChildren; i++) children[i] = this.definition();
    this.field = "files";
    const nFiles = this.count(27);
    const files = new Array<[string, FileHash]>(nFiles);
    for (let i = 0; i < nFiles; i++) {
      const path = this.str();
      const digest = sharedDirDigest(this.bytes(this.count(1)));
      const mode = this.uint();
      files[i] = [path, { digest, mode, size: this.f64(), mtimeMs: this.f64(), ino: this.f64() }];
    }
    this.field = "entry";
    if (this.pos !== this.end) this.fail("unused data at the end");
    return {
      // Spelled out: a spread with extra properties takes V8's slow path.
      step: {
        command: d.command,
        workdir: d.workdir,
        inp: d.inp,
        out: d.out,
        vol: d.vol,
        env: d.env,
        pool: d.pool,
        optional: d.optional,
        block: d.block,
        statics,
        pools,
        globs,
        amended,
        fingerprint,
      },
      creator,
      children,
      files,
    };
  }
}

function where(entriesBefore: number, pos: number): string {
  return `entry ${entriesBefore + 1} (byte ${pos})`;
}

/** Parse journal bytes. Never throws: reading stops at the first thing that is not right. */
export function parseJournal(buf: Buffer): JournalContents {
  const out: JournalContents = { exists: true, generation: null, entries: [], validBytes: 0 };
  if (buf.length < HEADER_LEN) {
    // A kill while the header was being written leaves a prefix of it: nothing was lost.
    const n = Math.min(buf.length, MAGIC.length);
    if (!buf.subarray(0, n).equals(MAGIC.subarray(0, n))) out.problem = "not a tsup journal (no header)";
    return out;
  }
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) {
    out.problem = "not a tsup journal (no header)";
    return out;
  }
  if (crc32(buf.subarray(0, HEADER_LEN - 4)) !== buf.readUInt32LE(HEADER_LEN - 4)) {
    out.problem = "the header is damaged (checksum mismatch)";
    return out;
  }
  out.generation = buf.toString("hex", MAGIC.length, MAGIC.length + GENERATION_BYTES);
  let pos = HEADER_LEN;
  out.validBytes = pos;
  while (pos < buf.length) {
    if (buf.length - pos < FRAME_LEN) {
      out.problem = `${where(out.entries.length, pos)} is incomplete (the file ends inside it)`;
      break;
    }
    const len = buf.readUInt32LE(pos + 4);
    if (len === 0 || len > MAX_ENTRY) {
      out.problem = `${where(out.entries.length, pos)} is damaged (impossible length ${len})`;
      break;
    }
    if (buf.length - pos - FRAME_LEN < len) {
      out.problem = `${where(out.entries.length, pos)} is incomplete (the file ends inside it)`;
      break;
    }
    if (crc32(buf.subarray(pos + 4, pos + FRAME_LEN + len)) !== buf.readUInt32LE(pos)) {
      out.problem = `${where(out.entries.length, pos)} is damaged (checksum mismatch)`;
      break;
    }
    try {
      out.entries.push(new EntryReader(buf, pos + FRAME_LEN, pos + FRAME_LEN + len).entry());
    } catch (e) {
      // Anything thrown while decoding (a bug of ours included) ends the trusted part.
      out.problem = `${where(out.entries.length, pos)} is invalid: ${e instanceof Error ? e.message : String(e)}`;
      break;
    }
    pos += FRAME_LEN + len;
    out.validBytes = pos;
  }
  return out;
}

/** Read the journal file. Never throws; an unreadable file is reported as a problem. */
export function readJournal(file: string): JournalContents {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { exists: false, generation: null, entries: [], validBytes: 0 };
    const why = e instanceof Error ? e.message : String(e);
    return { exists: true, generation: null, entries: [], validBytes: 0, problem: `cannot read the file (${why})` };
  }
  return parseJournal(buf);
}

// ---------------------------------------------------------------------------------------------
// Merging

/**
 * The state that results from `state` followed by the journal `entries`. The inputs are not
 * modified, except that with `consume` the file table of `state` may become the result's. What
 * each rule protects:
 *
 * - A record is a self-consistent snapshot: a step's fingerprint, what it declared (statics,
 *   pools, globs, amended) and the steps it defined all come from the same successful run. An
 *   entry replaces the step's record as a whole; records of its former children that it no
 *   longer defines become orphans, so skipping it later replays exactly what it defined then.
 * - Whenever something else changes which steps claim a record as their creator, or with which
 *   definition (a child that finished before its plan did, or that moved to another plan), that
 *   creator's fingerprint is dropped: it must run again to say what it defines. This matches
 *   what an interrupted run saves for a plan that was still running.
 * - A child whose creator has no record yet is kept as an orphan: it can still be skipped when
 *   its plan defines it again.
 * - Creators come before the steps they define; records whose creator chain does not reach the
 *   root or an orphan (a cycle, from plans that swapped roles) become orphans without a
 *   fingerprint.
 *
 * Applying the same entries again, or applying them to a state they were already folded into,
 * gives the same result.
 */
export function applyJournal(state: SavedState, entries: readonly JournalEntry[], options: { consume?: boolean } = {}): SavedState {
  if (entries.length === 0) return state;
  return applyReruns(state, entries, options.consume === true) ?? applyInGeneral(state, entries);
}

/**
 * The common case in O(entries) plus one pass over the records: every entry is a step that was
 * already recorded under the same creator with the same definition, defines no steps and has no
 * recorded children (the journal a run leaves when it reran a few steps). Its record is replaced,
 * nothing moves, and every other record is kept as the same object. Null when any entry does not
 * fit; applyInGeneral then does the whole job, with the same result.
 *
 * With `consume`, the caller gives `state` up (a state just loaded) and its file table is updated
 * rather than copied: copying meant rebuilding the table's map of every path, about 5 ms per
 * 10,000 files at the start of a run that follows a run with reruns.
 */
function applyReruns(state: SavedState, entries: readonly JournalEntry[], consume: boolean): SavedState | null {
  // Records are found by command, then workdir: no key string is made per record.
  const byCommand = new Map<string, number[]>();
  for (let k = 0; k < entries.length; k++) {
    const command = entries[k]!.step.command;
    const list = byCommand.get(command);
    if (list) list.push(k);
    else byCommand.set(command, [k]);
  }
  const recordOf = new Int32Array(entries.length).fill(-1);
  const claimed = new Uint8Array(state.steps.length);
  const records = state.steps;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    if (!r.orphan && r.creator >= 0) claimed[r.creator] = 1;
    const ks = byCommand.get(r.command);
    if (ks === undefined) continue;
    for (let j = 0; j < ks.length; j++) if (entries[ks[j]!]!.step.workdir === r.workdir) recordOf[ks[j]!] = i;
  }
  const steps = records.slice();
  const files = consume ? state.files : state.files.clone();
  // Checked for every entry before the table changes: a null result must leave `state` as it was.
  for (let k = 0; k < entries.length; k++) {
    const e = entries[k]!;
    if (e.children.length > 0) return null;
    const i = recordOf[k]!;
    if (i === -1 || claimed[i] === 1) return null;
    const old = records[i]!;
    if (old.orphan || !sameDefinition(old, e.step)) return null;
    const creatorKey = old.creator >= 0 ? stepKey(records[old.creator]!.command, records[old.creator]!.workdir) : null;
    if (creatorKey !== e.creator) return null;
  }
  for (let k = 0; k < entries.length; k++) {
    const e = entries[k]!;
    const i = recordOf[k]!;
    steps[i] = placedRecord(e.step, records[i]!.creator);
    for (const [path, hash] of e.files) files.set(path, hash);
  }
  return { files, steps };
}

/**
 * `step` as the record of the saved list, at its place, with its properties in the order the
 * state decoder (store.ts) and finalize's savedStep give them. A record made by spreading had
 * another hidden class: the skip checks' optimized code, built for the loaded records, was then
 * thrown away at the first record taken from the journal, and compiled again.
 */
function placedRecord(step: StepRecord, creator: number): SavedStep {
  return {
    command: step.command,
    workdir: step.workdir,
    creator,
    orphan: false,
    inp: step.inp,
    out: step.out,
    vol: step.vol,
    env: step.env,
    pool: step.pool,
    optional: step.optional,
    block: step.block,
    statics: step.statics,
    pools: step.pools,
    globs: step.globs,
    amended: step.amended,
    fingerprint: step.fingerprint,
  };
}

/** The general merge (exported so tests can check that applyReruns agrees with it). */
export function applyInGeneral(state: SavedState, entries: readonly JournalEntry[]): SavedState {
  const recs: SavedStep[] = state.steps.map((s) => ({ ...s }));
  const byKey = new Map<string, number>();
  /** Non-orphan records by the creator they claim: finding a step's children must not scan all. */
  const claimers = new Map<number, Set<number>>();
  const claim = (k: number, creator: number): void => {
    if (creator < 0) return;
    const set = claimers.get(creator);
    if (set) set.add(k);
    else claimers.set(creator, new Set([k]));
  };
  recs.forEach((r, i) => {
    byKey.set(stepKey(r.command, r.workdir), i);
    if (!r.orphan) claim(i, r.creator);
  });
  const files = state.files.clone();
  /** Child order as the creator's last entry listed it. */
  const childOrder = new Map<number, number[]>();

  const dropFingerprint = (i: number): void => {
    if (i >= 0) recs[i]!.fingerprint = null;
  };
  const setCreator = (k: number, creator: number, orphan: boolean): void => {
    const r = recs[k]!;
    if (!r.orphan && r.creator >= 0) claimers.get(r.creator)?.delete(k);
    r.creator = orphan ? -1 : creator;
    r.orphan = orphan;
    if (!orphan) claim(k, creator);
  };
  /**
   * Put record `k` under `creator` (-1 with `orphan` when the creator is unknown) with
   * definition `def`, dropping the fingerprints this change invalidates.
   */
  const place = (k: number, creator: number, orphan: boolean, def: StepDefinition): void => {
    const r = recs[k]!;
    if (!r.orphan && !orphan && r.creator === creator && sameDefinition(r, def)) return;
    if (!r.orphan && r.creator !== creator) dropFingerprint(r.creator);
    dropFingerprint(creator);
    if (!sameWork(r, def)) {
      // Another definition is another step as far as skipping goes (Session.define).
      r.statics = [];
      r.pools = [];
      r.globs = [];
      r.amended = null;
      r.fingerprint = null;
    }
    Object.assign(r, def);
    setCreator(k, creator, orphan);
  };
  const add = (def: StepDefinition, creator: number, orphan: boolean): number => {
    const k = recs.length;
    // Spelled out: a spread with extra properties takes V8's slow path, 100,000 times. In the
    // order of placedRecord.
    recs.push({
      command: def.command,
      workdir: def.workdir,
      creator: -1,
      orphan: true,
      inp: def.inp,
      out: def.out,
      vol: def.vol,
      env: def.env,
      pool: def.pool,
      optional: def.optional,
      block: def.block,
      statics: [],
      pools: [],
      globs: [],
      amended: null,
      fingerprint: null,
    });
    byKey.set(stepKey(def.command, def.workdir), k);
    setCreator(k, creator, orphan);
    dropFingerprint(creator);
    return k;
  };

  for (const e of entries) {
    const s = e.step;
    const def: StepDefinition = {
      command: s.command,
      workdir: s.workdir,
      inp: s.inp,
      out: s.out,
      vol: s.vol,
      env: s.env,
      pool: s.pool,
      optional: s.optional,
      block: s.block,
    };
    // The boot plan's creator is the root (-1, not an orphan); a creator without a record yet
    // makes an orphan.
    let creator = -1;
    let orphan = false;
    if (e.creator !== null) {
      const c = byKey.get(e.creator);
      if (c === undefined) orphan = true;
      else creator = c;
    }
    let i = byKey.get(stepKey(s.command, s.workdir));
    if (i === undefined) i = add(def, creator, orphan);
    else place(i, creator, orphan, def);
    const r = recs[i]!;
    r.statics = s.statics;
    r.pools = s.pools;
    r.globs = s.globs;
    r.amended = s.amended;

    for (const [path, hash] of e.files) files.set(path, hash);
    r.fingerprint = s.fingerprint;
    // Most steps define nothing and are claimed by nothing: no allocations for them.
    if (e.children.length === 0 && !claimers.get(i)?.size) continue;
    const listed: number[] = [];
    for (const child of e.children) {
      let c = byKey.get(stepKey(child.command, child.workdir));
      // A step cannot define itself or its creator; never written, but never trusted either.
      if (c === i || (c !== undefined && c === creator)) continue;
      if (c === undefined) c = add(child, i, false);
      else place(c, i, false, child);
      listed.push(c);
    }
    const keep = new Set(listed);
    for (const k of [...(claimers.get(i) ?? [])]) if (!keep.has(k)) setCreator(k, -1, true);
    // Again: placing the children may have dropped it, yet it belongs with exactly them.
    r.fingerprint = s.fingerprint;
    childOrder.set(i, listed);
  }
  return { files, steps: inCreatorOrder(recs, childOrder) };
}

/**
 * Depth-first from the roots (the boot plan and orphans, in their current order), children in
 * the order their creator's entry listed them, others by position. Renumbers creators.
 */
function inCreatorOrder(recs: SavedStep[], childOrder: Map<number, number[]>): SavedStep[] {
  const children = new Map<number, number[]>();
  recs.forEach((r, i) => {
    if (r.orphan || r.creator < 0) return;
    const list = children.get(r.creator);
    if (list) list.push(i);
    else children.set(r.creator, [i]);
  });
  for (const [c, list] of children) {
    const listed = childOrder.get(c);
    if (!listed) continue;
    const rank = new Map(listed.map((k, n) => [k, n]));
    list.sort((a, b) => (rank.get(a) ?? listed.length + a) - (rank.get(b) ?? listed.length + b));
  }
  const newIndex = new Array<number>(recs.length).fill(-1);
  const out: SavedStep[] = [];
  const visit = (root: number): void => {
    // Explicit stack: plans can nest deeper than the call stack allows.
    const stack = [root];
    while (stack.length > 0) {
      const i = stack.pop()!;
      const r = recs[i]!;
      newIndex[i] = out.length;
      // `recs` are applyJournal's own copies: renumbering in place saves 100,000 more objects.
      r.creator = r.orphan || r.creator < 0 ? -1 : newIndex[r.creator]!;
      out.push(r);
      const kids = children.get(i);
      if (kids) for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k]!);
    }
  };
  recs.forEach((r, i) => {
    if (r.orphan || r.creator < 0) visit(i);
  });
  // Unreached records hang off a cycle of creators: none of them can be trusted to say what
  // it defines, so each becomes an orphan that runs again.
  recs.forEach((r, i) => {
    if (newIndex[i] !== -1) return;
    newIndex[i] = out.length;
    r.creator = -1;
    r.orphan = true;
    r.fingerprint = null;
    out.push(r);
  });
  return out;
}
