// What the watch phase records: which files that matter were updated or deleted since the last
// run phase. A file matters when the workflow knows it (a static input, a plan, an output edited by
// hand) or when it could change what a step's glob() matches. The recorder also says which
// directories must be watched for that; it never decides what reruns: the next run phase checks
// every step against its fingerprint, so a missed event can delay a rerun but never skip one.
import { readdirSync } from "node:fs";
import type { EventSink } from "../events.js";
import { globFiles } from "../glob/walk.js";
import { compilePattern, type CompiledPattern } from "../glob/pattern.js";
import { isDirPath, joinWorkdir, parentPath } from "../paths.js";
import type { Graph } from "../workflow/graph.js";
import { sourcePaths } from "./skip.js";

export type Change = "updated" | "deleted";

export interface ChangeRecorderOptions {
  root: string;
  sink: EventSink;
  /** Called after a path was recorded (and reported). */
  onRecorded(path: string, change: Change): void;
}

/** Directories never watched or walked: tsup's own state, and version control internals. */
const SKIPPED_NAMES = new Set([".stepup", ".git"]);

export class ChangeRecorder {
  private graph: Graph | undefined;
  private globs: CompiledPattern[] = [];
  /** Source files the steps' fingerprints cover besides their own paths (modules a plan imports). */
  private sources = new Set<string>();
  private watching = false;
  /** Events seen during a run phase, judged when the next watch phase starts. */
  private readonly buffered = new Map<string, Change>();
  /** What the current watch phase recorded. */
  readonly recorded = new Map<string, Change>();

  constructor(private readonly opts: ChangeRecorderOptions) {}

  get isWatching(): boolean {
    return this.watching;
  }

  /** A run phase starts: what was recorded is about to be acted upon; new events wait. */
  beginRun(): void {
    this.watching = false;
    this.recorded.clear();
  }

  /**
   * A watch phase starts, with the graph of the run phase that just ended. Events that came in
   * while it ran are recorded now if they concern static files or glob matches; events on outputs
   * were (most likely) the build itself writing them.
   */
  beginWatch(graph: Graph): void {
    this.graph = graph;
    this.globs = [];
    this.sources = new Set();
    for (const step of graph.steps.values()) {
      for (const path of sourcePaths(step, step.fingerprint)) this.sources.add(path);
      for (const glob of step.globs) {
        for (const pattern of glob.patterns) {
          try {
            this.globs.push(compilePattern(joinWorkdir(glob.workdir, pattern), glob.subs));
          } catch {
            // The step's own glob() call reported a bad pattern already.
          }
        }
      }
    }
    this.watching = true;
    const buffered = [...this.buffered];
    this.buffered.clear();
    for (const [path, change] of buffered) {
      const node = graph.files.get(path);
      const ours = node !== undefined && node.producer !== null;
      if (!ours && this.relevant(path)) this.record(path, change);
    }
  }

  /** A raw event from the watcher. */
  event(path: string, change: Change): void {
    // The watcher cannot tell that a deleted entry was a directory; the workflow may know.
    if (change === "deleted" && !isDirPath(path) && this.graph?.files.has(`${path}/`)) path = `${path}/`;
    if (!this.watching) {
      this.buffered.set(path, change);
      return;
    }
    if (this.relevant(path)) this.record(path, change);
  }

  /** Whether a change of `path` could matter to the workflow of the last run phase. */
  relevant(path: string): boolean {
    const node = this.graph?.files.get(path);
    if (node) return node.state !== "volatile";
    if (this.sources.has(path)) return true;
    return this.globs.some((g) => g.match(path) !== undefined);
  }

  /** Whether files below the directory `dir` could match a glob (so it should be watched). */
  globsReachInto(dir: string): boolean {
    return this.globs.some((g) => {
      if (g.staticPrefix === "./" || dir.startsWith(g.staticPrefix)) return true;
      return g.staticPrefix.startsWith(dir);
    });
  }

  private record(path: string, change: Change): void {
    if (this.recorded.get(path) === change) return;
    this.recorded.set(path, change);
    this.opts.sink.emit({ kind: change, path });
    this.opts.onRecorded(path, change);
  }

  /**
   * The directories to watch: those holding a file the workflow knows, and every existing
   * directory a glob could find matches in. Directories, not files: one inotify watch each.
   */
  directoriesToWatch(): Set<string> {
    const dirs = new Set<string>(["./"]);
    const graph = this.graph;
    if (!graph) return dirs;
    for (const file of graph.files.values()) {
      if (file.state === "volatile") continue;
      const parent = parentPath(file.path);
      if (parent !== undefined && !SKIPPED_NAMES.has(parent.slice(0, -1))) dirs.add(parent);
      if (isDirPath(file.path) && file.available) dirs.add(file.path);
    }
    for (const glob of this.globs) {
      for (const dir of this.globDirectories(glob)) dirs.add(dir);
    }
    for (const path of this.sources) {
      const parent = parentPath(path);
      if (parent !== undefined) dirs.add(parent);
    }
    return dirs;
  }

  /** Existing directories in which `glob` could match something. */
  private globDirectories(glob: CompiledPattern): string[] {
    const prefix = glob.staticPrefix;
    const found = [prefix];
    if (!glob.hasWildcards) return found;
    // "data/*/raw/*.csv": watch data/, data/*/ and data/*/raw/. A "**" reaches every depth.
    const rest = glob.pattern.slice(prefix === "./" ? 0 : prefix.length).split("/").filter((c) => c !== "");
    const dirPatterns: string[] = [];
    for (let k = 0; k < rest.length - 1; k++) dirPatterns.push(`${rest.slice(0, k + 1).join("/")}/`);
    const globstar = rest.indexOf("**");
    if (globstar >= 0) dirPatterns.push(`${rest.slice(0, globstar + 1).join("/")}/`);
    for (const text of dirPatterns) {
      try {
        const compiled = compilePattern(prefix === "./" ? text : prefix + text);
        for (const dir of globFiles(this.opts.root, compiled)) {
          if (!dir.split("/").some((c) => SKIPPED_NAMES.has(c))) found.push(dir);
        }
      } catch {
        // A named wildcard used only in the file name: the directories part is plain.
      }
    }
    return found;
  }
}

/** Every entry below `dir` (a workflow path ending in "/"), for a directory that just appeared. */
export function entriesBelow(root: string, dir: string, limit = 10_000): string[] {
  const out: string[] = [];
  const stack = [dir];
  while (stack.length > 0 && out.length < limit) {
    const current = stack.pop()!;
    let names;
    try {
      const abs = current === "./" ? root : current.startsWith("/") ? current : `${root}/${current}`;
      names = readdirSync(abs, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of names) {
      if (SKIPPED_NAMES.has(entry.name)) continue;
      const path = `${current === "./" ? "" : current}${entry.name}${entry.isDirectory() ? "/" : ""}`;
      out.push(path);
      if (entry.isDirectory()) stack.push(path);
    }
  }
  return out;
}
