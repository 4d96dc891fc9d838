// What the session asks of the worker pool for one step, and what it gets back.
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
  /**
   * Absolute paths of the source files a TypeScript command loaded (modules it imported, the
   * tsconfig.json it compiled with), as tsup's loader wrote them to $TSUP_SOURCES_FILE.
   */
  sources: string[];
  /**
   * The step never started: it was queued behind another and taken back (drain, interrupt,
   * shutdown). It goes back to waiting, as if it had never been handed out.
   */
  withdrawn?: boolean;
}

/** Where tsup's TypeScript loader appends the source files it loads, one absolute path per line. */
export const ENV_SOURCES_FILE = "TSUP_SOURCES_FILE";
