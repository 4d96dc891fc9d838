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

/** `bytes`, or a copy of them in a shared slab when keeping `bytes` would cost more. */
export function keptBytes(bytes: Uint8Array): Uint8Array {
  if (bytes === DIR_DIGEST || compactBuffers.has(bytes.buffer)) return bytes;
  const n = bytes.length;
  if (n === 0 || n > SLAB_SIZE / 16) return bytes;
  if (slabUsed + n > slab.byteLength) {
    slab = new ArrayBuffer(SLAB_SIZE);
    slabUsed = 0;
    compactBuffers.add(slab);
  }
  const out = new Uint8Array(slab, slabUsed, n);
  out.set(bytes);
  slabUsed += n;
  return out;
}

/** Move the digests of a fingerprint that was just computed into slabs (in place). */
export function keepFingerprint(fp: Fingerprint): Fingerprint {
  fp.digest = keptBytes(fp.digest);
  fp.inpDigest = keptBytes(fp.inpDigest);
  for (const item of fp.inputs) item[1] = keptBytes(item[1]);
  for (const item of fp.outputs) item[1] = keptBytes(item[1]);
  return fp;
}

/**
 * The result of a successful step. `digest` decides skipping; the per-item short hashes only
 * explain (`-e`) which input, env var or output changed.
 */
export interface Fingerprint {
  /** BLAKE3 over step key, inputs, env vars and outputs. */
  digest: Uint8Array;
  /** BLAKE3 over step key, inputs and env vars only (used to validate amended info). */
  inpDigest: Uint8Array;
  /** [path, 8-byte hash of (mode, size, digest)] for every input, sorted by path. */
  inputs: Array<[string, Uint8Array]>;
  /** [name, value or null when unset] for every env var, sorted by name. */
  env: Array<[string, string | null]>;
  /** [path, 8-byte hash of (mode, size, digest)] for every non-volatile output, sorted by path. */
  outputs: Array<[string, Uint8Array]>;
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
