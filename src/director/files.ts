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

  /** Hash `path` now (stat shortcut first) and remember the result. */
  /** Set when a hash was learned or changed since loading: the saved table is then outdated. */
  changed = false;

  /**
   * Directories checked during the current batch of skip checks. Thousands of steps share a
   * workdir and an output directory; one stat() per batch is enough for those.
   */
  private readonly dirsThisTurn = new Map<string, HashOutcome>();

  /** Forget the per-batch directory checks (call when a batch of skip checks is done). */
  endTurn(): void {
    this.dirsThisTurn.clear();
  }

  hash(path: string): HashOutcome {
    if (isDirPath(path)) {
      let outcome = this.dirsThisTurn.get(path);
      if (!outcome) {
        outcome = hashPath(this.abs(path), true, null);
        this.dirsThisTurn.set(path, outcome);
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
