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
import type { FileHash, Fingerprint } from "./types.js";

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

const SHORT_LEN = 8;

// One scratch buffer reused by every call: computeFingerprint runs once per step for up to
// 100,000 steps, and allocating per call would dominate the cost of hashing a few hundred bytes.
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

function digestOf(bytes: Uint8Array, len = 32): Uint8Array {
  decoded.write(blake3UrlSafeBase64(bytes), 0, "base64url");
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = decoded[i]!;
  return out;
}

/** 8 bytes identifying (mode, size, digest) of a file: enough to tell an explanation which item changed. */
export function shortHash(h: FileHash): Uint8Array {
  // Hashes into the scratch buffer after whatever is there, so it is safe to call mid-fingerprint.
  const start = pos;
  putFileHash(h);
  const out = digestOf(buf.subarray(start, pos), SHORT_LEN);
  pos = start;
  return out;
}

const EMPTY = new Uint8Array(0);

function byFirst<T>(a: [string, T], b: [string, T]): number {
  // Code-unit order, not localeCompare: the order must not depend on the user's locale.
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
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
  return encode(args, true) as Fingerprint;
}

/**
 * Just `computeFingerprint(args).digest`: what a skip check compares. It skips the per-file short
 * hashes and the input digest, which only explanations need (a no-op run of thousands of steps
 * would otherwise hash five times as often).
 */
export function computeDigest(args: FingerprintArgs): Uint8Array {
  return encode(args, false).digest;
}

function encode(args: FingerprintArgs, full: boolean): Fingerprint | { digest: Uint8Array } {
  const inputs = args.inputs.length > 1 ? args.inputs.slice().sort(byFirst) : args.inputs;
  const env = args.env.length > 1 ? args.env.slice().sort(byFirst) : args.env;
  const outputs = args.outputs.length > 1 ? args.outputs.slice().sort(byFirst) : args.outputs;

  pos = 0;
  putStr(DOMAIN);
  putStr(args.key);
  putMark(MARK_INPUTS);
  const inpShort: Array<[string, Uint8Array]> = new Array(inputs.length);
  for (let i = 0; i < inputs.length; i++) {
    const [path, h] = inputs[i]!;
    putStr(path);
    const start = pos;
    putFileHash(h);
    if (full) inpShort[i] = [path, digestOf(buf.subarray(start, pos), SHORT_LEN)];
  }
  putMark(MARK_ENV);
  const envCopy: Array<[string, string | null]> = new Array(env.length);
  for (let i = 0; i < env.length; i++) {
    const [name, value] = env[i]!;
    putStr(name);
    if (value === null) putNull();
    else putStr(value);
    envCopy[i] = [name, value];
  }
  const inpDigest = full ? digestOf(buf.subarray(0, pos)) : EMPTY;
  putMark(MARK_OUTPUTS);
  const outShort: Array<[string, Uint8Array]> = new Array(outputs.length);
  for (let i = 0; i < outputs.length; i++) {
    const [path, h] = outputs[i]!;
    putStr(path);
    const start = pos;
    putFileHash(h);
    if (full) outShort[i] = [path, digestOf(buf.subarray(start, pos), SHORT_LEN)];
  }
  const digest = digestOf(buf.subarray(0, pos));
  pos = 0;
  if (!full) return { digest };
  return { digest, inpDigest, inputs: inpShort, env: envCopy, outputs: outShort };
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
  old: Array<[string, Uint8Array]>,
  now: Array<[string, Uint8Array]>,
  changed: string[],
  same: string[],
): void {
  const o = new Map(old);
  const n = new Map(now);
  for (const path of sortedUnion(o, n)) {
    const a = o.get(path);
    const b = n.get(path);
    if (a === undefined) changed.push(line(`Added ${what}`, path));
    else if (b === undefined) changed.push(line(`Removed ${what}`, path));
    else if (sameBytes(a, b)) same.push(line(`Same ${what}`, path));
    else changed.push(line(`Modified ${what}`, path));
  }
}

/**
 * Human lines for `-e`: what differs between the fingerprint of the last successful run and now.
 * Changed items go to `changed`, unchanged ones to `same`, each group in input, env, output order.
 */
export function explainChanges(old: Fingerprint, now: Fingerprint): { changed: string[]; same: string[] } {
  const changed: string[] = [];
  const same: string[] = [];
  compareFiles("input", old.inputs, now.inputs, changed, same);
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
  compareFiles("output", old.outputs, now.outputs, changed, same);
  // Only the step key is hashed without a per-item record; if nothing else differs but the
  // digests do, the key (command or workdir) is what changed.
  if (changed.length === 0 && !sameBytes(old.digest, now.digest)) {
    changed.push(line("Modified step", "command or workdir"));
  }
  return { changed, same };
}
