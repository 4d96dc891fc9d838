// One complete non-interactive run: take the folder's lock, load the previous state, serve the
// director socket, build, report, clean, save. The CLI calls this; so can tests.
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { EventSink } from "../events.js";
import { removeDirectorInfo, writeDirectorInfo } from "../rpc/locate.js";
import { RpcServer } from "../rpc/server.js";
import { acquireLock } from "../state/lock.js";
import { loadState, saveState, STATE_FILE } from "../state/store.js";
import { WorkerPool } from "../workers/pool.js";
import { cleanObsoleteOutputs, stateToSave, summarize, type PhaseSummary } from "./finalize.js";
import { Checkpointer } from "./checkpoint.js";
import { Session } from "./session.js";

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
  /** Save the state at least this often during a run (default 30 s). */
  checkpointMs?: number;
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
  try {
    const loaded = await loadState(stepupDir);
    if (loaded.warning) {
      const pages = [{ title: "What was wrong", text: loaded.warning.details }];
      if (loaded.warning.keptCopy) pages.push({ title: "Copy of the bad file", text: loaded.warning.keptCopy });
      opts.sink.emit({ kind: "warning", message: loaded.warning.message, pages });
    } else if (loaded.loaded) {
      opts.sink.emit({ kind: "workflow", message: `Loaded from .stepup/${STATE_FILE}` });
    }
    let session: Session | undefined;
    server = await RpcServer.start({
      declare: (key, items) => session!.declare(key, items),
      call: (key, method, args) => session!.call(key, method, args),
    });
    writeDirectorInfo(stepupDir, { socket: server.socketPath, pid: process.pid });
    session = new Session(
      {
        root: opts.root,
        planFile: opts.planFile,
        explain: opts.explain,
        sink: opts.sink,
        env: opts.env,
        runner: workers,
        socketPath: server.socketPath,
        stepEnv: { PATH: `${writeTsupShim(server.dir, opts.tsNode, opts.tsupBin)}:${opts.env["PATH"] ?? ""}` },
        now: opts.now,
      },
      loaded.state,
    );
    let interrupted = false;
    const onStop = (): void => {
      interrupted = true;
      session!.stop();
      void workers.close({ graceMs: opts.graceMs ?? 1000 });
    };
    if (opts.stop.aborted) onStop();
    else opts.stop.addEventListener("abort", onStop, { once: true });
    opts.sink.emit({ kind: "phase", phase: "run" });
    const checkpoints = new Checkpointer(
      () => saveState(stepupDir, stateToSave(session!, false)),
      () => session!.counts.ran,
      opts.checkpointMs ?? 30_000,
    );
    checkpoints.start();
    session.boot();
    await session.runPhase();
    await checkpoints.stop();
    opts.stop.removeEventListener("abort", onStop);
    const summary = summarize(session, opts.sink, interrupted);
    if (summary.complete) cleanObsoleteOutputs(session, opts.sink);
    else if (!interrupted) opts.sink.emit({ kind: "warning", message: "Skipping cleanup due to incomplete build." });
    // A run that skipped every step it knew, learned no new file hash and dropped no step would
    // write back exactly what it loaded: leave the file alone (it keeps no-op runs fast).
    const unchanged =
      loaded.loaded &&
      !loaded.warning &&
      !session.files.changed &&
      summary.ran === 0 &&
      summary.skipped === session.graph.steps.size &&
      session.graph.steps.size === loaded.state.steps.length;
    if (!unchanged) {
      await saveState(stepupDir, stateToSave(session, summary.complete));
      opts.sink.emit({ kind: "workflow", message: `Dumped to .stepup/${STATE_FILE}` });
    }
    const failed = summary.failedSteps + summary.failedPlans;
    opts.sink.emit({
      kind: "director",
      message:
        `${summary.ran} executed, ${summary.skipped} skipped, ${failed} failed, ` +
        `${summary.pending} pending${interrupted ? ", interrupted" : ""}`,
    });
    return { kind: "done", summary, interrupted, internalError: session.internalError !== undefined };
  } finally {
    removeDirectorInfo(stepupDir, process.pid);
    await Promise.allSettled([workers.close({ graceMs: opts.graceMs ?? 1000 }), server?.close()]);
    lock.release();
  }
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
