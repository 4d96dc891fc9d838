// Entry file of a worker process, started by WorkerPool with fork(). Its only argument is the
// JSON-encoded WorkerOptions; everything else arrives over the IPC channel.
import type { DirectorMessage, WorkerOptions } from "./protocol.js";
import { Worker } from "./worker.js";

const arg = process.argv[2];
if (arg === undefined || typeof process.send !== "function") {
  process.stderr.write("worker-main: must be started by the tsup director (fork with IPC)\n");
  process.exit(2);
}
const opts = JSON.parse(arg) as WorkerOptions;

const worker = new Worker(opts, {
  send(msg) {
    try {
      // With a callback, a failed write (EPIPE: the director was killed) is reported here
      // instead of as an unhandled 'error' event with a stack trace.
      process.send!(msg, undefined, undefined, (err: Error | null) => {
        if (err) worker.abort(1);
      });
    } catch {
      // ERR_IPC_CHANNEL_CLOSED: the director is gone; 'disconnect' does the cleanup.
      worker.abort(1);
    }
  },
  exit(code) {
    process.exit(code);
  },
});

process.on("message", (msg) => worker.handle(msg as DirectorMessage));
// The director died or closed the channel: kill the running step's process group and leave, so
// that no orphan keeps writing into the project after tsup is gone.
process.on("disconnect", () => worker.abort(1));
// Signals aimed at the whole foreground job (Ctrl-C) also reach the worker; the director decides
// what happens to running steps, so the worker itself ignores them and waits for orders or for
// the channel to close.
process.on("SIGINT", () => {});
process.on("SIGTERM", () => worker.abort(1));
process.on("SIGHUP", () => worker.abort(1));
// Any other way out (an uncaught exception, say) still takes the steps and temp files along.
process.on("exit", () => worker.dispose());
