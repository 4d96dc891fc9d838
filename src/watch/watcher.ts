// Low-level directory watcher for the watch phase.
//
// One non-recursive fs.watch per directory (on Linux: one inotify watch per directory). chokidar 5
// was not used because it opens an fs.watch for every file as well (handler.js, _handleFile ->
// _watchWithNodeFs), which exhausts fs.inotify.max_user_watches on big projects. The director chooses which directories matter; this
// module only keeps the watch set in sync and translates raw notifications into workflow paths.
//
// Raw fs.watch notifications carry little information (the "rename"/"change" type is unreliable
// and a directory's own deletion looks like an entry named after itself), so every notification is
// resolved by stat-ing the named entry. Notifications are gathered and resolved once per event
// loop turn, which also collapses the several notifications a single write tends to produce.
import { lstatSync, readFileSync, statSync, watch as fsWatch, type FSWatcher, type Stats } from "node:fs";
import { basename, join } from "node:path";
import { isAbsPath, joinWorkdir, normPath } from "../paths.js";

export interface WatchEvent {
  /**
   * Workflow path. Directories keep their trailing "/". A deleted entry can only be recognized as
   * a directory when it was one of the directories passed to setDirectories; other deleted
   * directories are reported without the slash, so callers should match both forms.
   */
  path: string;
  kind: "updated" | "deleted";
}

export interface WatcherOptions {
  /** Absolute project root. */
  root: string;
  onEvent(event: WatchEvent): void;
  /**
   * Called once per distinct problem (watch limit reached, permission denied, ...), and again only
   * when the number of directories affected by that problem changes. Must not throw.
   */
  onProblem(message: string, details: string): void;
  /** For tests: replaces fs.watch (so the inotify limit / ENOSPC / EMFILE can be simulated). */
  watchFn?: typeof fsWatch;
  /** Whether open watches keep the event loop alive (default true, as with fs.watch). */
  persistent?: boolean;
}

interface Watched {
  path: string;
  abs: string;
  /** A notification naming this is (probably) about the directory itself. */
  base: string;
  ino: number;
  dev: number;
  watcher: FSWatcher;
  dead: boolean;
}

/** Why a wanted directory is not watched; absent for directories that simply do not exist. */
interface Failure {
  code: string;
  message: string;
}

type Pending = { watched: Watched; name: string | null } | { watched: null; dir: string };

/** Per-call state so that, once the limit is hit, the remaining directories are not retried. */
interface Batch {
  limit: Failure | null;
}

const LIMIT_CODES = new Set(["ENOSPC", "EMFILE", "ENFILE"]);
const MAX_LISTED = 10;
const REASONS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOTDIR: "not a directory",
  ELOOP: "too many levels of symbolic links",
};

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "UNKNOWN";
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function readProcNumber(path: string): number | undefined {
  try {
    const value = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function plural(n: number): string {
  return n === 1 ? "1 directory" : `${n} directories`;
}

function isMissing(err: unknown): boolean {
  const code = errorCode(err);
  return code === "ENOENT" || code === "ENOTDIR";
}

export class DirectoryWatcher {
  readonly #root: string;
  readonly #onEvent: (event: WatchEvent) => void;
  readonly #onProblem: (message: string, details: string) => void;
  readonly #watchFn: typeof fsWatch;
  readonly #persistent: boolean;

  #desired = new Set<string>();
  readonly #watched = new Map<string, Watched>();
  readonly #unwatched = new Set<string>();
  readonly #failures = new Map<string, Failure>();
  /** Problem group -> number of directories last reported, to avoid repeating ourselves. */
  readonly #reported = new Map<string, number>();

  #pending: Pending[] = [];
  readonly #pendingKeys = new Set<string>();
  #flushHandle: NodeJS.Immediate | undefined;
  #closed = false;

  constructor(opts: WatcherOptions) {
    this.#root = opts.root;
    this.#onEvent = opts.onEvent;
    this.#onProblem = opts.onProblem;
    this.#watchFn = opts.watchFn ?? fsWatch;
    this.#persistent = opts.persistent ?? true;
  }

  /** Directories that could not be watched (limit reached, permission, gone). */
  get unwatched(): ReadonlySet<string> {
    return this.#unwatched;
  }

  /**
   * Make the set of watched directories equal to `dirs` (workflow paths ending in "/"). Unwatched
   * directories are retried. Linear in the number of directories.
   */
  setDirectories(dirs: Iterable<string>): void {
    if (this.#closed) return;
    const desired = new Set<string>();
    for (const dir of dirs) {
      const norm = normPath(dir);
      if (!norm.endsWith("/")) throw new Error(`not a directory path (missing trailing "/"): ${dir}`);
      desired.add(norm);
    }
    // Drop first: closing watches frees inotify slots that the additions below may need.
    for (const [dir, watched] of this.#watched) {
      if (!desired.has(dir)) this.#drop(watched);
    }
    for (const dir of this.#unwatched) {
      if (!desired.has(dir)) {
        this.#unwatched.delete(dir);
        this.#failures.delete(dir);
      }
    }
    this.#desired = desired;
    const batch: Batch = { limit: null };
    for (const dir of desired) {
      if (!this.#watched.has(dir)) this.#tryWatch(dir, batch);
    }
    this.#reportProblems();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const watched of this.#watched.values()) this.#drop(watched);
    if (this.#flushHandle !== undefined) clearImmediate(this.#flushHandle);
    this.#flushHandle = undefined;
    this.#pending = [];
    this.#pendingKeys.clear();
  }

  #abs(path: string): string {
    const abs = isAbsPath(path) ? path : join(this.#root, path);
    // A trailing slash would make lstat fail with ENOTDIR on files and follow symlinks.
    return abs.length > 1 && abs.endsWith("/") ? abs.slice(0, -1) : abs;
  }

  #tryWatch(dir: string, batch: Batch): void {
    if (batch.limit !== null) {
      // Once the limit is hit, further attempts in the same batch fail too; skipping them keeps a
      // retry with 100k unwatched directories cheap.
      this.#fail(dir, batch.limit);
      return;
    }
    const abs = this.#abs(dir);
    let stats: Stats | undefined;
    try {
      stats = statSync(abs, { throwIfNoEntry: false });
    } catch (err) {
      if (isMissing(err)) stats = undefined;
      else return this.#fail(dir, { code: errorCode(err), message: errorMessage(err) });
    }
    if (stats === undefined) return this.#markMissing(dir);
    // fs.watch happily watches a file, which would then report its changes under the wrong name.
    if (!stats.isDirectory()) return this.#fail(dir, { code: "ENOTDIR", message: `not a directory: ${abs}` });

    let watcher: FSWatcher;
    try {
      watcher = this.#watchFn(abs, { persistent: this.#persistent, encoding: "utf8" });
    } catch (err) {
      if (isMissing(err)) return this.#markMissing(dir);
      const failure = { code: errorCode(err), message: errorMessage(err) };
      if (LIMIT_CODES.has(failure.code)) batch.limit = failure;
      return this.#fail(dir, failure);
    }
    const watched: Watched = {
      path: dir,
      abs,
      base: basename(abs),
      ino: stats.ino,
      dev: stats.dev,
      watcher,
      dead: false,
    };
    watcher.on("change", (_type: string, name: string | Buffer | null) => {
      this.#enqueue({ watched, name: name === null ? null : String(name) });
    });
    // Without an 'error' listener a failing watch (e.g. the directory vanished on some platforms)
    // would throw from the event emitter and take the whole process down.
    watcher.on("error", () => this.#lost(watched));
    watcher.on("close", () => this.#lost(watched));
    this.#watched.set(dir, watched);
    this.#unwatched.delete(dir);
    this.#failures.delete(dir);
  }

  #markMissing(dir: string): void {
    this.#unwatched.add(dir);
    this.#failures.delete(dir);
  }

  #fail(dir: string, failure: Failure): void {
    this.#unwatched.add(dir);
    this.#failures.set(dir, failure);
  }

  #drop(watched: Watched): void {
    if (watched.dead) return;
    watched.dead = true;
    if (this.#watched.get(watched.path) === watched) this.#watched.delete(watched.path);
    try {
      watched.watcher.close();
    } catch {
      // Closing an already failed watcher may throw on some platforms; it is gone either way.
    }
  }

  /** The watch stopped on its own: find out in the next flush whether the directory still exists. */
  #lost(watched: Watched): void {
    if (watched.dead || this.#closed) return;
    this.#drop(watched);
    this.#unwatched.add(watched.path);
    this.#enqueue({ watched: null, dir: watched.path });
  }

  #enqueue(item: Pending): void {
    if (this.#closed) return;
    if (item.watched !== null && item.watched.dead) return;
    const key = item.watched === null ? `D\0${item.dir}` : `E\0${item.watched.path}\0${item.name ?? ""}`;
    if (this.#pendingKeys.has(key)) return;
    this.#pendingKeys.add(key);
    this.#pending.push(item);
    if (this.#flushHandle === undefined) {
      this.#flushHandle = setImmediate(() => this.#flush());
      if (!this.#persistent) this.#flushHandle.unref();
    }
  }

  #flush(): void {
    this.#flushHandle = undefined;
    const items = this.#pending;
    this.#pending = [];
    this.#pendingKeys.clear();
    const emitted = new Set<string>();
    const emit = (path: string, kind: WatchEvent["kind"]): void => {
      const key = `${kind}\0${path}`;
      if (emitted.has(key) || this.#closed) return;
      emitted.add(key);
      this.#onEvent({ path, kind });
    };
    const batch: Batch = { limit: null };
    for (const item of items) {
      if (this.#closed) return;
      if (item.watched === null) {
        if (this.#desired.has(item.dir) && !this.#watched.has(item.dir)) this.#recheckDir(item.dir, emit, batch);
        continue;
      }
      const watched = item.watched;
      // An earlier item in this flush may have found the directory gone or replaced.
      if (watched.dead) continue;
      if (item.name === null) {
        this.#recheckDir(watched.path, emit, batch);
        continue;
      }
      const child = joinWorkdir(watched.path, item.name);
      const stats = this.#lstat(join(watched.abs, item.name));
      if (stats === undefined && item.name === watched.base) {
        // Linux names the directory itself when it is deleted or moved away. It may also be a real
        // entry with the same name that was deleted; report that too unless the directory is gone.
        if (this.#recheckDir(watched.path, emit, batch)) emit(child, "deleted");
        continue;
      }
      if (stats?.isDirectory() || this.#desired.has(child + "/")) {
        if (this.#desired.has(child + "/")) {
          if (stats !== undefined && !stats.isDirectory() && !stats.isSymbolicLink()) emit(child, "updated");
          this.#recheckDir(child + "/", emit, batch);
        } else {
          emit(child + "/", "updated");
        }
        continue;
      }
      emit(child, stats === undefined ? "deleted" : "updated");
    }
    this.#reportProblems();
  }

  #lstat(abs: string): Stats | undefined {
    try {
      return lstatSync(abs, { throwIfNoEntry: false });
    } catch {
      // ENOTDIR and friends: the entry cannot exist under that name any more.
      return undefined;
    }
  }

  /**
   * Bring a wanted directory's watch in line with what is on disk and report it. Returns whether
   * the directory exists.
   */
  #recheckDir(dir: string, emit: (path: string, kind: WatchEvent["kind"]) => void, batch: Batch): boolean {
    // null: it exists but cannot be stat-ed (e.g. EACCES on a parent), so its identity is unknown.
    let stats: Stats | undefined | null;
    try {
      stats = statSync(this.#abs(dir), { throwIfNoEntry: false });
    } catch (err) {
      stats = isMissing(err) ? undefined : null;
    }
    const watched = this.#watched.get(dir);
    if (stats === null) {
      emit(dir, "updated");
      return true;
    }
    if (stats === undefined || !stats.isDirectory()) {
      if (watched !== undefined) this.#drop(watched);
      if (this.#desired.has(dir)) this.#markMissing(dir);
      emit(dir, "deleted");
      return false;
    }
    if (watched !== undefined && (watched.ino !== stats.ino || watched.dev !== stats.dev)) {
      // Replaced (e.g. `mv new dir`): the old watch follows the old inode, so watch the new one.
      this.#drop(watched);
      this.#tryWatch(dir, batch);
    } else if (watched === undefined && this.#desired.has(dir) && !this.#failures.has(dir)) {
      // It was missing (or its watch failed) and is back: watch it now rather than waiting for the
      // next setDirectories. Entries created before this point are covered by the event below.
      this.#tryWatch(dir, batch);
    }
    emit(dir, "updated");
    return true;
  }

  #reportProblems(): void {
    const groups = new Map<string, { dirs: string[]; failure: Failure }>();
    for (const [dir, failure] of this.#failures) {
      const key = failure.code === "ENFILE" ? "EMFILE" : failure.code;
      let group = groups.get(key);
      if (group === undefined) groups.set(key, (group = { dirs: [], failure }));
      group.dirs.push(dir);
    }
    for (const key of this.#reported.keys()) {
      if (!groups.has(key)) this.#reported.delete(key);
    }
    for (const [key, { dirs, failure }] of groups) {
      if (this.#reported.get(key) === dirs.length) continue;
      this.#reported.set(key, dirs.length);
      const listed = dirs.slice(0, MAX_LISTED).join(", ") + (dirs.length > MAX_LISTED ? ", ..." : "");
      const details = `${failure.message}\nNot watched: ${listed}`;
      this.#onProblem(this.#problemMessage(key, dirs.length, failure), details);
    }
  }

  #problemMessage(key: string, count: number, failure: Failure): string {
    const rescan = "Changes there are noticed when you press r (full rescan).";
    if (key === "ENOSPC") {
      const limit = readProcNumber("/proc/sys/fs/inotify/max_user_watches");
      const current = limit === undefined ? "fs.inotify.max_user_watches" : `fs.inotify.max_user_watches = ${limit}`;
      const suggested = Math.max(524288, (limit ?? 0) * 2);
      return (
        `Cannot watch ${plural(count)}: the system limit of inotify watches (${current}) is reached. ` +
        `${rescan} Raise the limit with: sudo sysctl fs.inotify.max_user_watches=${suggested}`
      );
    }
    if (key === "EMFILE") {
      const instances = readProcNumber("/proc/sys/fs/inotify/max_user_instances");
      const extra = instances === undefined ? "" : ` or fs.inotify.max_user_instances (now ${instances})`;
      return (
        `Cannot watch ${plural(count)}: too many open files (${failure.code}). ${rescan} ` +
        `Close other programs that watch files, or raise the open-file limit (ulimit -n)${extra}.`
      );
    }
    const reason = REASONS[failure.code] ?? failure.code;
    return `Cannot watch ${plural(count)}: ${reason}. ${rescan}`;
  }
}
