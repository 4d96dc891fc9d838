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
// steps, and allocating per call would dominate the cost of hashing a few hundred bytes.
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

function putStr(s: string): void {
  // UTF-8 needs at most 3 bytes per UTF-16 code unit; the real length is known after writing.
  reserve(5 + 3 * s.length);
  buf[pos] = T_STR;
  const n = buf.write(s, pos + 5, "utf8");
  buf.writeUInt32BE(n, pos + 1);
  pos += 5 + n;
}

function putNull(): void {
  reserve(1);
  buf[pos++] = T_NULL;
}

function putBytes(b: Uint8Array): void {
  reserve(5 + b.length);
  buf[pos] = T_BYTES;
  buf.writeUInt32BE(b.length, pos + 1);
  buf.set(b, pos + 5);
  pos += 5 + b.length;
}

function putNum(x: number): void {
  reserve(9);
  buf[pos] = T_NUM;
  // `+ 0` turns -0 into 0: equal numbers must hash equally.
  buf.writeDoubleBE(x + 0, pos + 1);
  pos += 9;
}

function putMark(m: number): void {
  reserve(2);
  buf[pos] = T_MARK;
  buf[pos + 1] = m;
  pos += 2;
}

function putFileHash(h: FileHash): void {
  putNum(h.mode);
  putNum(h.size);
  putBytes(h.digest);
}

// The napi `blake3()` returns a freshly allocated external Buffer, which costs about four times
// the hashing itself on short inputs and loads the garbage collector; the base64 variant returns
// a cheap string that we decode into a scratch buffer instead.
const decoded = Buffer.allocUnsafe(48);

/** The first `len` (at most 32) bytes of BLAKE3 of `buf[from, to)`, into `out` from `at` on. */
function hashInto(from: number, to: number, out: Uint8Array, at: number, len: number): void {
  decoded.write(blake3UrlSafeBase64(buf.subarray(from, to)), 0, "base64url");
  for (let i = 0; i < len; i++) out[at + i] = decoded[i]!;
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

/** `list` sorted by name, in a copy when it has more than one item. */
function sortedByFirst<T>(list: Array<[string, T]>): Array<[string, T]> {
  return list.length > 1 ? list.slice().sort(byFirst) : list;
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
  pos = 0;
  putStr(DOMAIN);
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
  pos = 0;
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
