// The director's table of file hashes: the last known hash of every file tsup has looked at,
// kept across runs so the stat shortcut works on restart.
import { isAbsPath, isDirPath } from "../paths.js";
import { hashPath, type HashOutcome } from "../state/filehash.js";
import type { FileHash } from "../state/types.js";

export class FileTable {
  constructor(
    readonly root: string,
    readonly hashes: Map<string, FileHash>,
  ) {}

  abs(path: string): string {
    if (isAbsPath(path)) return path;
    if (path === "./") return this.root;
    return `${this.root}/${path}`;
  }

  /** Set when a hash was learned or changed since loading: the saved table is then outdated. */
  changed = false;

  /**
   * Directories checked during the current batch of skip checks, or null outside a batch.
   * Thousands of steps share a workdir and an output directory; one stat() per batch is enough.
   * Outside a batch (results of running steps) every directory is looked at afresh.
   */
  private batchDirs: Map<string, HashOutcome> | null = null;

  beginBatch(): void {
    this.batchDirs = new Map();
  }

  endBatch(): void {
    this.batchDirs = null;
  }

  /** Hash `path` now (stat shortcut first) and remember the result. */
  hash(path: string): HashOutcome {
    if (isDirPath(path)) {
      let outcome = this.batchDirs?.get(path);
      if (!outcome) {
        outcome = hashPath(this.abs(path), true, null);
        this.batchDirs?.set(path, outcome);
      }
      return outcome;
    }
    const known = this.hashes.get(path);
    const outcome = hashPath(this.abs(path), isDirPath(path), known);
    if (outcome.kind === "ok" && outcome.hash !== known) {
      this.hashes.set(path, outcome.hash);
      this.changed = true;
    }
    return outcome;
  }

  known(path: string): FileHash | null {
    return this.hashes.get(path) ?? null;
  }

  remember(path: string, hash: FileHash | null): void {
    if (hash && !isDirPath(path)) {
      this.hashes.set(path, hash);
      this.changed = true;
    }
  }
}
