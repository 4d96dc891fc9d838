// The director's table of file hashes: the last known hash of every file tsup has looked at,
// kept across runs so the stat shortcut works on restart.
import { isAbsPath, isDirPath } from "../paths.js";
import { hashPath, statPath, type HashOutcome } from "../state/filehash.js";
import type { FileHashes } from "../state/filehashes.js";
import type { FileHash } from "../state/types.js";

export class FileTable {
  constructor(
    readonly root: string,
    readonly hashes: FileHashes,
  ) {}

  abs(path: string): string {
    if (isAbsPath(path)) return path;
    if (path === "./") return this.root;
    return `${this.root}/${path}`;
  }

  /** Set when a hash was learned or changed since loading: the saved table is then outdated. */
  changed = false;

  /**
   * Paths whose entry this table learned, changed or dropped after the last journal entry that
   * holds them was written (journaled). A run phase may end on the journal alone, without
   * rewriting the state file, only when this is empty: otherwise the next run would not know
   * what this one learned, and a file touched without a change of content would be read again
   * by every run. Each phase has its own FileTable, and ends with the state file saved or with
   * this empty, so the next phase starts from a table that the files on disk hold.
   */
  private readonly unjournaled = new Set<string>();

  /** Whether every change to this table since it was loaded or saved is in the journal. */
  get allJournaled(): boolean {
    return this.unjournaled.size === 0;
  }

  /** A journal entry now holds the current hash of `path`. */
  journaled(path: string): void {
    this.unjournaled.delete(path);
  }

  /**
   * Directories checked during the current batch of skip checks, or null outside a batch.
   * Thousands of steps share a workdir and an output directory; one stat() per batch is enough.
   * Outside a batch (results of running steps) every directory is looked at afresh.
   */
  private batchDirs: Map<string, HashOutcome> | null = null;
  /**
   * Files looked at during the current batch. A skipped plan checks the static files it
   * declared, and the skip checks of the steps it replays then look at the same inputs again in
   * the same batch: one stat() per file and batch is enough, as for directories. Results of
   * running steps (remember) replace the entry.
   */
  private batchFiles: Map<string, HashOutcome> | null = null;

  beginBatch(): void {
    this.batchDirs = new Map();
    this.batchFiles = new Map();
  }

  endBatch(): void {
    this.batchDirs = null;
    this.batchFiles = null;
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
    const seen = this.batchFiles?.get(path);
    if (seen) return seen;
    return this.hashFile(path, this.hashes.get(path));
  }

  private hashFile(path: string, known: FileHash | undefined): HashOutcome {
    const outcome = hashPath(this.abs(path), false, known);
    if (outcome.kind === "ok" && outcome.hash !== known) {
      this.hashes.set(path, outcome.hash);
      this.changed = true;
      this.unjournaled.add(path);
    }
    this.batchFiles?.set(path, outcome);
    return outcome;
  }

  /**
   * Whether `path` is there: a file, or a directory for a path with a trailing slash. A path whose
   * hash is known is hashed as usual (one stat() confirms it, and the steps that read the file
   * later in the batch find it done); any other is only stat()ed, so that checking a static file
   * that no step reads never reads it, nor adds it to the table (which would then change at every
   * run, since the saved table keeps only what steps name).
   */
  present(path: string): boolean {
    if (isDirPath(path)) return this.hash(path).kind === "ok";
    const seen = this.batchFiles?.get(path);
    if (seen) return seen.kind === "ok";
    const known = this.hashes.get(path);
    if (known !== undefined) return this.hashFile(path, known).kind === "ok";
    const st = statPath(this.abs(path));
    return st !== undefined && !st.isDirectory();
  }

  known(path: string): FileHash | null {
    return this.hashes.get(path) ?? null;
  }

  remember(path: string, hash: FileHash | null): void {
    if (hash && !isDirPath(path)) {
      this.hashes.set(path, hash);
      this.changed = true;
      this.unjournaled.add(path);
    }
    this.batchFiles?.delete(path);
  }

  /** Drop the entry of `path` (a file tsup removed). */
  forget(path: string): void {
    if (this.hashes.delete(path)) {
      this.changed = true;
      this.unjournaled.add(path);
    }
    this.batchFiles?.delete(path);
  }
}
