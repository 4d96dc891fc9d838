import type { StepDefinition } from "../workflow/definition.js";
import type { FileHashes } from "./filehashes.js";

// What tsup remembers between runs. The in-memory shape lives here; `store.ts` owns its encoding
// in `.stepup/workflow.mpk.xz`.

/**
 * What we know about one file's content. `mtimeMs`, `ino` and `size` make the stat shortcut: when
 * all three and `mode` still match, the content is not read again.
 * `digest` is the BLAKE3 hash of the content (32 bytes), or DIR_DIGEST for a directory.
 */
export interface FileHash {
  digest: Uint8Array;
  mode: number;
  size: number;
  mtimeMs: number;
  ino: number;
}

/** Directories carry no content hash; this one-byte marker stands in for it. */
export const DIR_DIGEST: Uint8Array = Uint8Array.of(0x64);

/**
 * `digest` itself, or the shared DIR_DIGEST when it is the directory marker: loaded states then
 * hold one marker for all directories, and callers may compare with DIR_DIGEST by identity.
 */
export function sharedDirDigest(digest: Uint8Array): Uint8Array {
  return digest.length === DIR_DIGEST.length && digest[0] === DIR_DIGEST[0] ? DIR_DIGEST : digest;
}

// Digests kept for the whole session (those of fingerprints; the file table has columns of its
// own, filehashes.ts) are views into a few large buffers. A Uint8Array with its own ArrayBuffer
// costs about 250 bytes beyond its 8 or 32 bytes of data (the buffer object, its backing store
// and their bookkeeping), and a digest that is a view into a larger buffer (a decoded message,
// say) keeps all of it alive: at 100,000 steps either adds well over 100 MB.

/** Buffers whose views may be kept as they are: the slabs below and loaded state files. */
const compactBuffers = new WeakSet<ArrayBufferLike>();
const SLAB_SIZE = 64 * 1024;
let slab = new ArrayBuffer(0);
let slabUsed = 0;

/** Declare that views into `buffer` are cheap to keep (store.ts registers the loaded digests). */
export function registerCompactBuffer(buffer: ArrayBufferLike): void {
  compactBuffers.add(buffer);
}

/**
 * `n` zeroed bytes in a shared slab (see above), or in a buffer of their own when they are too
 * many for one: for bytes that are kept for the session.
 */
export function keptAlloc(n: number): Uint8Array {
  if (n === 0 || n > SLAB_SIZE / 16) return new Uint8Array(n);
  if (slabUsed + n > slab.byteLength) {
    slab = new ArrayBuffer(SLAB_SIZE);
    slabUsed = 0;
    compactBuffers.add(slab);
  }
  const out = new Uint8Array(slab, slabUsed, n);
  slabUsed += n;
  return out;
}

/** `bytes`, or a copy of them in a shared slab when keeping `bytes` would cost more. */
export function keptBytes(bytes: Uint8Array): Uint8Array {
  if (bytes === DIR_DIGEST || compactBuffers.has(bytes.buffer)) return bytes;
  const n = bytes.length;
  if (n === 0 || n > SLAB_SIZE / 16) return bytes;
  const out = keptAlloc(n);
  out.set(bytes);
  return out;
}

/** Move the bytes of a fingerprint that was just computed into a slab (in place). */
export function keepFingerprint(fp: Fingerprint): Fingerprint {
  fp.bytes = keptBytes(fp.bytes);
  return fp;
}

/** Bytes of a fingerprint's digest, and of its input digest. */
export const FP_DIGEST_LEN = 32;
/** Bytes of the short hash of one input or output. */
export const FP_SHORT_LEN = 8;
/** Where the short hashes start in Fingerprint.bytes: after the two digests. */
const FP_SHORTS_AT = 2 * FP_DIGEST_LEN;

/**
 * The result of a successful step. Its digest decides skipping; the per-item short hashes only
 * explain (`-e`) which input, env var or output changed.
 *
 * All hashes are in one byte array, in the order the state file stores them (store.ts), so that
 * a fingerprint is a few small objects instead of a dozen and more: at 100,000 steps, saving
 * the state spent about 0.35 s walking the scattered per-item arrays and hashes of the former
 * layout, and every load and no-op run allocated (and collected) them. Read the hashes with the
 * helpers below.
 */
export interface Fingerprint {
  /**
   * BLAKE3 over step key, inputs, env vars and outputs (32 bytes); BLAKE3 over step key, inputs
   * and env vars only (32 bytes, used to validate amended info); then an 8-byte hash of (mode,
   * size, digest) per input, in the order of `inputs`, and per output, in the order of `outputs`.
   */
  bytes: Uint8Array;
  /** Path of every input, sorted. */
  inputs: string[];
  /** [name, value or null when unset] for every env var, sorted by name. */
  env: Array<[string, string | null]>;
  /** Path of every non-volatile output, sorted. */
  outputs: string[];
}

/**
 * The env list of fingerprints without env vars (nearly all of them), shared rather than one
 * empty array each. Frozen: a change in place would throw instead of spreading to every step.
 */
export const NO_ENV: Array<[string, string | null]> = Object.freeze([]) as unknown as Array<[string, string | null]>;

/** Length of Fingerprint.bytes for a fingerprint with these numbers of inputs and outputs. */
export function fingerprintLength(inputs: number, outputs: number): number {
  return FP_SHORTS_AT + FP_SHORT_LEN * (inputs + outputs);
}

/** The digest that decides skipping (a view, not a copy). */
export function fingerprintDigest(fp: Fingerprint): Uint8Array {
  return fp.bytes.subarray(0, FP_DIGEST_LEN);
}

/** The digest of step key, inputs and env vars (a view, not a copy). */
export function inputDigest(fp: Fingerprint): Uint8Array {
  return fp.bytes.subarray(FP_DIGEST_LEN, FP_SHORTS_AT);
}

/** The short hash of input `i` (a view, not a copy). */
export function inputHash(fp: Fingerprint, i: number): Uint8Array {
  const at = FP_SHORTS_AT + FP_SHORT_LEN * i;
  return fp.bytes.subarray(at, at + FP_SHORT_LEN);
}

/** The short hash of output `i` (a view, not a copy). */
export function outputHash(fp: Fingerprint, i: number): Uint8Array {
  const at = FP_SHORTS_AT + FP_SHORT_LEN * (fp.inputs.length + i);
  return fp.bytes.subarray(at, at + FP_SHORT_LEN);
}

/** Whether the digest of `fp` equals the 32 bytes of `digest` from `at` on; allocates nothing. */
export function hasDigest(fp: Fingerprint, digest: Uint8Array, at = 0): boolean {
  const b = fp.bytes;
  if (b.length < FP_DIGEST_LEN || digest.length < at + FP_DIGEST_LEN) return false;
  for (let i = 0; i < FP_DIGEST_LEN; i++) if (b[i] !== digest[at + i]) return false;
  return true;
}

/** Extra information a running step declared about itself with amend(). */
export interface Amended {
  inp: string[];
  out: string[];
  vol: string[];
  env: string[];
}

/** A glob() call made by a step, with the sorted root-relative files it matched. */
export interface GlobRecord {
  patterns: string[];
  subs: Record<string, string>;
  /** The workdir the patterns are relative to (root-relative, trailing slash). */
  workdir: string;
  matches: string[];
  /**
   * A deferred glob declares matching files static only when a step uses them as inputs; it
   * matches nothing up front, so it never makes its step rerun.
   */
  deferred: boolean;
}

/** One step as saved: its definition, what it declared while running, and its fingerprint. */
export interface SavedStep extends StepDefinition {
  /** Index in SavedState.steps of the step that defined this one, or -1 for the root (boot plan). */
  creator: number;
  /** True when no live step defines this one any more: kept only until its outputs are cleaned. */
  orphan: boolean;
  /** Static paths this step declared while it ran, in declaration order. */
  statics: string[];
  /** Pools this step defined while it ran, in declaration order. */
  pools: Array<[string, number]>;
  /** Globs the step evaluated while it ran; a changed match set means it must run again. */
  globs: GlobRecord[];
  amended: Amended | null;
  /** Present only when the step's last execution succeeded. */
  fingerprint: Fingerprint | null;
}

export interface SavedState {
  /** Last known hash of every file tsup has hashed (inputs and outputs), by root-relative path. */
  files: FileHashes;
  /** Steps in definition order: a creator always comes before the steps it defined. */
  steps: SavedStep[];
}
