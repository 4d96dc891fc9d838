// The director's side of running steps: a fixed number of lanes (worker.ts), each a long-lived
// launcher shell that runs one step at a time. The per-step cost is one fork of a small shell
// plus a few bytes over a pipe each way (see worker.ts for why there is no node process between
// the director and the shells).
//
// Each busy lane also takes one step queued behind its running one (Worker.queue), so that the
// lane goes on to it without waiting for the director. A queued step is not bound to its lane:
// when a lane falls idle while another still has a step queued (behind a long step, say), the
// idle lane takes it over, unless that step is already starting (Worker.withdraw says so).
// Except a step queued with runBehind: it holds the pool slot of the step ahead of it, so it may
// only start once that step is over (the session moves it, with moveBehind, when it gets a slot of
// its own first).
import type { RunRequest, RunResult } from "./protocol.js";
import { settledWithin, settleUnstarted, Worker, type LaneHooks, type Queued } from "./worker.js";

export interface WorkerPoolOptions {
  /** Number of lanes, i.e. of steps that can run at the same time. */
  size: number;
  /** Absolute project root. */
  root: string;
  /** Node executable used for `.ts` commands. */
  tsNode: string;
  /** Loader given to `--import` for `.ts` commands. */
  tsLoader: string;
  /** The shell that runs the launchers (WorkerOptions.shell). */
  shell?: string;
}

export class WorkerPool {
  private readonly workers: Worker[];
  private closing = false;
  /** Steps accepted while no lane could take them (see run): the next lane to fall idle does. */
  private readonly overflow: Queued[] = [];
  /** Set while steps are handed back (withdrawQueued, signalAll). */
  private handingBack = false;
  /** Settle when the runs in flight are over; close() waits on them. */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly onExit = (): void => {
    // Last resort when the director exits without close() (an uncaught error, process.exit):
    // steps must not outlive it. The launchers' watchdogs cover SIGKILL.
    for (const w of this.workers) w.dispose();
  };

  constructor(opts: WorkerPoolOptions) {
    if (!Number.isInteger(opts.size) || opts.size < 1) throw new Error(`Invalid worker count: ${opts.size}`);
    const workerOpts = { root: opts.root, tsNode: opts.tsNode, tsLoader: opts.tsLoader, shell: opts.shell };
    this.workers = Array.from({ length: opts.size }, () => new Worker(workerOpts));
    process.on("exit", this.onExit);
  }

  get size(): number {
    return this.workers.length;
  }

  /**
   * Environment every step gets besides the director's own (the same for all steps of a run);
   * launchers started from now on have it. A request's `env` then only carries what differs
   * per step: the launcher reads each request a byte at a time, ~0.3 µs per byte here.
   */
  setCommonEnv(env: Record<string, string>): void {
    for (const w of this.workers) w.setCommonEnv(env);
  }

  /**
   * How many more steps run() takes now: an idle lane takes two (one to run, one queued behind
   * it), a busy lane one more if nothing is queued on it yet.
   */
  freeSlots(): number {
    if (this.closing) return 0;
    let free = -this.overflow.length;
    for (const w of this.workers) free += !w.busy ? 2 : w.canQueue ? 1 : 0;
    return Math.max(0, free);
  }

  /** Start the launcher shell of every idle lane that has none (Runner.warm). */
  warm(): void {
    if (this.closing) return;
    for (const w of this.workers) if (!w.busy) w.warm();
  }

  /** Lanes with nothing to run. */
  idleCount(): number {
    if (this.closing) return 0;
    let idle = 0;
    for (const w of this.workers) if (!w.busy) idle++;
    return idle;
  }

  /** Pids of the live launcher shells (for diagnostics and tests). */
  launcherPids(): number[] {
    const pids: number[] = [];
    for (const w of this.workers) {
      const pid = w.launcherPid();
      if (pid !== null) pids.push(pid);
    }
    return pids;
  }

  /**
   * Run one step: on an idle lane, else queued behind a busy lane's step. Call only when
   * freeSlots() > 0. Never rejects for anything the step does: a launcher that dies is reported
   * in the result and replaced for later runs. `exited` is called once the command is over and
   * its lane can take another step, before the result settles (see Worker.run): the caller can
   * hand out the next step right away.
   */
  run(req: RunRequest, hooks: LaneHooks = {}): Promise<RunResult> {
    if (this.closing) return Promise.reject(new Error("WorkerPool is closed"));
    // Prefer a lane whose launcher already runs; a fresh one costs a spawn.
    let lane: Worker | undefined;
    let queueOn: Worker | undefined;
    for (const w of this.workers) {
      if (w.busy) {
        if (w.canQueue) queueOn ??= w;
        continue;
      }
      if (w.launcherPid() !== null) {
        lane = w;
        break;
      }
      lane ??= w;
    }
    return this.track(hooks, (done, laneHooks) => {
      if (lane !== undefined) lane.run(req, done, laneHooks);
      else if (queueOn !== undefined) queueOn.queue(req, done, laneHooks);
      // More steps than slots (a lane that looked free went on to hash large inputs): kept here.
      else this.overflow.push({ kind: "unwritten", req, done, hooks: laneHooks });
    });
  }

  /**
   * Run `req` on the lane that runs `ahead`, right after it, and on no other lane while `ahead`
   * runs: a step of a pool that takes over the pool slot of `ahead` (the session keeps the
   * count). The lane starts it the moment `ahead` is over, without a round trip through the
   * director. Null, and nothing done, when that lane cannot queue a step now.
   */
  runBehind(ahead: RunRequest, req: RunRequest, hooks: LaneHooks = {}): Promise<RunResult> | null {
    const lane = this.laneToWaitOn(ahead);
    if (lane === undefined) return null;
    return this.track(hooks, (done, laneHooks) => lane.queue(req, done, laneHooks, true));
  }

  /** Whether runBehind(ahead, ...) would take a step now. */
  canRunBehind(ahead: RunRequest): boolean {
    return this.laneToWaitOn(ahead) !== undefined;
  }

  private laneToWaitOn(ahead: RunRequest): Worker | undefined {
    if (this.closing) return undefined;
    return this.workers.find((w) => w.runningRequest === ahead && w.canQueue);
  }

  /**
   * Move `req`, waiting behind another step since runBehind: to an idle lane (`to` null: the
   * session has a pool slot for it after all), or behind the running step `to` on its lane.
   * `moving` is called once it is taken back, before it is placed. False, and nothing done, when
   * there is no such lane now or the step is already starting.
   */
  moveBehind(req: RunRequest, to: RunRequest | null, moving: () => void): boolean {
    if (this.closing) return false;
    const target = to === null ? this.workers.find((w) => !w.busy) : this.laneToWaitOn(to);
    const lane = this.workers.find((w) => w.queuedRequest === req);
    if (target === undefined || lane === undefined || lane === target) return false;
    const queued = lane.withdraw();
    if (queued === null) return false;
    moving();
    if (to === null) target.adopt(queued);
    else target.requeue(queued);
    return true;
  }

  /**
   * The promise of a step between run() (or runBehind) and its result; `place` hands the step to
   * a lane with the callbacks to use. Once the command is over (or never started), `hooks.exited`
   * is called and idle lanes get the steps that wait (rebalance).
   */
  private track(
    hooks: LaneHooks,
    place: (done: (result: RunResult) => void, laneHooks: LaneHooks) => void,
  ): Promise<RunResult> {
    let settled!: () => void;
    const over = new Promise<void>((r) => (settled = r));
    this.inFlight.add(over);
    let free = false;
    const release = (): void => {
      if (free) return;
      free = true;
      hooks.exited?.();
      this.rebalance();
    };
    return new Promise<RunResult>((resolve) => {
      const done = (result: RunResult): void => {
        release();
        this.inFlight.delete(over);
        settled();
        resolve(result);
      };
      const laneHooks: LaneHooks = { exited: release };
      if (hooks.started) laneHooks.started = hooks.started;
      place(done, laneHooks);
    });
  }

  /** Give idle lanes the steps that wait: those kept here first, then those queued on busy lanes. */
  private rebalance(): void {
    if (this.closing || this.handingBack) return;
    for (const idle of this.workers) {
      if (idle.busy) continue;
      let queued = this.overflow.shift() ?? null;
      for (const w of this.workers) {
        if (queued !== null) break;
        if (w !== idle && w.hasMovable) queued = w.withdraw();
      }
      if (queued === null) return;
      idle.adopt(queued);
    }
  }

  /**
   * Hand back every step that waits for a lane and has not started (RunResult.withdrawn). A
   * queued step whose launcher is already starting it runs and reports as usual.
   */
  withdrawQueued(): void {
    // Handing one back frees a slot; rebalancing must not start another meanwhile.
    this.handingBack = true;
    try {
      for (const queued of this.overflow.splice(0)) settleUnstarted(queued);
      for (const w of this.workers) {
        const queued = w.withdraw();
        if (queued !== null) settleUnstarted(queued);
      }
    } finally {
      this.handingBack = false;
    }
  }

  /** Forward `sig` to the process group of every running step; steps not started are handed back. */
  signalAll(sig: NodeJS.Signals): void {
    this.handingBack = true;
    try {
      for (const w of this.workers) if (w.busy) w.signal(sig);
    } finally {
      this.handingBack = false;
    }
    this.withdrawQueued();
  }

  /**
   * SIGTERM all running steps, SIGKILL those still running after `graceMs`, then stop the
   * launchers. Resolves when every launcher has exited. run() calls still in flight settle with
   * the signal in their result.
   */
  async close(opts: { graceMs?: number } = {}): Promise<void> {
    const graceMs = opts.graceMs ?? 1000;
    this.closing = true;
    this.withdrawQueued();
    if (this.inFlight.size > 0) {
      const idle = Promise.all([...this.inFlight]);
      this.signalAll("SIGTERM");
      if (!(await settledWithin(idle, graceMs))) {
        this.signalAll("SIGKILL");
        await settledWithin(idle, graceMs);
      }
    }
    // Killing the launchers also settles a step stuck in hashing or ignoring signals.
    await Promise.all(this.workers.map((w) => w.close()));
    process.off("exit", this.onExit);
  }
}
