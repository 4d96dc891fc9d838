// The interactive side of a director: which phase it is in (run or watch), and what keys and the
// control commands (`tsup run`, `tsup wait`, ...) do in each phase. The loop in run.ts asks it
// what to do after every run phase; everything else arrives as keys or RPC calls.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { EventSink, Page } from "../events.js";
import { isAbsPath, normPath, parentPath } from "../paths.js";
import { graphDot, graphText } from "../report/graph.js";
import type { Change, ChangeRecorder } from "./changes.js";
import type { Session, StatusReport } from "./session.js";

/** A key press, as the terminal UI or the plain key reader delivers it. */
export type KeyPress = "q" | "d" | "j" | "f" | "t" | "r" | "g" | "?" | "interrupt" | { other: string };

/** What the next run phase does: check everything (rerun), announce skips (try), or forget. */
export type RunMode = "rerun" | "try" | "forget";

/** After a run phase: start another one, or leave. */
export type NextStep = { kind: "run"; mode: RunMode } | { kind: "exit" };

export type Phase = "run" | "watch" | "exiting";

export interface ControllerOptions {
  root: string;
  sink: EventSink;
  /** False with -n: no watch phase; control commands that need one say so. */
  interactive: boolean;
  /** Rerun by itself this many ms after the last relevant change (undefined: wait for `r`). */
  autoRerunMs: number | undefined;
  recorder: ChangeRecorder;
  /** Send a signal to every running step (the second and third q / Ctrl-C). */
  signalSteps(signal: NodeJS.Signals): void;
  /** Directories the watcher could not watch (limit reached): their changes are not seen. */
  unwatched(): ReadonlySet<string>;
  /** Make the watcher watch exactly these directories. */
  watchDirectories(dirs: Set<string>): void;
  /** Whether keys are read (a terminal on stdin); if not, the first watch phase says how to stop. */
  keys: boolean;
}

export const KEYS_HELP = [
  "",
  "   r = run what changed          f = forget fingerprints, run all   t = try to replay all",
  "   d = drain (finish running)    j = join (finish, then exit)       g = write the graph",
  "   q = quit after running steps (q again: interrupt them, a third time: kill them)",
  "   ? = this help",
  "",
].join("\n");

/** How long `tsup watch-update` waits for the watcher before recording the path itself. */
const WATCH_REPORT_TIMEOUT_MS = 10_000;

export class Controller {
  phase: Phase = "run";
  /** The session of the current (or last) run phase. */
  session: Session | undefined;
  /** Set by q, j, an interrupt or a signal: leave after the current run phase. */
  private exitRequested = false;

  get leaving(): boolean {
    return this.exitRequested;
  }
  /** Set by f or t during a run phase: start over when it has drained. */
  private restartRequested: RunMode | undefined;
  /** Number of q presses and interrupts: 1 shut down, 2 SIGINT the steps, 3 SIGKILL them. */
  private quitLevel = 0;
  interrupted = false;
  private watchResolve: ((next: NextStep) => void) | undefined;
  private autoTimer: NodeJS.Timeout | undefined;
  private hinted = false;
  private readonly watchWaiters: Array<(status: StatusReport | null) => void> = [];
  private readonly exitWaiters: Array<(summary: string) => void> = [];
  private readonly pathWaiters: Array<{ path: string; change: Change; resolve(v: unknown): void }> = [];

  constructor(private readonly opts: ControllerOptions) {}

  // ----------------------------------------------------------------------------------------
  // The loop in run.ts

  /** A run phase starts with `session`. */
  beginRun(session: Session): void {
    this.session = session;
    this.phase = "run";
    this.opts.recorder.beginRun();
  }

  /**
   * The run phase is over. Unless someone asked to leave or to start over, enter the watch phase
   * and resolve with what the user asks for next.
   */
  afterRun(): Promise<NextStep> {
    if (!this.opts.interactive || this.exitRequested) return Promise.resolve({ kind: "exit" });
    if (this.restartRequested) {
      const mode = this.restartRequested;
      this.restartRequested = undefined;
      return Promise.resolve({ kind: "run", mode });
    }
    this.phase = "watch";
    this.opts.sink.emit({ kind: "phase", phase: "watch" });
    if (!this.opts.keys && !this.hinted) {
      // Without a terminal nobody can press q: say how this ends (a CI job would wait forever).
      this.hinted = true;
      this.opts.sink.emit({
        kind: "director",
        message: "Watching for changes. Stop with `tsup shutdown` or Ctrl-C; use -n to build once and exit.",
      });
    }
    this.opts.recorder.beginWatch(this.session!.graph);
    this.opts.watchDirectories(this.opts.recorder.directoriesToWatch());
    for (const waiter of this.watchWaiters.splice(0)) waiter(this.status());
    return new Promise((resolve) => {
      this.watchResolve = resolve;
      this.checkPathWaiters();
      if (this.opts.autoRerunMs !== undefined && this.opts.recorder.recorded.size > 0) this.armAutoRerun();
    });
  }

  /** The director is about to exit with this summary line: answer `join`, `shutdown`, `wait`. */
  exiting(summary: string): void {
    this.phase = "exiting";
    clearTimeout(this.autoTimer);
    for (const waiter of this.exitWaiters.splice(0)) waiter(summary);
    for (const waiter of this.watchWaiters.splice(0)) waiter(null);
    for (const waiter of this.pathWaiters.splice(0)) waiter.resolve({ recorded: false, reason: "tsup is exiting" });
  }

  private leaveWatch(next: NextStep): void {
    const resolve = this.watchResolve;
    if (!resolve) return;
    this.watchResolve = undefined;
    clearTimeout(this.autoTimer);
    if (next.kind === "run") this.phase = "run";
    resolve(next);
  }

  // ----------------------------------------------------------------------------------------
  // Changes seen by the watcher

  /** The recorder recorded a change (and reported it). */
  recorded(path: string, change: Change): void {
    this.checkPathWaiters();
    if (this.opts.autoRerunMs !== undefined && this.phase === "watch") this.armAutoRerun();
  }

  private armAutoRerun(): void {
    clearTimeout(this.autoTimer);
    // Editors save in bursts (write, rename, touch): wait until the changes settle.
    this.autoTimer = setTimeout(() => this.leaveWatch({ kind: "run", mode: "rerun" }), this.opts.autoRerunMs);
  }

  private checkPathWaiters(): void {
    if (this.phase !== "watch") return;
    for (let i = this.pathWaiters.length - 1; i >= 0; i--) {
      const waiter = this.pathWaiters[i]!;
      if (this.opts.recorder.recorded.get(waiter.path) === waiter.change) {
        this.pathWaiters.splice(i, 1);
        waiter.resolve({ recorded: true });
      }
    }
  }

  // ----------------------------------------------------------------------------------------
  // Keys

  key(key: KeyPress): void {
    const say = (message: string, pages?: Page[]): void =>
      this.opts.sink.emit({ kind: "keyboard", message, ...(pages ? { pages } : {}) });
    if (typeof key === "object") {
      say(`Unsupported key ${JSON.stringify(key.other)}`, [{ title: "Keys", text: KEYS_HELP }]);
      return;
    }
    switch (key) {
      case "?":
        say("Keys", [{ title: "Keys", text: KEYS_HELP }]);
        return;
      case "q":
        if (this.quitLevel === 0) {
          this.quitLevel = 1;
          say(
            this.phase === "run"
              ? "Shutting down: running steps finish, nothing new starts (q again to interrupt them)"
              : "Shutting down",
          );
          this.shutdown();
        } else this.interrupt(say);
        return;
      case "interrupt":
        if (this.quitLevel === 0) this.quitLevel = 1;
        this.interrupt(say);
        return;
      case "j":
        say(this.phase === "run" ? "Finishing the current run, then exiting" : "Exiting");
        this.join();
        return;
      case "d":
        if (this.phase === "run") {
          say("Draining: running steps finish, nothing new starts, then watching");
          this.session?.drain();
        } else say("Nothing is running: there is nothing to drain");
        return;
      case "r":
        if (this.phase === "watch") {
          say("Running what changed");
          this.leaveWatch({ kind: "run", mode: "rerun" });
        } else say("A run is in progress; r works while watching");
        return;
      case "f":
      case "t": {
        const mode: RunMode = key === "f" ? "forget" : "try";
        const what = key === "f" ? "Forgetting all fingerprints: running every step" : "Trying to replay every step";
        if (this.phase === "watch") {
          say(what);
          this.leaveWatch({ kind: "run", mode });
        } else if (this.phase === "run" && !this.exitRequested) {
          say(`${what} once the running steps have finished`);
          this.restartRequested = mode;
          this.session?.drain();
        }
        return;
      }
      case "g":
        try {
          say(`Workflow graph written to ${this.writeGraph(".stepup/graph").join(", ")}`);
        } catch (err) {
          say(`Could not write the graph: ${(err as Error).message}`);
        }
        return;
    }
  }

  /** Leave once running steps have finished; start nothing new. */
  shutdown(): void {
    this.exitRequested = true;
    this.restartRequested = undefined;
    if (this.phase === "run") this.session?.drain();
    else this.leaveWatch({ kind: "exit" });
  }

  /** Leave when the current run phase is complete (right away when watching). */
  join(): void {
    this.exitRequested = true;
    if (this.phase === "watch") this.leaveWatch({ kind: "exit" });
  }

  /** Second q or Ctrl-C: SIGINT the running steps; once more: SIGKILL. */
  private interrupt(say: (message: string) => void): void {
    this.exitRequested = true;
    this.restartRequested = undefined;
    this.quitLevel++;
    if (this.phase !== "run") {
      // Nothing runs, so nothing is interrupted: like q.
      say("Exiting");
      this.leaveWatch({ kind: "exit" });
      return;
    }
    this.interrupted = true;
    this.session?.stop();
    if (this.quitLevel <= 2) {
      say("Interrupting running steps (SIGINT; once more to kill them)");
      this.opts.signalSteps("SIGINT");
    } else {
      say("Killing running steps (SIGKILL)");
      this.opts.signalSteps("SIGKILL");
    }
  }

  /** SIGINT/SIGTERM from outside: the run.ts loop stops the workers itself. */
  signalled(): void {
    this.exitRequested = true;
    this.interrupted = true;
    this.restartRequested = undefined;
    this.leaveWatch({ kind: "exit" });
  }

  // ----------------------------------------------------------------------------------------
  // Control commands (RPC calls without a step key)

  /** Answers the RPC methods of `tsup run`, `wait`, `join`, `shutdown`, `graph`, `watch-*`, `status`. */
  control(method: string, args: unknown): Promise<unknown> | undefined {
    const a = (args ?? {}) as Record<string, unknown>;
    switch (method) {
      case "status":
        return Promise.resolve(this.status());
      case "run":
        if (this.phase === "watch") {
          this.opts.sink.emit({ kind: "keyboard", message: "Running what changed (tsup run)" });
          this.leaveWatch({ kind: "run", mode: "rerun" });
          return Promise.resolve({ started: true });
        }
        return Promise.resolve({ started: false, message: this.notWatchingReason() });
      case "wait":
        if (this.phase === "watch") return Promise.resolve(this.status());
        if (this.phase === "exiting") return Promise.resolve(null);
        return new Promise((resolve) => this.watchWaiters.push(resolve));
      case "join":
      case "shutdown":
        return new Promise((resolve) => {
          this.exitWaiters.push((summary) => resolve({ summary }));
          const running = this.phase === "run";
          this.opts.sink.emit({
            kind: "keyboard",
            message:
              method === "join"
                ? `${running ? "Finishing the current run, then exiting" : "Exiting"} (tsup join)`
                : `${running ? "Shutting down: running steps finish, nothing new starts" : "Shutting down"} (tsup shutdown)`,
          });
          if (method === "join") this.join();
          else this.shutdown();
        });
      case "graph": {
        const prefix = typeof a["prefix"] === "string" && a["prefix"] !== "" ? a["prefix"] : ".stepup/graph";
        return Promise.resolve({ files: this.writeGraph(prefix) });
      }
      case "watch-update":
      case "watch-delete":
        return this.waitForPath(a["path"], method === "watch-update" ? "updated" : "deleted");
      default:
        return undefined;
    }
  }

  private notWatchingReason(): string {
    if (!this.opts.interactive) return "tsup runs with -n: it does not watch files";
    if (this.phase === "exiting") return "tsup is exiting";
    return "a run phase is in progress";
  }

  status(): StatusReport {
    const report = this.session!.status();
    return { ...report, phase: this.phase === "run" && report.phase === "stopping" ? "stopping" : this.phase };
  }

  /**
   * Resolve once the watch phase has recorded `path` as changed. Paths the workflow does not
   * care about are refused at once (waiting for them would never end); a path in a directory the
   * watcher could not watch, or one the watcher stays silent about, is recorded by hand.
   */
  private waitForPath(raw: unknown, change: Change): Promise<unknown> {
    if (typeof raw !== "string" || raw === "") return Promise.reject(new Error("a path is required"));
    if (!this.opts.interactive) return Promise.reject(new Error(this.notWatchingReason()));
    const path = normPath(raw);
    return new Promise((resolve, reject) => {
      const start = (): void => {
        const recorder = this.opts.recorder;
        if (recorder.recorded.get(path) === change) {
          resolve({ recorded: true });
          return;
        }
        if (!recorder.relevant(path)) {
          reject(new Error(`${path} does not matter to the workflow: it is not a known file and matches no glob`));
          return;
        }
        const parent = parentPath(path) ?? path;
        const byHand = (): void => {
          const i = this.pathWaiters.indexOf(entry);
          if (i < 0) return;
          this.pathWaiters.splice(i, 1);
          recorder.event(path, change);
          resolve({ recorded: true, byHand: true });
        };
        const entry = { path, change, resolve };
        this.pathWaiters.push(entry);
        if (this.opts.unwatched().has(parent)) byHand();
        else setTimeout(byHand, WATCH_REPORT_TIMEOUT_MS).unref();
      };
      if (this.phase === "watch") start();
      else if (this.phase === "exiting") resolve({ recorded: false, reason: "tsup is exiting" });
      else this.watchWaiters.push((status) => (status ? start() : resolve({ recorded: false, reason: "tsup is exiting" })));
    });
  }

  /** Write `<prefix>.txt`, `<prefix>_supplier.dot` and `<prefix>_creator.dot`; returns their names. */
  private writeGraph(prefix: string): string[] {
    const graph = this.session?.graph;
    if (!graph) throw new Error("there is no workflow yet");
    const base = isAbsPath(prefix) ? prefix : resolve(this.opts.root, prefix);
    mkdirSync(dirname(base), { recursive: true });
    const files: Array<[string, string]> = [
      [`${base}.txt`, graphText(graph)],
      [`${base}_supplier.dot`, graphDot(graph, "supplier")],
      [`${base}_creator.dot`, graphDot(graph, "creator")],
    ];
    for (const [file, text] of files) writeFileSync(file, text);
    const shown = (file: string): string => (file.startsWith(`${this.opts.root}/`) ? file.slice(this.opts.root.length + 1) : file);
    return files.map(([file]) => shown(file));
  }
}
