// One build session: the graph, the loaded records of earlier runs, the scheduler and the worker
// pool, wired together. `runPhase()` executes everything that can run and resolves when nothing is
// running, queued or ready any more.
//
// Flow of a step: defined (by a plan or by replaying a skipped plan) -> runnable (inputs
// available) -> ready list -> skip check in the director -> SKIP, or queued in its pool ->
// a worker runs it -> SUCCESS (outputs built, consumers released) or FAIL.
import type { EventSink, Page, StepCounts, StepRef, TsupEvent } from "../events.js";
import { normPath, rootFrom } from "../paths.js";
import { ENV_HERE, ENV_ROOT, ENV_ROOT_REL, ENV_SOCKET, ENV_STEP_KEY, type Declaration } from "../rpc/protocol.js";
import type { RpcHandler } from "../rpc/server.js";
import { Scheduler } from "../scheduler/scheduler.js";
import type { FileHash, Fingerprint, GlobRecord, SavedState, SavedStep } from "../state/types.js";
import type { RunRequest, RunResult } from "../workers/protocol.js";
import { definitionOf, sameWork } from "../workflow/definition.js";
import { addGlob, addRescheduleDue, clearRescheduleDue, Graph, stepKey, type StepDefinition, type StepNode } from "../workflow/graph.js";
import { FileTable } from "./files.js";
import { checkSkip, explainPages, fingerprintOf } from "./skip.js";
import { globChanged } from "./globs.js";
import { compilePattern, type CompiledPattern } from "../glob/pattern.js";

/** The children of a record that defined none (nearly all): one frozen list, not one each. */
const NO_INDICES: readonly number[] = Object.freeze([]);

/** What the session needs from the worker pool (src/workers/pool.ts implements it). */
export interface Runner {
  /** How many more steps run() takes now (some of them queued behind running steps). */
  freeSlots(): number;
  /**
   * `started` is called when the command starts (a step may wait queued behind another first),
   * `exited` when it is over, possibly before the result settles.
   */
  run(request: RunRequest, hooks?: { exited?: () => void; started?: () => void }): Promise<RunResult>;
  /** Whether runBehind(ahead, ...) would take a step now. */
  canRunBehind(ahead: RunRequest): boolean;
  /**
   * Run `request` on the lane of the running `ahead` once that is over, and on no other lane
   * meanwhile (it takes over the pool slot of `ahead`). Null when that lane cannot take it.
   */
  runBehind(ahead: RunRequest, request: RunRequest, hooks?: { exited?: () => void; started?: () => void }): Promise<RunResult> | null;
  /**
   * Move `request`, waiting since runBehind: to an idle lane (`to` null: it got a slot of its
   * own), or behind the running step `to`. `moving` is called before it is placed. False when
   * that cannot be done now.
   */
  moveBehind(request: RunRequest, to: RunRequest | null, moving: () => void): boolean;
  /** Hand back the steps that wait queued and have not started (their results say `withdrawn`). */
  withdrawQueued(): void;
  /** Get every lane ready to run a step, before steps come (see Session.execute). */
  warm(): void;
}

/**
 * A step from execute() until its command is over (or it never started), as far as the slots of
 * its pool go. A step of a full pool can wait on the lane of a running step of its pool and take
 * over that step's slot (Session.queueBehind): in a pool of size k, each of the k lanes then goes
 * from one step of the pool to the next by itself.
 */
interface Execution {
  readonly request: RunRequest;
  readonly pool: string | null;
  /** It holds a slot; false while it waits behind `ahead`. */
  holdsSlot: boolean;
  /** The running step of its pool whose slot it takes over when that is over. */
  ahead: Execution | null;
  /** The step waiting behind it. */
  behind: Execution | null;
  /** Its command is over, or it never started. */
  released: boolean;
  /** When (opts.now) it began to wait behind `ahead`, or, holding a slot, to run. */
  since: number;
}

/**
 * A step that has waited behind a running one for this many times as long as the step just over
 * on another lane of its pool took moves there (Session.freeSlotOf): behind a long step, it would
 * otherwise wait while the other lanes of its pool go through the steps queued after it.
 */
const HOP_AFTER_RUNS = 2;

/**
 * The environment every step of a run gets besides the director's own: the PATH with the `tsup`
 * shim in front, the director's socket, the root, and HERE and ROOT for a step in the root
 * (requestFor overrides those two for other workdirs).
 */
export function commonStepEnv(root: string, socketPath: string, path: string): Record<string, string> {
  return { PATH: path, [ENV_SOCKET]: socketPath, [ENV_ROOT]: root, [ENV_HERE]: bareDir("./"), [ENV_ROOT_REL]: bareDir("./") };
}

/** HERE and ROOT are written without a trailing slash, "." for the root itself. */
function bareDir(dir: string): string {
  return dir === "./" ? "." : dir.replace(/\/$/, "");
}

export interface SessionOptions {
  root: string;
  planFile: string;
  explain: boolean;
  sink: EventSink;
  env: NodeJS.ProcessEnv;
  runner: Runner;
  /** Number of workers, for the live view. */
  workers: number;
  /**
   * Say nothing about steps that are skipped: a rerun in watch mode replays the whole workflow,
   * and only what actually runs is news.
   */
  quietSkips?: boolean;
  /** Records every step that succeeds, for crash safety (director/persistence.ts). */
  journal?: {
    succeeded(step: StepNode, files: FileTable): void;
    /** What to wait for before succeeded() may be called (see StepJournal.ready). */
    ready(): Promise<void> | null;
  };
  now(): number;
}

export class Session implements RpcHandler {
  readonly graph = new Graph();
  readonly files: FileTable;
  readonly scheduler: Scheduler<StepNode>;
  /** Records of the previous run, by step key: candidates for skipping and for cleaning. */
  readonly oldSteps: SavedStep[];
  private readonly oldByKey = new Map<string, number>();
  private readonly oldChildren = new Map<number, number[]>();
  /** Deferred globs: their matches become static when a step first uses them as input. */
  private readonly deferred: Array<{ owner: StepNode; patterns: string[]; compiled: CompiledPattern[] }> = [];
  private readonly ready: StepNode[] = [];
  private readyHead = 0;
  /** Running steps with the time they started (ms, from opts.now). */
  readonly running = new Map<StepNode, number>();
  /** Steps handed to the worker pool whose command has not started yet (see execute). */
  private readonly waitingOnLanes = new Set<StepNode>();
  /**
   * Steps whose command is over but whose result is not recorded yet, by exit number (exits
   * counts the steps whose command ended). The START line of a step that starts meanwhile waits
   * in deferredStarts until every step that ended before it started is recorded, so that the log
   * never shows a step of a pool starting before the previous one in that pool has finished. A
   * lane goes on to its next step by itself, so a step can even end before the one before it on
   * its lane is recorded: its own result then waits for its START line (startShown).
   */
  private readonly unrecorded = new Set<number>();
  private exits = 0;
  private readonly deferredStarts: Array<{ event: TsupEvent; after: number; shown: () => void }> = [];
  /** Per pool: its steps that hold a slot and whose command is not over (see Execution). */
  private readonly slotHolders = new Map<string, Set<Execution>>();
  /** Per pool: its steps that wait behind a running one, oldest first. */
  private readonly waitingBehind = new Map<string, Execution[]>();
  private pumpScheduled = false;
  private idleWaiters: Array<() => void> = [];
  stopping = false;
  counts = { ran: 0, skipped: 0 };
  /** A bug of ours during the session: reported once, fails the run with the internal exit code. */
  internalError: Error | undefined;

  constructor(
    private readonly opts: SessionOptions,
    loaded: SavedState,
  ) {
    this.files = new FileTable(opts.root, loaded.files);
    this.oldSteps = loaded.steps;
    loaded.steps.forEach((rec, index) => {
      this.oldByKey.set(stepKey(rec.command, rec.workdir), index);
      if (!rec.orphan && rec.creator >= 0) {
        const siblings = this.oldChildren.get(rec.creator);
        if (siblings) siblings.push(index);
        else this.oldChildren.set(rec.creator, [index]);
      }
    });
    this.scheduler = new Scheduler<StepNode>({ sizeOf: (pool) => this.graph.pools.get(pool)?.size });
    this.graph.onRunnable = (step) => {
      step.state = "queued";
      this.ready.push(step);
      this.schedulePump();
    };
  }

  /** Declare the boot plan: the root's static plan file and the step that runs it. */
  boot(): void {
    // A plan deleted while watching: the boot plan waits for it (and says so) instead of failing.
    const absent = this.files.hash(this.opts.planFile).kind === "ok" ? undefined : new Set([this.opts.planFile]);
    const declared = this.graph.declareStatic(null, [this.opts.planFile], true, absent);
    if (!declared.ok) throw new Error(declared.error);
    const booted = this.define(null, {
      command: `./${this.opts.planFile}`,
      workdir: "./",
      inp: [this.opts.planFile],
      out: [],
      vol: [],
      env: [],
      pool: null,
      optional: false,
      block: false,
    });
    if (!booted.ok) throw new Error(booted.error);
    this.graph.steps.get(`./${this.opts.planFile}`)!.isBootPlan = true;
  }

  /** Resolves when nothing is ready, queued or running. */
  runPhase(): Promise<void> {
    this.schedulePump();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      this.checkIdle();
    });
  }

  private checkIdle(): void {
    if (this.readyHead < this.ready.length || this.running.size > 0 || this.pumpScheduled) return;
    if (this.waitingOnLanes.size > 0) return;
    // Commands that are over but whose results are still coming (large outputs being hashed).
    if (this.unrecorded.size > 0) return;
    if (this.scheduler.queued > 0 && !this.scheduler.held && !this.stopping) return;
    if (!this.stopping && this.releaseStaleAmendments()) return;
    for (const waiter of this.idleWaiters.splice(0)) waiter();
  }

  /**
   * Nothing can run, but some steps wait only for inputs they amended in an earlier run, which
   * nothing will produce now (the producer left the plan). Their amended information is outdated:
   * drop it and let them run, so they can amend anew. Returns whether any step was released.
   */
  private releaseStaleAmendments(): boolean {
    let released = false;
    for (const step of this.graph.steps.values()) {
      if (step.state !== "pending" || !step.amendedFromRecord || step.waiting === 0) continue;
      const waitsOnlyForAmended = step.requires.every((f) => f.available || step.amendedRequires.has(f));
      if (!waitsOnlyForAmended) continue;
      this.graph.dropAmended(step);
      step.record = null;
      if (step.runnable) {
        this.graph.reschedule(step);
        released = true;
      }
    }
    return released;
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      try {
        this.pump();
      } catch (err) {
        this.fatal(err as Error);
      }
      this.checkIdle();
    });
  }

  private fatal(err: Error): void {
    if (!this.internalError) {
      this.internalError = err;
      this.opts.sink.emit({
        kind: "error",
        message: "tsup hit an internal error; stopping. Please report this with the text below.",
        pages: [{ title: "Internal error", text: err.stack ?? String(err) }],
      });
    }
    this.stopping = true;
    this.scheduler.held = true;
  }

  /** Handle ready steps (skip or queue) and start queued steps on idle workers. */
  private pump(): void {
    this.files.beginBatch();
    // Index-based so that skips releasing more steps extend the same loop: no recursion.
    while (this.readyHead < this.ready.length) {
      const step = this.ready[this.readyHead++]!;
      if (this.stopping || step.waiting > 0) {
        // Stopping, or amended information replayed after it became runnable made it wait.
        step.state = "pending";
        continue;
      }
      // A step that must run starts right away, on the other cores, while the skip checks of
      // the thousands of steps after it go on here (a rerun after one input changed).
      if (this.handleReady(step)) this.startQueued();
    }
    this.ready.length = 0;
    this.readyHead = 0;
    this.files.endBatch();
    this.startQueued();
  }

  /** Start queued steps (already past their skip check) on idle workers. */
  private startQueued(): void {
    if (this.stopping) return;
    while (this.opts.runner.freeSlots() > 0) {
      const next = this.scheduler.next();
      if (!next) break;
      this.execute(next.item, next.pool, null).catch((err: unknown) => this.fatal(err as Error));
    }
    if (this.slotHolders.size > 0) this.queueBehind();
  }

  /**
   * Steps of full pools wait on the lanes of running steps of their pool, to take over their
   * slots. Without this, every step of a busy pool started only after the director had heard
   * that the one before was over: a round trip per step, on a busy machine often milliseconds.
   */
  private queueBehind(): void {
    for (const [pool, holders] of this.slotHolders) {
      if (this.scheduler.waitingIn(pool) === 0) continue;
      for (const ahead of holders) {
        if (ahead.behind !== null || !this.opts.runner.canRunBehind(ahead.request)) continue;
        const step = this.scheduler.takeBehind(pool);
        if (step === undefined) break;
        this.execute(step, pool, ahead).catch((err: unknown) => this.fatal(err as Error));
      }
    }
  }

  /** `exec` no longer runs: its slot goes to the step waiting behind it, or to another, or is free. */
  private freeSlotOf(exec: Execution): void {
    const pool = exec.pool;
    if (pool === null) {
      this.scheduler.done(null);
      return;
    }
    if (!exec.holdsSlot) {
      // It never got the slot it waited for (handed back, or failed before it could start).
      this.stopWaiting(exec, pool);
      return;
    }
    this.slotHolders.get(pool)?.delete(exec);
    const now = this.opts.now();
    const heir = exec.behind;
    const waiting = this.waitingBehind.get(pool);
    if (heir !== null && !heir.released) {
      // Its lane is starting it right now.
      this.takeSlot(heir, pool, now);
      // The step that has waited longest behind another may have picked a long one: once it
      // has waited for several steps like this one, it waits behind the heir instead.
      const stuck = waiting?.[0];
      if (stuck !== undefined && now - stuck.since > HOP_AFTER_RUNS * (now - exec.since)) {
        this.opts.runner.moveBehind(stuck.request, heir.request, () => this.waitBehind(stuck, heir, now));
      }
      return;
    }
    // A step still waiting behind a running one is older than anything queued: it takes the
    // free slot, on an idle lane, if it can. Not while the pool runs more steps than its size
    // (made smaller): then the slot goes.
    if (!this.scheduler.overFull(pool)) {
      for (const w of waiting ?? []) {
        if (this.opts.runner.moveBehind(w.request, null, () => this.takeSlot(w, pool, now))) return;
      }
    }
    this.scheduler.done(pool);
  }

  /** `exec`, already waiting behind a step, waits behind `ahead` instead. */
  private waitBehind(exec: Execution, ahead: Execution, now: number): void {
    this.link(exec, ahead);
    exec.since = now;
  }

  /** `exec` waits behind `ahead` (null: behind no step), no longer behind the step it was. */
  private link(exec: Execution, ahead: Execution | null): void {
    if (exec.ahead !== null && exec.ahead.behind === exec) exec.ahead.behind = null;
    exec.ahead = ahead;
    if (ahead !== null) ahead.behind = exec;
  }

  /** `exec`, waiting behind another, takes over a slot of its pool. */
  private takeSlot(exec: Execution, pool: string, now: number): void {
    this.stopWaiting(exec, pool);
    exec.holdsSlot = true;
    exec.since = now;
    this.holdSlot(exec, pool);
  }

  private holdSlot(exec: Execution, pool: string): void {
    const holders = this.slotHolders.get(pool);
    if (holders) holders.add(exec);
    else this.slotHolders.set(pool, new Set([exec]));
  }

  private stopWaiting(exec: Execution, pool: string): void {
    this.link(exec, null);
    this.scheduler.leftBehind(pool);
    const waiting = this.waitingBehind.get(pool);
    const at = waiting?.indexOf(exec) ?? -1;
    if (at >= 0) waiting!.splice(at, 1);
  }

  /** Skip `step` or queue it to run; true when it was queued. */
  private handleReady(step: StepNode): boolean {
    if (step.record?.fingerprint) {
      const verdict = checkSkip(step, this.graph.envOf(step), this.opts.env, this.files, (s) =>
        globChanged(s, this.files),
      );
      if (verdict.skip) {
        this.replay(step);
        return false;
      }
      if (this.opts.explain) {
        this.opts.sink.emit({ kind: "noskip", step: this.ref(step), pages: explainPages(verdict) });
      }
    }
    this.scheduler.enqueue(step, step.def.pool);
    return true;
  }

  /** SKIP: declare again what the step declared when it last ran, and mark it done. */
  private replay(step: StepNode): void {
    const record = step.record!;
    step.replayed = true;
    step.state = "running"; // so that its declarations are accepted while replaying
    const problems: string[] = [];
    if (record.statics.length > 0) {
      // A static file deleted since: the step's own code did not change, so it need not run;
      // the file stays declared and whoever consumes it waits until it is back.
      const absent = new Set<string>();
      const statics = record.statics;
      for (let i = 0; i < statics.length; i++) if (!this.files.present(statics[i]!)) absent.add(statics[i]!);
      const r = this.graph.declareStatic(step, record.statics, true, absent);
      if (!r.ok) problems.push(r.error);
    }
    // Indexed loops: for-of allocates in code not yet optimized, and this runs once per step.
    for (let i = 0; i < record.pools.length; i++) {
      const [name, size] = record.pools[i]!;
      const r = this.graph.definePool(step, name, size);
      if (!r.ok) problems.push(r.error);
    }
    for (let i = 0; i < record.globs.length; i++) {
      const glob = record.globs[i]!;
      addGlob(step, glob);
      if (glob.deferred) {
        const problem = this.registerDeferred(step, glob);
        if (problem) problems.push(problem);
      }
    }
    const children = this.oldChildren.get(step.recordIndex) ?? NO_INDICES;
    for (let i = 0; i < children.length; i++) {
      const child = this.oldSteps[children[i]!]!;
      const r = this.define(step, definitionOf(child));
      if (!r.ok) problems.push(r.error);
    }
    if (problems.length > 0) {
      // The graph changed since the step last ran, so its old declarations no longer fit.
      this.graph.markFailed(step);
      this.opts.sink.emit({
        kind: "finish",
        step: this.ref(step),
        outcome: "fail",
        durationMs: 0,
        pages: [{ title: "Could not replay the declarations of this step", text: problems.join("\n") }],
      });
      return;
    }
    this.counts.skipped++;
    this.graph.markSucceeded(step);
    if (!this.opts.quietSkips) this.opts.sink.emit({ kind: "skip", step: this.ref(step), pages: [] });
  }

  /** Define a step and attach its record from the previous run if its definition is unchanged. */
  private define(creator: StepNode | null, def: StepDefinition): { ok: true } | { ok: false; error: string } {
    // Most workflows have no deferred globs: then there is nothing to check, nor a list to build.
    if (this.deferred.length > 0) {
      const deferredProblem = this.checkAgainstDeferred(def.inp, [...def.out, ...def.vol]);
      if (deferredProblem) return { ok: false, error: deferredProblem };
    }
    const known = this.graph.steps.has(stepKey(def.command, def.workdir));
    const result = this.graph.defineStep(creator, def);
    if (!result.ok) return result;
    // Declared again by its creator after a RESCHEDULE: it is already set up.
    if (known) return { ok: true };
    const step = result.value;
    const index = this.oldByKey.get(step.key);
    if (index !== undefined) {
      const record = this.oldSteps[index]!;
      // Pool, optional and block do not change what a step computes, so they keep its record.
      if (sameWork(record, def)) {
        step.record = record;
        step.recordIndex = index;
        if (record.amended) {
          // The step waits up front for what it amended last time, and its fingerprint covers it.
          this.graph.addEnv(step, record.amended.env);
          const r = this.graph.amendStep(step, record.amended.inp, record.amended.out, record.amended.vol);
          if (r.ok) step.amendedFromRecord = true;
          else {
            // What it amended no longer fits the graph: run it afresh and let it amend again.
            this.graph.dropAmended(step);
            step.record = null;
          }
        }
      }
    }
    return { ok: true };
  }

  /** Run `step`, holding a slot of its pool, or waiting behind `ahead` to take over its slot. */
  private async execute(step: StepNode, pool: string | null, ahead: Execution | null): Promise<void> {
    step.state = "running";
    // Until its command starts, it waits: on a lane behind another step, or for inputs to hash.
    this.waitingOnLanes.add(step);
    // A fresh run declares everything anew; what the old record said no longer counts.
    step.fingerprint = null;
    step.amendedEnv.clear();
    this.graph.dropAmended(step);
    let started = this.opts.now();
    // Its exit number, once its command is over (release).
    let exit = 0;
    // Reported when the command starts: a step may first wait queued behind another on its lane.
    let reported = false;
    // Set while its START line waits (see unrecorded).
    let startShown: Promise<void> | null = null;
    const reportStart = (): void => {
      if (reported) return;
      reported = true;
      started = this.opts.now();
      this.waitingOnLanes.delete(step);
      // Not when it failed before its command could start (then it is over already).
      if (!exec.released) this.running.set(step, started);
      const startEvent: TsupEvent = { kind: "start", step: this.ref(step), time: started };
      // Steps that ended before this one started; not itself, when it never got to start.
      const after = exit > 0 ? exit - 1 : this.exits;
      if (this.allRecordedUpTo(after)) {
        this.opts.sink.emit(startEvent);
        return;
      }
      startShown = new Promise<void>((shown) => this.deferredStarts.push({ event: startEvent, after, shown }));
    };
    let result: RunResult;
    const request = this.requestFor(step);
    const exec: Execution = {
      request,
      pool,
      holdsSlot: ahead === null,
      ahead: null,
      behind: null,
      released: false,
      since: this.opts.now(),
    };
    if (pool !== null) {
      if (ahead === null) this.holdSlot(exec, pool);
      else {
        this.link(exec, ahead);
        const waiting = this.waitingBehind.get(pool);
        if (waiting) waiting.push(exec);
        else this.waitingBehind.set(pool, [exec]);
      }
    }
    // The pool slot is free as soon as the command is over; the next queued step can start on
    // the lane while this one's outputs are hashed and recorded.
    const release = (): void => {
      if (exec.released) return;
      exec.released = true;
      exit = ++this.exits;
      this.unrecorded.add(exit);
      this.running.delete(step);
      this.waitingOnLanes.delete(step);
      this.freeSlotOf(exec);
      this.startQueued();
    };
    const hooks = { exited: release, started: reportStart };
    try {
      const running =
        ahead === null ? this.opts.runner.run(request, hooks) : this.opts.runner.runBehind(ahead.request, request, hooks);
      // queueBehind asked canRunBehind just before, so this would be a bug of ours.
      if (running === null) throw new Error("The lane to wait on could not take the step");
      // The boot plan's first steps come within a few tens of milliseconds: the other lanes
      // start their launcher shells meanwhile, and while the director's heap is still small,
      // so each fork of it is cheaper too. Not in a run that replays the plan, where the
      // first step to run may well be the only one.
      if (step.isBootPlan) this.opts.runner.warm();
      result = await running;
    } catch (err) {
      result = {
        exitCode: null,
        signal: null,
        stdout: "",
        stderr: "",
        durationMs: this.opts.now() - started,
        invalidInputs: [],
        inputHashes: [],
        changedInputs: [],
        outputHashes: [],
        spawnError: (err as Error).message,
        sources: [],
      };
    }
    release();
    if (result.withdrawn) {
      // Never started (drain, interrupt): it waits again, unreported, like a queued step.
      step.state = "pending";
      this.unrecorded.delete(exit);
      this.flushDeferredStarts();
      this.schedulePump();
      return;
    }
    // A step that failed before its command could start (a missing input, say) is still shown
    // as started, so that its FAIL follows a START.
    reportStart();
    // Its result is not shown before its START (which waits for steps that ended before it).
    if (startShown !== null) await startShown;
    // Nor before the journal can record it (see StepJournal.ready).
    const journalReady = this.opts.journal?.ready() ?? null;
    if (journalReady !== null) await journalReady;
    this.counts.ran++;
    try {
      this.complete(step, request, result);
    } finally {
      // Even after a bug of ours in complete(): the phase must still be able to end.
      this.unrecorded.delete(exit);
      this.flushDeferredStarts();
      this.schedulePump();
    }
  }

  /** Whether every step whose command ended with an exit number up to `exit` is recorded. */
  private allRecordedUpTo(exit: number): boolean {
    for (const pending of this.unrecorded) if (pending <= exit) return false;
    return true;
  }

  /**
   * Show the START lines that no longer wait for anything, in the order the steps started. One
   * that still waits does not hold back those after it: a step that failed before it could start
   * waits only for steps that ended before it did, which can be fewer than a step that started
   * earlier waits for, and that one may be waiting for it to be recorded.
   */
  private flushDeferredStarts(): void {
    if (this.deferredStarts.length === 0) return;
    let kept = 0;
    for (const deferred of this.deferredStarts) {
      if (this.allRecordedUpTo(deferred.after)) {
        this.opts.sink.emit(deferred.event);
        deferred.shown();
      } else {
        this.deferredStarts[kept++] = deferred;
      }
    }
    this.deferredStarts.length = kept;
  }

  private requestFor(step: StepNode): RunRequest {
    const workdir = step.def.workdir;
    // What every step gets alike is in the launchers' environment (commonStepEnv), HERE and
    // ROOT included for the root.
    const env: Record<string, string> = { [ENV_STEP_KEY]: step.key };
    if (workdir !== "./") {
      env[ENV_HERE] = bareDir(workdir);
      env[ENV_ROOT_REL] = bareDir(rootFrom(workdir));
    }
    return {
      command: step.def.command,
      workdir,
      env,
      inputs: step.requires.map((f) => ({ path: f.path, known: this.knownForWorker(f.path) })),
      outputs: step.outputs.map((f) => ({ path: f.path, known: this.knownForWorker(f.path) })),
    };
  }

  /**
   * Loaded digests are views into one large buffer; structured clone would copy all of it into
   * every message, so workers get a copy of just the digest.
   */
  private knownForWorker(path: string): FileHash | null {
    const known = this.files.known(path);
    return known ? { ...known, digest: known.digest.slice() } : null;
  }

  private complete(step: StepNode, request: RunRequest, result: RunResult): void {
    const output: Page[] = [];
    if (result.stdout.trim()) output.push({ title: "Standard output", text: result.stdout });
    if (result.stderr.trim()) output.push({ title: "Standard error", text: result.stderr });
    if (step.rescheduleDueTo.length > 0) {
      // The step asked for inputs that do not exist yet: it runs again once they do.
      const due = [...new Set(step.rescheduleDueTo)].sort();
      this.opts.sink.emit({
        kind: "finish",
        step: this.ref(step),
        outcome: "reschedule",
        pages: [{ title: "Rescheduling due to unavailable amended inputs", text: due.join("\n") }, ...output],
        durationMs: result.durationMs,
      });
      clearRescheduleDue(step);
      this.graph.reschedule(step);
      return;
    }
    const lines = [`Command               ${step.def.command}`];
    if (step.def.workdir !== "./") lines.push(`Working directory     ${step.def.workdir}`);
    if (result.exitCode !== null) lines.push(`Return code           ${result.exitCode}`);
    if (result.signal !== null) lines.push(`Killed by signal      ${result.signal}`);
    const info: Page = { title: "Step info", text: lines.join("\n") };
    const pages: Page[] = [];
    let fingerprint: Fingerprint | null = null;
    if (result.spawnError !== null) {
      pages.push(info, { title: "Could not run the step", text: result.spawnError });
    } else if (result.invalidInputs.length > 0) {
      pages.push(info, { title: "Invalid inputs", text: result.invalidInputs.join("\n") });
    } else if (result.exitCode !== 0) {
      pages.push(info);
      if (result.changedInputs.length > 0) {
        pages.push({ title: "Inputs changed while the step ran", text: result.changedInputs.sort().join("\n") });
      }
    } else {
      const hashes = this.resultHashes(step, request, result);
      const missing = (list: Array<[string, FileHash | null]>): string[] =>
        list.filter(([, h]) => h === null).map(([p]) => p).sort();
      const missingOutputs = missing(hashes.outputs);
      const missingInputs = missing(hashes.inputs);
      if (missingOutputs.length > 0) pages.push({ title: "Expected outputs not created", text: missingOutputs.join("\n") });
      if (missingInputs.length > 0) pages.push({ title: "Inputs missing after the step ran", text: missingInputs.join("\n") });
      if (result.changedInputs.length > 0) {
        pages.push({ title: "Inputs changed while the step ran", text: result.changedInputs.sort().join("\n") });
      }
      if (pages.length > 0) pages.unshift(info);
      else {
        const known = (list: Array<[string, FileHash | null]>) => list as Array<[string, FileHash]>;
        fingerprint = fingerprintOf(step, this.graph.envOf(step), this.opts.env, known(hashes.inputs), known(hashes.outputs));
      }
    }
    if (fingerprint) {
      step.fingerprint = fingerprint;
      this.graph.markSucceeded(step);
      // Before SUCCESS is reported: a SUCCESS seen by anyone is a step the next run skips.
      this.opts.journal?.succeeded(step, this.files);
    } else {
      this.graph.markFailed(step);
    }
    this.opts.sink.emit({
      kind: "finish",
      step: this.ref(step),
      outcome: fingerprint ? "success" : "fail",
      pages: [...pages, ...output],
      durationMs: result.durationMs,
    });
  }

  /**
   * Hashes (null: missing) of everything the step required and produced. The worker hashed what
   * was known when the step started; what the step amended while it ran is hashed here.
   */
  private resultHashes(
    step: StepNode,
    request: RunRequest,
    result: RunResult,
  ): { inputs: Array<[string, FileHash | null]>; outputs: Array<[string, FileHash | null]> } {
    const fromWorker = new Map<string, FileHash | null>();
    request.inputs.forEach((f, i) => fromWorker.set(f.path, result.inputHashes[i] ?? null));
    request.outputs.forEach((f, i) => fromWorker.set(f.path, result.outputHashes[i] ?? null));
    const collect = (files: readonly { path: string }[]): Array<[string, FileHash | null]> =>
      files.map((f) => {
        if (fromWorker.has(f.path)) {
          const hash = fromWorker.get(f.path)!;
          this.files.remember(f.path, hash);
          return [f.path, hash];
        }
        const now = this.files.hash(f.path);
        return [f.path, now.kind === "ok" ? now.hash : null];
      });
    const inputs = collect(step.requires);
    const outputs = collect(step.outputs);
    if (result.sources.length > 0) {
      // Sources the step's loader read beyond its declared inputs (a module the plan imports):
      // in the fingerprint, so that editing them makes the step run again. One that is gone
      // again, or is an output, is left out rather than failing the step.
      const seen = new Set<string>([...inputs.map(([p]) => p), ...outputs.map(([p]) => p)]);
      const prefix = `${this.opts.root}/`;
      for (const abs of result.sources) {
        const path = abs.startsWith(prefix) ? normPath(abs.slice(prefix.length)) : abs;
        if (seen.has(path)) continue;
        seen.add(path);
        const now = this.files.hash(path);
        if (now.kind === "ok") inputs.push([path, now.hash]);
      }
    }
    return { inputs, outputs };
  }

  // ----------------------------------------------------------------------------------------
  // Declarations from running steps (the RPC handler)

  declare(key: string | null, items: Declaration[]): Array<{ i: number; message: string }> {
    const step = key === null ? undefined : this.graph.steps.get(key);
    if (!step || step.state !== "running") {
      const why = key === null ? "no step key was given" : `step \`${key}\` is not running`;
      return items.map((_, i) => ({ i, message: `declarations are only accepted from running steps: ${why}` }));
    }
    const errors: Array<{ i: number; message: string }> = [];
    items.forEach((item, i) => {
      const error = this.apply(step, item);
      if (error !== undefined) errors.push({ i, message: error });
    });
    return errors;
  }

  private apply(step: StepNode, item: Declaration): string | undefined {
    switch (item.k) {
      case "static": {
        const r = this.graph.declareStatic(step, item.paths);
        return r.ok ? undefined : r.error;
      }
      case "step": {
        const r = this.define(step, definitionOf(item));
        return r.ok ? undefined : r.error;
      }
      case "pool": {
        const r = this.graph.definePool(step, item.name, item.size);
        return r.ok ? undefined : r.error;
      }
      case "env":
        this.graph.addEnv(step, item.names);
        return undefined;
      case "glob": {
        const record: GlobRecord = {
          patterns: item.patterns,
          subs: item.subs,
          workdir: item.workdir,
          matches: item.matches,
          deferred: item.deferred === true,
        };
        if (record.deferred) {
          const problem = this.registerDeferred(step, record);
          if (problem) return problem;
        }
        addGlob(step, record);
        return undefined;
      }
    }
  }

  call(key: string | null, method: string, args: unknown): Promise<unknown> {
    try {
      switch (method) {
        case "amend":
          return Promise.resolve(this.amend(key, args));
        case "status":
          return Promise.resolve(this.status());
        default:
          throw new Error(`unknown method: ${method}`);
      }
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** What `tsup status` shows: running steps, pools, counts. Plain data for the wire. */
  status(): StatusReport {
    const now = this.opts.now();
    const running = [...this.running].map(([step, started]) => ({
      command: step.def.command,
      workdir: step.def.workdir,
      pool: step.def.pool,
      seconds: Math.round((now - started) / 100) / 10,
    }));
    const { counts: c, pools } = this.progress();
    return {
      phase: this.stopping ? "stopping" : "run",
      running,
      pools,
      counts: {
        executed: this.counts.ran,
        skipped: c.skipped,
        // "done": skipped steps are done too.
        succeeded: c.succeeded + c.skipped,
        failed: c.failed,
        pending: c.pending,
        running: running.length,
      },
    };
  }

  /** Counts and pool occupancy for the live view. Walks all steps: call a few times a second at most. */
  progress(): Extract<TsupEvent, { kind: "progress" }> {
    const counts: StepCounts = { total: 0, succeeded: 0, skipped: 0, failed: 0, running: this.running.size, pending: 0 };
    for (const step of this.graph.steps.values()) {
      if (step.mandatory === "no") continue;
      counts.total++;
      // succeeded: executed with success; skipped ones are counted apart.
      if (step.state === "succeeded") {
        if (step.replayed) counts.skipped++;
        else counts.succeeded++;
      } else if (step.state === "failed") counts.failed++;
      else if (step.state !== "running" || this.waitingOnLanes.has(step)) counts.pending++;
    }
    const pools = [...this.graph.pools].map(([name, def]) => ({
      name,
      size: def.size,
      running: this.scheduler.runningIn(name),
      queued: this.scheduler.queuedIn(name),
    }));
    return { kind: "progress", counts, pools, workers: this.opts.workers };
  }

  /** A running step declares more about itself. Answers whether it may go on. */
  private amend(key: string | null, args: unknown): { keepGoing: boolean; missing: string[] } {
    const step = key === null ? undefined : this.graph.steps.get(key);
    if (!step || step.state !== "running") {
      throw new Error(`amend() is only possible from a running step (${key ?? "no step key"} is not running)`);
    }
    const a = (args ?? {}) as Record<string, unknown>;
    const list = (name: string): string[] => {
      const v = a[name] ?? [];
      if (!Array.isArray(v) || !v.every((x) => typeof x === "string" && x !== "")) {
        throw new Error(`amend: ${name} must be a list of paths`);
      }
      return v as string[];
    };
    const inp = list("inp");
    const out = list("out");
    const vol = list("vol");
    const env = list("env");
    for (const name of env) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`invalid env var name: ${JSON.stringify(name)}`);
    }
    const deferredProblem = this.checkAgainstDeferred(inp, [...out, ...vol]);
    if (deferredProblem) throw new Error(deferredProblem);
    const r = this.graph.amendStep(step, inp, out, vol);
    if (!r.ok) throw new Error(r.error);
    this.graph.addEnv(step, env);
    addRescheduleDue(step, r.value.missing);
    return { keepGoing: r.value.missing.length === 0, missing: r.value.missing };
  }

  /**
   * Install a deferred glob. Inputs already waiting for a file it matches (steps defined before
   * the glob) get their file declared now.
   */
  private registerDeferred(owner: StepNode, glob: GlobRecord): string | undefined {
    let compiled: CompiledPattern[];
    try {
      compiled = glob.patterns.map((p) => compilePattern(p));
    } catch (err) {
      return (err as Error).message;
    }
    const text = glob.patterns.join(" ");
    if (this.deferred.some((d) => d.patterns.join(" ") === text)) return `deferred glob ${text} is defined twice`;
    this.deferred.push({ owner, patterns: glob.patterns, compiled });
    const waiting = [...this.graph.files.values()].filter(
      (f) => f.state === "pending" && !f.producer && f.consumers.length > 0,
    );
    return this.checkAgainstDeferred(
      waiting.map((f) => f.path),
      [],
    );
  }

  /**
   * Inputs matching a deferred glob become static if they exist (and stay waited for if not);
   * outputs may not match one. Returns a problem, or undefined.
   */
  private checkAgainstDeferred(inputs: string[], outputs: string[]): string | undefined {
    if (this.deferred.length === 0) return undefined;
    const matching = (path: string) => this.deferred.filter((d) => d.compiled.some((c) => c.match(path)));
    for (const path of outputs) {
      const m = matching(path);
      if (m.length > 0) return `output ${path} matches the deferred glob ${m[0]!.patterns.join(" ")}; outputs cannot be static files`;
    }
    for (const path of inputs) {
      const node = this.graph.files.get(path);
      if (node && (node.available || node.producer)) continue;
      const m = matching(path);
      if (m.length > 1) {
        return `input ${path} matches more than one deferred glob: ${m.map((d) => d.patterns.join(" ")).join(" and ")}`;
      }
      if (m.length === 1 && this.files.hash(path).kind === "ok") {
        const r = this.graph.declareStatic(m[0]!.owner, [path], false);
        if (!r.ok) return r.error;
      }
    }
    return undefined;
  }

  /**
   * For each record of the previous run, by its index in `oldSteps`: the live step with its key,
   * if there is one. Looks up the live steps' keys, which are hashed already, rather than a key
   * made anew from each record.
   */
  liveStepsOfRecords(): Array<StepNode | undefined> {
    const live = new Array<StepNode | undefined>(this.oldSteps.length).fill(undefined);
    for (const step of this.graph.steps.values()) {
      const index = this.oldByKey.get(step.key);
      if (index !== undefined) live[index] = step;
    }
    return live;
  }

  /** Whether the step's record from the previous run says it defined other steps. */
  definedStepsBefore(step: StepNode): boolean {
    return step.recordIndex >= 0 && (this.oldChildren.get(step.recordIndex)?.length ?? 0) > 0;
  }

  // ----------------------------------------------------------------------------------------

  /**
   * Start nothing new, but keep deciding what could run (skips go on); the phase ends once the
   * running steps have finished. Used by the keys d (drain) and q (shut down).
   */
  drain(): void {
    this.draining = true;
    this.scheduler.held = true;
    this.opts.runner.withdrawQueued();
    this.schedulePump();
  }

  draining = false;

  /** Stop starting new work (Ctrl-C, SIGTERM): queued and ready steps stay pending. */
  stop(): void {
    this.stopping = true;
    this.scheduler.held = true;
    for (const step of this.scheduler.clear()) step.state = "pending";
    this.opts.runner.withdrawQueued();
    this.schedulePump();
  }

  ref(step: StepNode): StepRef {
    return { key: step.key, command: step.def.command, workdir: step.def.workdir, pool: step.def.pool ?? undefined };
  }
}

export interface StatusReport {
  phase: "run" | "stopping" | "watch" | "exiting";
  running: Array<{ command: string; workdir: string; pool: string | null; seconds: number }>;
  pools: Array<{ name: string; size: number; running: number; queued: number }>;
  counts: { executed: number; skipped: number; succeeded: number; failed: number; pending: number; running: number };
}
