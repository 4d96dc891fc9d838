// Messages between the director and its worker processes. They travel over the IPC channel that
// `fork()` sets up, with `serialization: "advanced"` (the V8 structured-clone format): FileHash
// digests are Uint8Arrays, which JSON would turn into `{"0":..}` objects. Measured with messages
// of this shape, a round trip costs ~5 us more than with JSON plus base64 digests: nothing next to
// a process spawn, and no conversion code.
import type { FileHash } from "../state/types.js";

/** One step execution, as the director hands it to a worker. */
export interface RunRequest {
  /** Shell command as declared by the user. */
  command: string;
  /** Root-relative with trailing slash ("./" = root), or absolute. */
  workdir: string;
  /** Extra env vars for this step, merged over the worker's own environment. */
  env: Record<string, string>;
  /** Hashed BEFORE the command runs. Root-relative or absolute; trailing "/" = directory. */
  inputs: Array<{ path: string; known: FileHash | null }>;
  /** Hashed AFTER the command runs. Root-relative or absolute; trailing "/" = directory. */
  outputs: Array<{ path: string; known: FileHash | null }>;
}

export interface RunResult {
  /** Null when the command was killed by a signal or never ran. */
  exitCode: number | null;
  signal: string | null;
  /** Complete, decoded as UTF-8. */
  stdout: string;
  stderr: string;
  durationMs: number;
  /**
   * Problems with the inputs, e.g. "Path does not exist: data.txt" or
   * "Directory without trailing slash: d". When non-empty, the command was NOT run.
   */
  invalidInputs: string[];
  /** Parallel to request.inputs; null for an input that could not be hashed. */
  inputHashes: Array<FileHash | null>;
  /** Inputs whose stat changed while the command ran (the step must then fail). */
  changedInputs: string[];
  /** Parallel to request.outputs; null = not created (or of the wrong kind). */
  outputHashes: Array<FileHash | null>;
  /** Set when the command could not be started at all, e.g. a missing working directory. */
  spawnError: string | null;
}

/** Director -> worker. */
export type DirectorMessage =
  | { type: "run"; id: number; req: RunRequest }
  /**
   * Signal the process group of the running step. `id` names the run it is meant for, so a kill
   * that crosses the step's result on the wire cannot hit a later step.
   */
  | { type: "kill"; id: number; signal: NodeJS.Signals }
  /** Exit now; a step still running is SIGKILLed with its process group. */
  | { type: "shutdown" };

/** Worker -> director. */
export type WorkerMessage =
  /**
   * The worker started a new launcher shell, whose process group `pgid` holds every step the
   * worker runs from now on. Sent once per launcher, not per step: it lets the director kill the
   * group if this worker dies (the worker itself kills it on every orderly exit).
   */
  | { type: "launcher"; pgid: number }
  | { type: "result"; id: number; result: RunResult };

/** What `fork()` passes to a worker as its single command-line argument (JSON). */
export interface WorkerOptions {
  /** Absolute project root; workdirs and paths are resolved against it. */
  root: string;
  /** Node executable used to run `.ts` commands. */
  tsNode: string;
  /** Loader passed to `--import` when running `.ts` commands (path or URL). */
  tsLoader: string;
  /**
   * Private directory for the steps' output files. The pool creates it and removes it when the
   * worker exits, even after a crash; without it the worker makes (and removes) its own.
   */
  tmpDir?: string;
}
