import type { StepDefinition } from "../workflow/definition.js";

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
  files: Map<string, FileHash>;
  /** Steps in definition order: a creator always comes before the steps it defined. */
  steps: SavedStep[];
}

export function emptyState(): SavedState {
  return { files: new Map(), steps: [] };
}
