// One complete non-interactive run: take the folder's lock, load the previous state, serve the
// director socket, build, report, clean, save. The CLI calls this; so can tests.
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import type { EventSink } from "../events.js";
import { removeDirectorInfo, writeDirectorInfo } from "../rpc/locate.js";
import { RpcServer } from "../rpc/server.js";
import { acquireLock } from "../state/lock.js";
import { JOURNAL_FILE } from "../state/journal.js";
import { STATE_FILE } from "../state/store.js";
import { WorkerPool } from "../workers/pool.js";
import type { SavedState } from "../state/types.js";
import { DirectoryWatcher } from "../watch/watcher.js";
import { parentPath } from "../paths.js";
import { ChangeRecorder, entriesBelow } from "./changes.js";
import { Controller, type RunMode } from "./controller.js";
import { cleanObsoleteOutputs, stateToSave, summarize, type PhaseSummary, type StopReason } from "./finalize.js";
import { journalCovers, journalLimit, openState, type StepJournal } from "./persistence.js";
import { commonStepEnv, Session } from "./session.js";

export interface RunOptions {
  /** Absolute project root. */
  root: string;
  /** The boot plan, relative to the root (normally "plan.ts"). */
  planFile: string;
  workers: number;
  explain: boolean;
  sink: EventSink;
  env: NodeJS.ProcessEnv;
  /** Node executable and loader used to run `.ts` steps such as plan.ts. */
  tsNode: string;
  tsLoader: string;
  /** Absolute path of bin/tsup.js: steps get a `tsup` command on their PATH that runs it. */
  tsupBin: string;
  now(): number;
  /** Aborting it interrupts the run: running steps are stopped, the state is saved. */
  stop: AbortSignal;
  /** How long interrupted steps get between SIGTERM and SIGKILL. */
  graceMs?: number;
  /** Watch files after each run phase and take commands (false with -n). */
  interactive?: boolean;
  /** In the watch phase, rerun this long after the last relevant change instead of waiting for r. */
  autoRerunMs?: number;
  /** Emit `progress` events this often during run phases (for the terminal UI). */
  progressMs?: number;
  /** Whether the CLI reads keys (for the hint on how to stop when it does not). */
  keys?: boolean;
  /** Receives the controller once it exists, so that keys can reach it. */
  onController?(controller: Controller): void;
}

export type RunOutcome =
  | { kind: "locked"; message: string }
  | { kind: "done"; summary: PhaseSummary; interrupted: boolean; internalError: boolean };

export async function runOnce(opts: RunOptions): Promise<RunOutcome> {
  const stepupDir = join(opts.root, ".stepup");
  mkdirSync(stepupDir, { recursive: true });
  const lock = acquireLock(stepupDir);
  if (!lock.ok) return { kind: "locked", message: lock.message };
  const workers = new WorkerPool({
    size: opts.workers,
    root: opts.root,
    tsNode: opts.tsNode,
    tsLoader: opts.tsLoader,
  });
  let server: RpcServer | undefined;
  let watcher: DirectoryWatcher | undefined;
  let controller: Controller | undefined;
  let lastDirectorLine = "";
  try {
    const loaded = await openState(stepupDir, opts.sink);
    if (loaded.warning) {
      const pages = [{ title: "What was wrong", text: loaded.warning.details }];
      if (loaded.warning.keptCopy) pages.push({ title: "Copy of the bad file", text: loaded.warning.keptCopy });
      opts.sink.emit({ kind: "warning", message: loaded.warning.message, pages });
    } else if (loaded.loaded) {
      opts.sink.emit({ kind: "workflow", message: `Loaded from .stepup/${STATE_FILE}` });
    }
    if (loaded.state.steps.length === 0) collectGarbageSooner();
    const interactive = opts.interactive === true;
    const recorder = new ChangeRecorder({
      root: opts.root,
      sink: opts.sink,
      onRecorded: (path, change) => controller!.recorded(path, change),
    });
    const ctl = new Controller({
      root: opts.root,
      sink: opts.sink,
      interactive,
      autoRerunMs: opts.autoRerunMs,
      recorder,
      signalSteps: (signal) => workers.signalAll(signal),
      unwatched: () => watcher?.unwatched ?? new Set(),
      watchDirectories: (dirs) => watcher?.setDirectories(dirs),
      keys: opts.keys === true,
    });
    controller = ctl;
    server = await RpcServer.start({
      declare: (key, items) => ctl.session!.declare(key, items),
      call: (key, method, args) => {
        // Steps amend themselves; everything without a step key is a control command.
        if (key === null) {
          const answer = ctl.control(method, args);
          if (answer) return answer;
        }
        return ctl.session!.call(key, method, args);
      },
    });
    writeDirectorInfo(stepupDir, { socket: server.socketPath, pid: process.pid });
    opts.onController?.(ctl);
    const shimPath = `${writeTsupShim(server.dir, opts.tsNode, opts.tsupBin)}:${opts.env["PATH"] ?? ""}`;
    workers.setCommonEnv(commonStepEnv(opts.root, server.socketPath, shimPath));

    const onStop = (): void => {
      ctl.signalled();
      ctl.session?.stop();
      void workers.close({ graceMs: opts.graceMs ?? 1000 });
    };
    if (opts.stop.aborted) onStop();
    else opts.stop.addEventListener("abort", onStop, { once: true });

    let state = loaded.state;
    // Whether `state` is exactly what the state file holds (a no-op phase then need not save).
    let stateOnDisk = loaded.loaded && !loaded.warning;
    if (interactive) {
      watcher = new DirectoryWatcher({
        root: opts.root,
        onEvent: (e) => {
          recorder.event(e.path, e.kind);
          // A new directory where a glob could find files: watch it, and catch up with what
          // was created in it before the watch was in place.
          if (e.kind === "updated" && e.path.endsWith("/") && ctl.phase === "watch" && recorder.globsReachInto(e.path)) {
            watcher?.setDirectories(recorder.directoriesToWatch());
            for (const entry of entriesBelow(opts.root, e.path)) recorder.event(entry, "updated");
          }
        },
        onProblem: (message, details) =>
          opts.sink.emit({ kind: "warning", message, pages: details ? [{ title: "Details", text: details }] : [] }),
      });
      // Until the first watch phase knows the workflow, watch where the last run's files were,
      // so that edits made during the first run phase are not missed.
      const dirs = new Set<string>(["./"]);
      for (const path of state.files.keys()) dirs.add(parentPath(path) ?? path);
      watcher.setDirectories(dirs);
    }
    let mode: RunMode | "first" = "first";
    let summary: PhaseSummary;
    let internalError = false;
    for (;;) {
      const session = new Session(
        {
          root: opts.root,
          planFile: opts.planFile,
          explain: opts.explain,
          sink: opts.sink,
          env: opts.env,
          runner: workers,
          workers: opts.workers,
          quietSkips: mode === "rerun",
          journal: loaded.journal,
          now: opts.now,
        },
        mode === "forget" ? withoutFingerprints(state) : state,
      );
      ctl.beginRun(session);
      if (ctl.interrupted) session.stop();
      const phase = await runPhase(session, opts, loaded.journal, state, stateOnDisk, ctl);
      summary = phase.summary;
      internalError ||= session.internalError !== undefined;
      state = phase.state;
      stateOnDisk = true;
      lastDirectorLine = phase.directorLine;
      if (internalError) break;
      const next = await ctl.afterRun();
      if (next.kind === "exit") break;
      mode = next.mode;
    }
    opts.stop.removeEventListener("abort", onStop);
    return { kind: "done", summary: summary!, interrupted: ctl.interrupted, internalError };
  } finally {
    controller?.exiting(lastDirectorLine);
    watcher?.close();
    removeDirectorInfo(stepupDir, process.pid);
    await Promise.allSettled([workers.close({ graceMs: opts.graceMs ?? 1000 }), server?.close()]);
    lock.release();
  }
}

interface PhaseResult {
  summary: PhaseSummary;
  /** The state after the phase (what was saved, or what was already on disk). */
  state: SavedState;
  directorLine: string;
}

/** One run phase: boot, run until nothing can run, report, clean, save. */
async function runPhase(
  session: Session,
  opts: RunOptions,
  journal: StepJournal,
  previous: SavedState,
  previousOnDisk: boolean,
  ctl: Controller,
): Promise<PhaseResult> {
  opts.sink.emit({ kind: "phase", phase: "run" });
  const progress = opts.progressMs ? setInterval(() => opts.sink.emit(session.progress()), opts.progressMs) : undefined;
  try {
    session.boot();
    await session.runPhase();
  } finally {
    clearInterval(progress);
  }
  const stopped: StopReason | undefined = ctl.interrupted
    ? "interrupted"
    : session.draining
      ? ctl.leaving
        ? "shutting down"
        : "drained"
      : undefined;
  const summary = summarize(session, opts.sink, stopped);
  if (summary.complete) cleanObsoleteOutputs(session, opts.sink);
  else if (!stopped) opts.sink.emit({ kind: "warning", message: "Skipping cleanup due to incomplete build." });
  // A phase that skipped every step it knew, learned no new file hash and dropped no step would
  // write back exactly what it started from: leave the file alone (it keeps no-op runs fast).
  const unchanged =
    previousOnDisk &&
    !session.files.changed &&
    summary.ran === 0 &&
    summary.skipped === session.graph.steps.size &&
    session.graph.steps.size === previous.steps.length;
  let state = previous;
  if (!unchanged) {
    // A few steps ran and nothing else changed: the journal already holds it all, and rewriting
    // the whole state file (over a second at 100,000 steps) can wait until the journal is long.
    // The limit counts the steps of `previous`: the journal covers only a run with as many.
    const limit = journalLimit(previous.steps.length, opts.env);
    const mayLeave = previousOnDisk && journal.entries <= limit && session.files.allJournaled;
    // Such a run keeps the table whole, which spares the walk choosing its files.
    state = stateToSave(session, summary.complete, mayLeave);
    const leave = mayLeave && journalCovers(previous, state, journal.recorded) && journal.endWithoutSaving();
    // Not covered after all (a step failed, a plan defined other steps): the file is written,
    // with only the files that steps name.
    if (mayLeave && !leave) state = stateToSave(session, summary.complete);
    if (leave) {
      const n = journal.entries;
      opts.sink.emit({
        kind: "workflow",
        message: `Recorded in .stepup/${JOURNAL_FILE} (${n} entr${n === 1 ? "y" : "ies"}; compacted into ${STATE_FILE} beyond ${limit})`,
      });
    } else {
      await journal.save(state);
      opts.sink.emit({ kind: "workflow", message: `Dumped to .stepup/${STATE_FILE}` });
    }
  }
  if (opts.progressMs) opts.sink.emit(session.progress());
  const failed = summary.failedSteps + summary.failedPlans;
  const directorLine =
    `${summary.ran} executed, ${summary.skipped} skipped, ${failed} failed, ` +
    `${summary.pending} pending${ctl.interrupted ? ", interrupted" : ""}`;
  opts.sink.emit({ kind: "director", message: directorLine });
  return { summary, state, directorLine };
}

/**
 * A first build: make V8 collect the old generation when it has grown by 20% instead of its
 * default (which let it grow about fourfold). Each finished step leaves a little garbage that
 * survives the young generation, and by default it piled up: a cold build of 30,000 steps peaked
 * at 310 MB with 91 MB live; with this, 242 MB, at no measurable CPU cost. Only for first builds:
 * with a state to load and check, it made no-op runs of 30,000 steps about 10% slower. Set before
 * the heap has grown, since V8 applies the factor when it next sets its collection threshold.
 */
function collectGarbageSooner(): void {
  setFlagsFromString("--heap-growing-percent=20");
}

/** For the key f: the same workflow, but every step must run again. */
function withoutFingerprints(state: SavedState): SavedState {
  return { files: state.files, steps: state.steps.map((s) => ({ ...s, fingerprint: null })) };
}

/**
 * Steps written in any language talk to the director with `tsup act ...`. The `tsup` they find
 * first on their PATH is a shim in the director's private folder that runs this very tsup, so it
 * works whether or not tsup is installed globally. Returns the folder to put on the PATH.
 */
function writeTsupShim(privateDir: string, node: string, bin: string): string {
  const dir = join(privateDir, "bin");
  mkdirSync(dir, { recursive: true });
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const shim = join(dir, "tsup");
  writeFileSync(shim, `#!/bin/sh\nexec ${quote(node)} ${quote(bin)} "$@"\n`);
  chmodSync(shim, 0o755);
  return dir;
}
