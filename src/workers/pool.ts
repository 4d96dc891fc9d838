// Director side of the workers: a fixed number of long-lived worker processes, each running one
// step at a time. Long-lived workers keep the per-step cost to one fork of a small shell (see
// worker.ts) plus two IPC messages, instead of starting a node process per step.
import { fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DirectorMessage, RunRequest, RunResult, WorkerMessage, WorkerOptions } from "./protocol.js";

export interface WorkerPoolOptions {
  /** Number of worker processes, i.e. of steps that can run at the same time. */
  size: number;
  /** Absolute project root. */
  root: string;
  /** Node executable used for `.ts` commands. */
  tsNode: string;
  /** Loader given to `--import` for `.ts` commands. */
  tsLoader: string;
  /**
   * Worker entry file (path or file: URL). Defaults to the compiled worker-main.js next to this
   * file. An entry ending in `.ts` is started with `--import tsx` (tests run from sources).
   */
  workerEntry?: string | URL;
}

interface Job {
  id: number;
  command: string;
  resolve: (result: RunResult) => void;
  reject: (err: Error) => void;
  /** Settles (never rejects) when the job is over either way; close() waits on it. */
  done: Promise<void>;
}

interface Slot {
  child: ChildProcess | null;
  job: Job | null;
  /** Resolves when `child` has exited. */
  exited: Promise<void> | null;
  /** Process group in which the worker runs its steps (see protocol "launcher"), or 0. */
  stepGroup: number;
}

export class WorkerPool {
  private readonly slots: Slot[];
  private readonly entry: string;
  private readonly execArgv: string[];
  private readonly workerOpts: WorkerOptions;
  private forkedAny = false;
  private closing = false;
  private busy = 0;
  private nextId = 1;

  constructor(opts: WorkerPoolOptions) {
    if (!Number.isInteger(opts.size) || opts.size < 1) throw new Error(`Invalid worker count: ${opts.size}`);
    this.slots = Array.from({ length: opts.size }, () => ({ child: null, job: null, exited: null, stepGroup: 0 }));
    const entry = opts.workerEntry ?? new URL("./worker-main.js", import.meta.url);
    this.entry = typeof entry === "string" && !entry.startsWith("file:") ? entry : fileURLToPath(entry);
    // An explicit empty execArgv: workers must not inherit the director's flags (e.g. --inspect).
    this.execArgv = /\.[mc]?ts$/.test(this.entry) ? ["--import", resolveTsx()] : [];
    this.workerOpts = { root: opts.root, tsNode: opts.tsNode, tsLoader: opts.tsLoader };
  }

  get size(): number {
    return this.slots.length;
  }

  /** Slots free for run(); not-yet-forked workers count as idle. */
  idleCount(): number {
    return this.closing ? 0 : this.slots.length - this.busy;
  }

  /** Process ids of the live worker processes (for diagnostics and tests). */
  workerPids(): number[] {
    const pids: number[] = [];
    for (const slot of this.slots) if (slot.child?.pid !== undefined) pids.push(slot.child.pid);
    return pids;
  }

  /**
   * Run one step on an idle worker. Only call when idleCount() > 0. Rejects (never hangs) when
   * the worker process dies while running the step; that worker is replaced for later runs.
   */
  run(req: RunRequest): Promise<RunResult> {
    if (this.closing) return Promise.reject(new Error("WorkerPool is closed"));
    let slot: Slot | undefined;
    // Prefer an already running worker; fork only when none is idle.
    for (const s of this.slots) {
      if (s.job !== null) continue;
      if (s.child !== null) {
        slot = s;
        break;
      }
      slot ??= s;
    }
    if (slot === undefined) return Promise.reject(new Error("WorkerPool.run() called without an idle worker"));
    if (slot.child === null) {
      try {
        if (!this.forkedAny) {
          // First need: start all workers together, so their startup overlaps.
          this.forkedAny = true;
          for (const s of this.slots) if (s.child === null) this.spawnWorker(s);
        } else {
          this.spawnWorker(slot);
        }
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
    const child = slot.child;
    if (child === null) return Promise.reject(new Error("Could not start a worker process"));
    let resolve!: (result: RunResult) => void;
    let reject!: (err: Error) => void;
    let settle!: () => void;
    const done = new Promise<void>((r) => (settle = r));
    const promise = new Promise<RunResult>((res, rej) => {
      resolve = (result) => {
        settle();
        res(result);
      };
      reject = (err) => {
        settle();
        rej(err);
      };
    });
    const job: Job = { id: this.nextId++, command: req.command, resolve, reject, done };
    slot.job = job;
    this.busy++;
    const msg: DirectorMessage = { type: "run", id: job.id, req };
    // A closed channel means the worker is dying: its 'exit' rejects the job.
    this.send(child, msg);
    return promise;
  }

  /** Forward `sig` to the process group of every running step. */
  signalAll(sig: NodeJS.Signals): void {
    for (const slot of this.slots) {
      if (slot.job === null || slot.child === null) continue;
      this.send(slot.child, { type: "kill", id: slot.job.id, signal: sig });
    }
  }

  /**
   * SIGTERM all running steps, SIGKILL those still running after `graceMs`, then shut the
   * workers down. Resolves when every worker process has exited. run() calls still in flight
   * settle normally (with the signal in their result) or reject if their worker had to be killed.
   */
  async close(opts: { graceMs?: number } = {}): Promise<void> {
    const graceMs = opts.graceMs ?? 1000;
    this.closing = true;
    const running = (): Promise<void>[] => this.slots.flatMap((s) => (s.job === null ? [] : [s.job.done]));
    if (running().length > 0) {
      this.signalAll("SIGTERM");
      if (!(await settledWithin(Promise.all(running()), graceMs))) {
        this.signalAll("SIGKILL");
        // After SIGKILL of its group a worker only fails to report if it is stuck (say, hashing
        // a huge output): then give up on the step and kill the worker.
        if (!(await settledWithin(Promise.all(running()), graceMs))) {
          for (const s of this.slots) if (s.job !== null) s.child?.kill("SIGKILL");
        }
      }
    }
    const exits: Promise<void>[] = [];
    for (const slot of this.slots) {
      const child = slot.child;
      if (child === null || slot.exited === null) continue;
      exits.push(slot.exited);
      this.send(child, { type: "shutdown" });
      const timer = setTimeout(() => child.kill("SIGKILL"), Math.max(graceMs, 1000));
      void slot.exited.then(() => clearTimeout(timer));
    }
    await Promise.all(exits);
  }

  private send(child: ChildProcess, msg: DirectorMessage): void {
    try {
      child.send(msg);
    } catch {
      // Channel closed: the worker is exiting, its 'exit' handler deals with the consequences.
    }
  }

  private spawnWorker(slot: Slot): void {
    const tmpDir = mkdtempSync(join(tmpdir(), "tsup-worker-"));
    const child = fork(this.entry, [JSON.stringify({ ...this.workerOpts, tmpDir })], {
      execArgv: this.execArgv,
      serialization: "advanced",
      // Worker crashes should be visible; steps' own output is piped separately by the worker.
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    slot.child = child;
    let died = false;
    let markExited!: () => void;
    slot.exited = new Promise<void>((r) => (markExited = r));
    const onDeath = (why: string, orderly: boolean): void => {
      if (died) return;
      died = true;
      if (slot.child === child) slot.child = null;
      // A worker that exits in order has killed its step group itself (and that group id may be
      // reused by now); one that crashed could not, and its running step must not outlive it.
      if (slot.stepGroup > 0 && !orderly) {
        try {
          process.kill(-slot.stepGroup, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      slot.stepGroup = 0;
      rmSync(tmpDir, { recursive: true, force: true });
      markExited();
      const job = slot.job;
      if (job === null) return;
      slot.job = null;
      this.busy--;
      job.reject(new Error(`Worker process ${child.pid ?? "?"} ${why} while running: ${job.command}`));
    };
    child.on("message", (raw) => {
      const msg = raw as WorkerMessage;
      if (slot.child !== child) return;
      if (msg.type === "launcher") {
        slot.stepGroup = msg.pgid;
        return;
      }
      const job = slot.job;
      if (job === null || msg.id !== job.id) return;
      slot.job = null;
      this.busy--;
      job.resolve(msg.result);
    });
    child.on("exit", (code, signal) => {
      const why = signal !== null ? `was killed by ${signal}` : `exited unexpectedly with code ${code}`;
      onDeath(why, code === 0 && slot.job === null);
    });
    child.on("error", (err) => {
      // Only a failed fork leaves no pid; other errors (failed sends) are followed by 'exit'.
      if (child.pid === undefined) onDeath(`could not be started (${err.message})`, true);
    });
  }
}

function resolveTsx(): string {
  try {
    return import.meta.resolve("tsx");
  } catch {
    return "tsx";
  }
}

/** True when `p` settled within `ms`. */
function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
