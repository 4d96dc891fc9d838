// The director's side of running steps: a fixed number of lanes (worker.ts), each a long-lived
// launcher shell that runs one step at a time. The per-step cost is one fork of a small shell
// plus a few bytes over a pipe each way (see worker.ts for why there is no node process between
// the director and the shells).
import type { RunRequest, RunResult } from "./protocol.js";
import { settledWithin, Worker } from "./worker.js";

export interface WorkerPoolOptions {
  /** Number of lanes, i.e. of steps that can run at the same time. */
  size: number;
  /** Absolute project root. */
  root: string;
  /** Node executable used for `.ts` commands. */
  tsNode: string;
  /** Loader given to `--import` for `.ts` commands. */
  tsLoader: string;
}

export class WorkerPool {
  private readonly workers: Worker[];
  private closing = false;
  private busy = 0;
  /** Settle when the runs in flight are over; close() waits on them. */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly onExit = (): void => {
    // Last resort when the director exits without close() (an uncaught error, process.exit):
    // steps must not outlive it. The launchers' watchdogs cover SIGKILL.
    for (const w of this.workers) w.dispose();
  };

  constructor(opts: WorkerPoolOptions) {
    if (!Number.isInteger(opts.size) || opts.size < 1) throw new Error(`Invalid worker count: ${opts.size}`);
    const workerOpts = { root: opts.root, tsNode: opts.tsNode, tsLoader: opts.tsLoader };
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

  /** Lanes free for run(). */
  idleCount(): number {
    return this.closing ? 0 : this.workers.length - this.busy;
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
   * Run one step on an idle lane. Only call when idleCount() > 0. Never rejects for anything the
   * step does: a launcher that dies is reported in the result and replaced for later runs.
   * `exited` is called once the command is over and its lane already counts as idle, before the
   * result settles (see Worker.run): the caller can start the next step on that lane right away.
   */
  run(req: RunRequest, exited?: () => void): Promise<RunResult> {
    if (this.closing) return Promise.reject(new Error("WorkerPool is closed"));
    // Prefer a lane whose launcher already runs; a fresh one costs a spawn.
    let lane: Worker | undefined;
    for (const w of this.workers) {
      if (w.busy) continue;
      if (w.launcherPid() !== null) {
        lane = w;
        break;
      }
      lane ??= w;
    }
    if (lane === undefined) return Promise.reject(new Error("WorkerPool.run() called without an idle worker"));
    this.busy++;
    let settled!: () => void;
    const over = new Promise<void>((r) => (settled = r));
    this.inFlight.add(over);
    let free = false;
    const release = (): void => {
      if (free) return;
      free = true;
      this.busy--;
      exited?.();
    };
    return new Promise<RunResult>((resolve) => {
      lane.run(
        req,
        (result) => {
          release();
          this.inFlight.delete(over);
          settled();
          resolve(result);
        },
        release,
      );
    });
  }

  /** Forward `sig` to the process group of every running step. */
  signalAll(sig: NodeJS.Signals): void {
    for (const w of this.workers) if (w.busy) w.signal(sig);
  }

  /**
   * SIGTERM all running steps, SIGKILL those still running after `graceMs`, then stop the
   * launchers. Resolves when every launcher has exited. run() calls still in flight settle with
   * the signal in their result.
   */
  async close(opts: { graceMs?: number } = {}): Promise<void> {
    const graceMs = opts.graceMs ?? 1000;
    this.closing = true;
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
