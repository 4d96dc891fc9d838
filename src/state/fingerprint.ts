// Step fingerprints: one canonical digest decides whether a step may be skipped; the per-item
// short hashes only serve to explain (`-e`) what changed.
//
// The hashed byte string is a sequence of typed tokens. Every token starts with a type byte and
// every variable-length token carries its length, so the sequence can be parsed back in exactly
// one way: two different argument sets can never produce the same bytes ("a","bc" vs "ab","c";
// null vs ""; an env var vs an input). Numbers are hashed as float64 so sizes above 2^32 stay
// exact without a second integer encoding. mtime and inode are deliberately absent: `touch` or a
// copy must not force a rerun when the content is the same.
import { blake3UrlSafeBase64 } from "@napi-rs/blake-hash";
import {
  FP_DIGEST_LEN,
  FP_SHORT_LEN,
  NO_ENV,
  fingerprintDigest,
  fingerprintLength,
  hasDigest,
  inputHash,
  outputHash,
  type FileHash,
  type Fingerprint,
} from "./types.js";

const T_STR = 0x01;
const T_NULL = 0x02;
const T_BYTES = 0x03;
const T_NUM = 0x04;
const T_MARK = 0x05;

const MARK_INPUTS = 0x01;
const MARK_ENV = 0x02;
const MARK_OUTPUTS = 0x03;

/**
 * Hashed first, so that a future change of this encoding changes every fingerprint (all steps
 * rerun once) instead of silently comparing digests of two different encodings.
 */
const DOMAIN = "tsup-fingerprint/1";

// One scratch buffer reused by every call: a skip check runs once per step for up to 100,000
// steps, and allocating per call would dominate the cost of hashing a few hundred bytes. The
// DOMAIN token is written once at its start and stays there: every message begins with it.
let buf = Buffer.allocUnsafe(64 * 1024);
let pos = 0;

function reserve(n: number): void {
  if (pos + n <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + n) size *= 2;
  const bigger = Buffer.allocUnsafe(size);
  buf.copy(bigger, 0, 0, pos);
  buf = bigger;
}

/**
 * Strings up to this length are first copied as ASCII, a character at a time: nearly every key,
 * path and env value is short ASCII, and for those Buffer#write (encoding lookup, a call into
 * C++) cost more than the copy. A longer string, or one with any other character, is written by
 * Buffer#write as before, so the bytes are the same UTF-8 either way.
 */
const ASCII_COPY_MAX = 256;

function putStr(s: string): void {
  const len = s.length;
  // UTF-8 needs at most 3 bytes per UTF-16 code unit; the real length is known after writing.
  reserve(5 + 3 * len);
  const b = buf;
  const p = pos;
  const at = p + 5;
  let n = 0;
  if (len <= ASCII_COPY_MAX) {
    for (; n < len; n++) {
      const c = s.charCodeAt(n);
      if (c >= 0x80) break;
      b[at + n] = c;
    }
  }
  if (n < len) n = b.write(s, at, "utf8");
  b[p] = T_STR;
  // The length as u32 big-endian.
  b[p + 1] = n >>> 24;
  b[p + 2] = (n >>> 16) & 0xff;
  b[p + 3] = (n >>> 8) & 0xff;
  b[p + 4] = n & 0xff;
  pos = at + n;
}

function putNull(): void {
  reserve(1);
  buf[pos++] = T_NULL;
}

function putMark(m: number): void {
  reserve(2);
  buf[pos] = T_MARK;
  buf[pos + 1] = m;
  pos += 2;
}

// Numbers go through a float64 scratch: the same IEEE 754 bytes, big-endian, as
// Buffer#writeDoubleBE wrote before, which checks its arguments on every call (5000 digests with
// it took about 15% longer in a fresh process).
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** A number token at `p` (9 bytes, room reserved by the caller). */
function numAt(b: Buffer, p: number, x: number): void {
  b[p] = T_NUM;
  // `+ 0` turns -0 into 0: equal numbers must hash equally.
  f64[0] = x + 0;
  if (LITTLE_ENDIAN) for (let k = 0; k < 8; k++) b[p + 1 + k] = f64Bytes[7 - k]!;
  else for (let k = 0; k < 8; k++) b[p + 1 + k] = f64Bytes[k]!;
}

/** mode and size (numbers) and the digest (bytes) of a file: mtime and inode are left out. */
function putFileHash(h: FileHash): void {
  const d = h.digest;
  const n = d.length;
  reserve(9 + 9 + 5 + n);
  const b = buf;
  const p = pos;
  numAt(b, p, h.mode);
  numAt(b, p + 9, h.size);
  b[p + 18] = T_BYTES;
  b[p + 19] = n >>> 24;
  b[p + 20] = (n >>> 16) & 0xff;
  b[p + 21] = (n >>> 8) & 0xff;
  b[p + 22] = n & 0xff;
  b.set(d, p + 23);
  pos = p + 23 + n;
}

pos = 0;
putStr(DOMAIN);
/** Where a message starts after the DOMAIN token. */
const START = pos;

// The napi `blake3()` returns a freshly allocated external Buffer, which costs about four times
// the hashing itself on short inputs and loads the garbage collector; the base64 variant returns
// a cheap string. It is decoded here straight into its destination: decoding it with
// Buffer#write into a scratch buffer and copying from there made 5000 full fingerprints about
// 10% slower.
const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const SIXBITS = new Uint8Array(128);
for (let k = 0; k < 64; k++) SIXBITS[BASE64URL.charCodeAt(k)] = k;
/** Length of the base64url form of a 32-byte hash (43 characters and one "=" of padding). */
const HASH_CHARS = 44;

/** The first `len` (at most 32) bytes of BLAKE3 of `buf[from, to)`, into `out` from `at` on. */
function hashInto(from: number, to: number, out: Uint8Array, at: number, len: number): void {
  const s = blake3UrlSafeBase64(new Uint8Array(buf.buffer, buf.byteOffset + from, to - from));
  if (s.length !== HASH_CHARS) throw new Error(`blake3UrlSafeBase64 returned ${s.length} characters, not ${HASH_CHARS}`);
  const t = SIXBITS;
  let i = 0;
  let j = 0;
  // Four characters make three bytes; the last 1 or 2 bytes come from the 2 or 3 characters after.
  for (; j + 3 <= len; j += 3, i += 4) {
    const v = (t[s.charCodeAt(i)]! << 18) | (t[s.charCodeAt(i + 1)]! << 12) | (t[s.charCodeAt(i + 2)]! << 6) | t[s.charCodeAt(i + 3)]!;
    out[at + j] = v >>> 16;
    out[at + j + 1] = (v >>> 8) & 0xff;
    out[at + j + 2] = v & 0xff;
  }
  if (j < len) {
    const v = (t[s.charCodeAt(i)]! << 18) | (t[s.charCodeAt(i + 1)]! << 12) | (t[s.charCodeAt(i + 2)]! << 6);
    out[at + j] = v >>> 16;
    if (j + 1 < len) out[at + j + 1] = (v >>> 8) & 0xff;
  }
}

/** 8 bytes identifying (mode, size, digest) of a file: enough to tell an explanation which item changed. */
export function shortHash(h: FileHash): Uint8Array {
  // Hashes into the scratch buffer after whatever is there, so it is safe to call mid-fingerprint.
  const start = pos;
  putFileHash(h);
  const out = new Uint8Array(FP_SHORT_LEN);
  hashInto(start, pos, out, 0, FP_SHORT_LEN);
  pos = start;
  return out;
}

function byFirst<T>(a: [string, T], b: [string, T]): number {
  // Code-unit order, not localeCompare: the order must not depend on the user's locale.
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}

/**
 * `list` sorted by name: itself when it already is (as a skip check's often is: the workdir "./",
 * then one input, then its output's folder), else a sorted copy. Items with equal names keep
 * their order either way, as in the stable sort.
 */
function sortedByFirst<T>(list: Array<[string, T]>): Array<[string, T]> {
  for (let i = 1; i < list.length; i++) {
    if (list[i]![0] < list[i - 1]![0]) return list.slice().sort(byFirst);
  }
  return list;
}

export interface FingerprintArgs {
  /** The step key: it names command and workdir, so changing either changes the digest. */
  key: string;
  inputs: Array<[path: string, hash: FileHash]>;
  env: Array<[name: string, value: string | null]>;
  /** Non-volatile outputs only. */
  outputs: Array<[path: string, hash: FileHash]>;
}

export function computeFingerprint(args: FingerprintArgs): Fingerprint {
  const inputs = sortedByFirst(args.inputs);
  const env = sortedByFirst(args.env);
  const outputs = sortedByFirst(args.outputs);
  const bytes = new Uint8Array(fingerprintLength(inputs.length, outputs.length));
  encode(args.key, inputs, env, outputs, bytes, bytes);
  const inputPaths = new Array<string>(inputs.length);
  for (let i = 0; i < inputs.length; i++) inputPaths[i] = inputs[i]![0];
  const outputPaths = new Array<string>(outputs.length);
  for (let i = 0; i < outputs.length; i++) outputPaths[i] = outputs[i]![0];
  let envCopy = NO_ENV;
  if (env.length > 0) {
    envCopy = new Array<[string, string | null]>(env.length);
    for (let i = 0; i < env.length; i++) envCopy[i] = [env[i]![0], env[i]![1]];
  }
  return { bytes, inputs: inputPaths, env: envCopy, outputs: outputPaths };
}

/** The digest of the last computeDigest or matchesDigest call. */
const scratchDigest = new Uint8Array(FP_DIGEST_LEN);

/**
 * Just the digest of `computeFingerprint(args)`, in a new array. It skips the per-file short
 * hashes and the input digest, which only explanations need (a no-op run of thousands of steps
 * would otherwise hash five times as often).
 */
export function computeDigest(args: FingerprintArgs): Uint8Array {
  encode(args.key, sortedByFirst(args.inputs), sortedByFirst(args.env), sortedByFirst(args.outputs), null, scratchDigest);
  return scratchDigest.slice();
}

/** Whether `args` give the digest of `fp`: a skip check, as computeDigest but allocating nothing. */
export function matchesDigest(args: FingerprintArgs, fp: Fingerprint): boolean {
  encode(args.key, sortedByFirst(args.inputs), sortedByFirst(args.env), sortedByFirst(args.outputs), null, scratchDigest);
  return hasDigest(fp, scratchDigest);
}

/**
 * Hash the sorted lists. The digest goes to `digest` (from index 0); when `full` is given, the
 * input digest and the short hashes go there, at their places in Fingerprint.bytes.
 */
function encode(
  key: string,
  inputs: Array<[string, FileHash]>,
  env: Array<[string, string | null]>,
  outputs: Array<[string, FileHash]>,
  full: Uint8Array | null,
  digest: Uint8Array,
): void {
  pos = START;
  putStr(key);
  putMark(MARK_INPUTS);
  let short = 2 * FP_DIGEST_LEN;
  for (let i = 0; i < inputs.length; i++) {
    const item = inputs[i]!;
    putStr(item[0]);
    const start = pos;
    putFileHash(item[1]);
    if (full !== null) hashInto(start, pos, full, short, FP_SHORT_LEN);
    short += FP_SHORT_LEN;
  }
  putMark(MARK_ENV);
  for (let i = 0; i < env.length; i++) {
    const item = env[i]!;
    putStr(item[0]);
    const value = item[1];
    if (value === null) putNull();
    else putStr(value);
  }
  if (full !== null) hashInto(0, pos, full, FP_DIGEST_LEN, FP_DIGEST_LEN);
  putMark(MARK_OUTPUTS);
  for (let i = 0; i < outputs.length; i++) {
    const item = outputs[i]!;
    putStr(item[0]);
    const start = pos;
    putFileHash(item[1]);
    if (full !== null) hashInto(start, pos, full, short, FP_SHORT_LEN);
    short += FP_SHORT_LEN;
  }
  hashInto(0, pos, digest, 0, FP_DIGEST_LEN);
  pos = START;
}

const LABEL_WIDTH = 20;

function line(label: string, content: string): string {
  return `${label.padEnd(LABEL_WIDTH)} ${content}`;
}

function showValue(v: string | null): string {
  return v === null ? "(unset)" : `'${v}'`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sortedUnion(a: Map<string, unknown>, b: Map<string, unknown>): string[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  return [...keys].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
}

function compareFiles(
  what: "input" | "output",
  old: Map<string, Uint8Array>,
  now: Map<string, Uint8Array>,
  changed: string[],
  same: string[],
): void {
  for (const path of sortedUnion(old, now)) {
    const a = old.get(path);
    const b = now.get(path);
    if (a === undefined) changed.push(line(`Added ${what}`, path));
    else if (b === undefined) changed.push(line(`Removed ${what}`, path));
    else if (sameBytes(a, b)) same.push(line(`Same ${what}`, path));
    else changed.push(line(`Modified ${what}`, path));
  }
}

/** Short hash of every input or output of `fp` by path. */
function shortHashes(fp: Fingerprint, what: "input" | "output"): Map<string, Uint8Array> {
  const map = new Map<string, Uint8Array>();
  if (what === "input") fp.inputs.forEach((path, i) => map.set(path, inputHash(fp, i)));
  else fp.outputs.forEach((path, i) => map.set(path, outputHash(fp, i)));
  return map;
}

/**
 * Human lines for `-e`: what differs between the fingerprint of the last successful run and now.
 * Changed items go to `changed`, unchanged ones to `same`, each group in input, env, output order.
 */
export function explainChanges(old: Fingerprint, now: Fingerprint): { changed: string[]; same: string[] } {
  const changed: string[] = [];
  const same: string[] = [];
  compareFiles("input", shortHashes(old, "input"), shortHashes(now, "input"), changed, same);
  const o = new Map(old.env);
  const n = new Map(now.env);
  for (const name of sortedUnion(o, n)) {
    if (!o.has(name)) changed.push(line("Added env var", `${name} ${showValue(n.get(name) ?? null)}`));
    else if (!n.has(name)) changed.push(line("Removed env var", `${name} ${showValue(o.get(name) ?? null)}`));
    else {
      const a = o.get(name) ?? null;
      const b = n.get(name) ?? null;
      if (a === b) same.push(line("Same env var", `${name} ${showValue(a)}`));
      else changed.push(line("Modified env var", `${name} ${showValue(a)} ➜ ${showValue(b)}`));
    }
  }
  compareFiles("output", shortHashes(old, "output"), shortHashes(now, "output"), changed, same);
  // Only the step key is hashed without a per-item record; if nothing else differs but the
  // digests do, the key (command or workdir) is what changed.
  if (changed.length === 0 && !sameBytes(fingerprintDigest(old), fingerprintDigest(now))) {
    changed.push(line("Modified step", "command or workdir"));
  }
  return { changed, same };
}
