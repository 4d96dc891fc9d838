// One lane of the worker pool, living in the director process: a long-lived `/bin/sh` launcher
// that runs one step at a time, plus the hashing of the step's inputs before and its outputs
// after the command.
//
// Why the director talks to the launcher shells itself: tsup used to put a node worker process
// between the director and each launcher. Every step then crossed four process boundaries
// (director -> worker over IPC -> launcher over a pipe, and back), and on a 2-core machine each
// hop is a context switch that competes with the steps themselves: a profile of 5000 `cp` steps
// put 27% of the director's busy time in IPC writes and 23% of the workers' in pipe writes, and
// the two node workers used more CPU than the director. Hashing small files takes microseconds,
// so it is done right here; files above LARGE_FILE_BYTES are hashed asynchronously
// (hashLargeFile), so a big output does not stall the director.
//
// Commands are not spawned from node directly. Forking a node process (tens of MB of mappings to
// copy, then tear down on exec) costs far more than forking a small shell, the more so in VMs.
// Measured for tiny `cp` steps with 2 lanes on 2 CPUs: spawn() from node took ~1.6-2x the wall
// time of `xargs -P2 sh -c`, a launcher ~1.25x. So each lane keeps one long-lived `/bin/sh`
// launcher (LAUNCHER_PROLOGUE) that forks a subshell per step, which then execs
// `/bin/sh -c <command>`: the same fork + exec that ninja or xargs pay.
//
// The launcher runs in its own process group (spawned detached, i.e. in a new session), and steps
// run in that group, so signalling the group reaches the whole tree of the step. The launcher
// survives the catchable signals (its trap defers them until the step is over); a subshell resets
// caught signals to their defaults, so steps see normal signal behaviour. After SIGKILL, or if it
// dies otherwise, a new launcher is started for the next step. If the director dies without
// cleaning up (SIGKILL), a watchdog in the launcher's group sees the end of a pipe only the
// director holds and SIGKILLs the group: no step outlives tsup.
//
// Protocol. The launcher is a `/bin/sh -s` that reads shell code from its stdin: first
// LAUNCHER_PROLOGUE, then one line of code per step, which the shell parses and runs like any
// script. dash reads such input in blocks of up to 8 KB, so a step's request costs one read()
// or less; the launcher used to take each request with the `read` builtin, which must read
// pipes one byte at a time (a request of 170 bytes took about 53 microseconds of system time,
// more than a quarter of the launcher's CPU per `cp` step). A request for an idle lane starts
// with RUN_NOW and runs at once. For any other (RUN_ON_GO), the launcher then reads a go token
// from its token FIFO (fd 4): "g" runs the step, "s" skips it. The director writes a
// step's token together with its request, so a step queued behind a running one (queue) starts
// the moment that one is over, without waiting for the director to hear of it: on a busy 2-core
// machine the director is often not scheduled right away, and every round trip through it left
// the lane idle. Withdrawing a queued step (to run it on an idle lane, or not at all) takes its
// token back: the director also holds the FIFO open, reads what is unread (non-blocking) and, if
// the token is still there, writes it back as "s". If the launcher has already read it, the
// step is starting and the withdrawal fails; the step then runs, and a signal meant for it waits
// for it. Tokens are two bytes and the FIFO only ever holds a few, so reading them back is atomic
// enough: the launcher reads one byte at a time and simply waits while they are out.
//
// Each launcher makes its own FIFOs when it starts and then prints "t". Node has no mkfifo(), and
// forking the director for one costs it 5-12 ms of its main thread (a fork copies the page
// tables of its whole heap); the launcher's fork of `mkfifo` costs it about a millisecond, on
// another core if there is one. The director opens the FIFOs when it reads the "t"; until then
// the lane takes no queued step. A run that starts one step, on an idle lane, never waits for it.
// On the launcher's stdout: the exit status of each step. A step's subshell first writes "+"
// to the launcher's start FIFO (<base>p), which the director does not watch: it reads it only
// when it needs to know whether a step has started, and at the end of each step, so that it
// never fills. Signals are only delivered once a step's "+" is there: before, they would not
// reach the step (its subshell does not exist yet) and could cut the launcher's `read` of a go
// token short; a signal requested earlier is held back until then (checked every few ms).
// The "+" used to come on stdout, which woke the director once more per step: about 7% of its
// CPU time in a cold build of 5000 `cp` steps. Without the FIFOs (mkfifo failed), it still
// does. A token out of place, or a token read cut short by a signal that came anyway, makes
// the launcher exit rather than guess: a step it had not started yet runs on a new launcher.
//
// Step output goes to files of the launcher, truncated by each step and read after it, in a
// private temporary directory; steps use two sets in turn, so that a queued step can start
// while the director still reads the files of the one before. Files, unlike pipes, do not make the step wait for background
// processes that inherited its stdout. They are reused rather than created and unlinked per step:
// on ext4, creating files right after unlinking others is expensive (the allocator scans for
// recently deleted inodes), which made every step markedly slower, the steps' own outputs too.
// The price: a background process that outlives its step and keeps writing to its stdout writes
// into the output of later steps of the same lane.
import { spawn, type ChildProcess } from "node:child_process";
import {
  closeSync,
  constants as fsConstants,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  truncateSync,
  writeSync,
} from "node:fs";
import { constants as osConstants, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { hashLargeFile, hashPathUpTo, sameStat, type HashOutcome, type LargeFile } from "../state/filehash.js";
import type { FileHash } from "../state/types.js";
import { ENV_SOURCES_FILE, type RunRequest, type RunResult } from "./protocol.js";

/** Files larger than this that need hashing are hashed asynchronously (see hashLargeFile). */
const LARGE_FILE_BYTES = 4 * 1024 * 1024;

export interface WorkerOptions {
  /** Absolute project root; workdirs and paths are resolved against it. */
  root: string;
  /** Node executable used to run `.ts` commands. */
  tsNode: string;
  /** Loader passed to `--import` when running `.ts` commands (path or URL). */
  tsLoader: string;
  /**
   * The POSIX shell that runs the launchers (default /bin/sh). Tests run them under dash, bash and
   * busybox's ash, the shells /bin/sh usually is; steps that need a shell still get `/bin/sh -c`.
   */
  shell?: string;
}

/**
 * What the launcher, run as `/bin/sh -s <file base>` with the director's end of a pipe on fd 3,
 * reads first. It makes its token FIFO, <file base>t, and its start FIFO, <file base>p, opens
 * them on fd 4 and 5 (read-write, so that the opens do not wait for the other end, and a write
 * never fails for want of a reader) and says "t". Then come the requests (see stepRequest).
 * POSIX sh only.
 * - The trap makes the launcher survive signals sent to its process group; dash and bash run a
 *   trap only after the foreground subshell has finished, so the status is still reported. Its
 *   action must not be empty: an ignored signal would stay ignored in the steps too. A signal
 *   that comes while the shell waits for input does not disturb that read.
 * - The watchdog ignores those signals, reads fd 3 (nothing is ever written to it) and, at EOF,
 *   i.e. when the director has died, kills the whole group. Its other fds point away from the
 *   launcher's pipes and the FIFO, so it never keeps them open for a dead launcher.
 * - tsup_now and tsup_go decide whether a request runs and, if it does, switch to the other
 *   file set (k); a token out of place, or a token read cut short by a signal, makes the
 *   launcher exit rather than guess.
 * - tsup_io, the first thing in a step's subshell, redirects with `exec` (no copies of the
 *   launcher's fds kept to restore them), closes the token FIFO, announces the step on the start
 *   FIFO (fd $p: 5, or 3, a copy of the protocol pipe, when there are no FIFOs) and closes both
 *   so that the step cannot hold them.
 */
const LAUNCHER_PROLOGUE = `b=$1 k=1 p=3
trap : HUP INT QUIT TERM USR1 USR2 ALRM
(trap '' HUP INT QUIT TERM USR1 USR2 ALRM; IFS= read -r _ <&3; kill -s KILL 0) </dev/null >/dev/null 2>&1 &
exec 3<&-
mkfifo -m 600 "\${b}t" "\${b}p" && exec 4<>"\${b}t" 5<>"\${b}p" && p=5 && echo t
tsup_now() { k=$((1-k)); }
tsup_go() { IFS= read -r g <&4 || exit 0; case $g in g) k=$((1-k));; s) return 1;; *) exit 0;; esac; }
tsup_io() { exec 3>&1 >"$b$k.o" 2>"$b$k.e" </dev/null 4<&-; echo + >&$p; exec 3>&- 5>&-; ${ENV_SOURCES_FILE}=$b$k.s; export ${ENV_SOURCES_FILE}; }
`;

/** How a request starts: run it now (an idle lane), or once its go token is there. */
const RUN_NOW = "tsup_now&&{ ";
const RUN_ON_GO = "tsup_go&&{ ";

/**
 * The rest of a step's request, after RUN_NOW or RUN_ON_GO: its snippet in a subshell, then the
 * exit status on stdout. The snippet is made of words tsup quoted itself, so it always parses.
 */
export function stepRequest(snippet: string): string {
  return `(tsup_io\n${snippet}\n);echo $?;}\n`;
}

/** Quote a string for /bin/sh so that it is passed through as one literal word. */
export function shellQuote(s: string): string {
  if (s !== "" && /^[A-Za-z0-9_\/.,:@%+=-]+$/.test(s)) return s;
  return "'" + s.replace(/'/g, "'\\''") + "'";
}

const TS_WORD = /^\s*\S+\.m?ts(?=\s|$)/;
const SHELL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The shell command actually run for `command`: a command whose first word is a `.ts`/`.mts`
 * script is run through node with the TypeScript loader, so plan.ts and helper scripts need no
 * shebang or executable bit, and use the same node as tsup itself.
 */
export function effectiveCommand(command: string, tsNode: string, tsLoader: string): string {
  if (!TS_WORD.test(command)) return command;
  return `${shellQuote(tsNode)} --import ${shellQuote(tsLoader)} ${command.trimStart()}`;
}

// A word of a simple command: unquoted characters that mean nothing to the shell, and
// single-quoted strings (what shellQuote and the plan API's path substitution produce).
const PLAIN_WORD = String.raw`(?:[A-Za-z0-9_\/.,:@%+=-]|'[^']*')+`;
const SIMPLE_COMMAND = new RegExp(String.raw`^[ \t]*(${PLAIN_WORD})(?:[ \t]+${PLAIN_WORD})*[ \t]*$`);

// Builtins and reserved words of dash and bash (either may be /bin/sh): `exec` would run the
// program of that name instead, or fail, where `sh -c` runs the builtin. Then the launcher's own
// functions, which the step's subshell would call instead of a program of that name.
const SHELL_BUILTINS = new Set(
  (
    ". : [ alias bg bind break builtin caller cd chdir command compgen complete compopt continue " +
    "declare dirs disown echo enable eval exec exit export false fc fg getopts hash help history " +
    "jobs kill let local logout mapfile popd printf pushd pwd read readarray readonly return set " +
    "shift shopt source suspend test times trap true type typeset ulimit umask unalias unset wait " +
    "case do done elif else esac fi for function if in select then time until while " +
    "tsup_now tsup_go tsup_io"
  ).split(" "),
);

/**
 * For one simple command made of plain and single-quoted words that names an external program:
 * the command and its first word (both as shell text); else null. Such a command means exactly
 * the same when the step's subshell execs it directly as under `/bin/sh -c`: no expansions,
 * redirections, operators or assignments are involved, and the shell would exec the program as
 * its last command anyway. Skipping the extra `/bin/sh` saves an exec and a dynamic link per
 * step, measured as ~40% of the CPU time of a `cp` step.
 */
export function directCommand(command: string): { command: string; program: string } | null {
  const m = SIMPLE_COMMAND.exec(command);
  if (m === null) return null;
  const first = m[1]!.replace(/'/g, "");
  if (first === "" || first.startsWith("-") || first.includes("=") || SHELL_BUILTINS.has(first)) return null;
  return { command: command.trim(), program: m[1]! };
}

/**
 * The shell code a launcher subshell runs for one step: cd, env, then the command, run directly
 * when it is simple (directCommand), else through `/bin/sh -c`.
 */
export function stepSnippet(command: string, cwd: string | null, env: Record<string, string>): string {
  let snippet = cwd === null ? "" : `cd ${shellQuote(cwd)} || exit 2\n`;
  let envPrefix = "";
  for (const name in env) {
    const assignment = shellQuote(`${name}=${env[name]!}`);
    // `export` only takes shell identifiers; env(1) passes any other name through unchanged.
    if (SHELL_NAME.test(name)) snippet += `export ${assignment}\n`;
    else envPrefix += ` ${assignment}`;
  }
  const exec = `exec${envPrefix === "" ? "" : " env" + envPrefix} `;
  const viaShell = exec + "/bin/sh -c " + shellQuote(command);
  const direct = directCommand(command);
  if (direct === null) return snippet + viaShell;
  // A program that cannot be found goes through /bin/sh after all, so that the message is the
  // usual "/bin/sh: 1: x: not found" rather than one naming a line of the launcher's input.
  // `command -v` also leaves the program's place in the subshell's table of commands, and the
  // last command of a subshell is exec'd without a fork (dash, bash), from that place: one
  // execve. The `exec` builtin would search PATH again, trying execve in every directory
  // before the program's (dash). With env(1), env searches PATH itself.
  const run = envPrefix === "" ? direct.command : exec + direct.command;
  return snippet + `command -v ${direct.program} >/dev/null || ${viaShell}\n${run}`;
}

interface Launcher {
  proc: ChildProcess;
  /**
   * "<tmp>/<n>.": its steps write to the file set <base><k>.o (stdout), <base><k>.e (stderr) and
   * <base><k>.s ($TSUP_SOURCES_FILE, see RunResult.sources), k alternating between 0 and 1, so
   * that a step can start while the director still reads what the one before it left.
   */
  base: string;
  /**
   * The director's end of the launcher's token FIFO, <base>t (read-write, non-blocking), opened
   * when the launcher says it made it (openFifos); -1 before, and once the launcher is gone.
   */
  tokens: number;
  /** The director's end of its start FIFO, <base>p (read-write, non-blocking); -1 as `tokens`. */
  starts: number;
  /** How many steps it has handed to running() (each step's Step.ordinal). */
  runs: number;
  /** How many of them have started: "+" read from the start FIFO (or from stdout). */
  begun: number;
  /** The file set of the step started last (the launcher's k): the next one takes the other. */
  set: number;
  /** Its pid, which is also the id of the process group it and the steps run in. */
  pgid: number;
  /** Unparsed tail of its stdout. */
  buf: string;
  /** The process has exited (and was reaped): its pid may be reused, never signal it. */
  exited: boolean;
  /** Its stdout is closed too: everything it printed has been handled. */
  closed: boolean;
  /** Resolves once the process has exited. */
  gone: Promise<void>;
}

/** A step whose inputs are hashed, ready for a launcher. */
interface Step {
  req: RunRequest;
  done: (result: RunResult) => void;
  hooks: LaneHooks;
  inputHashes: Array<FileHash | null>;
  start: number;
  /** What the launcher is sent after RUN_NOW or RUN_ON_GO (stepRequest). */
  request: string;
  /** The step was already handed to a second launcher after the first died before starting it. */
  retried: boolean;
  /** Its command runs with tsup's TypeScript loader (effectiveCommand). */
  typeScript: boolean;
  // Set once it runs (see Worker.running). One object from prepare() to the result, updated in
  // place: copying it per step was measurable.
  /** The launcher it runs on. */
  launcher: Launcher | null;
  /** The file set it writes to (see Launcher.base). */
  set: number;
  /** Its place among the steps of its launcher: it has started once Launcher.begun reaches it. */
  ordinal: number;
  /** A signal requested before the subshell existed, delivered once it does. */
  pending: NodeJS.Signals | null;
  /** The last signal delivered to the step's group: explains a status of 128+n. */
  delivered: NodeJS.Signals | null;
}

interface Running extends Step {
  launcher: Launcher;
}

/** Where a step is between run() and its result. */
type Stage =
  | { kind: "idle" }
  /** Hashing large inputs or outputs asynchronously; `signal` remembers a signal meanwhile. */
  | { kind: "hashing"; signal: NodeJS.Signals | null }
  | { kind: "running"; step: Running };

/**
 * The step a busy lane runs next (see Worker.queue): its request and go token are written, so
 * the launcher starts it by itself, or (when it has large inputs to hash first) it is kept until
 * the lane is free. `signal`: a signal for it that came too late to withdraw it.
 */
export type Queued =
  | { kind: "written"; step: Step; launcher: Launcher; signal: NodeJS.Signals | null }
  | { kind: "unwritten"; req: RunRequest; done: (result: RunResult) => void; hooks: LaneHooks };

/** What a caller of Worker.run learns before the result. */
export interface LaneHooks {
  /** The command is over and the lane can take another step; the result is not complete yet. */
  exited?: () => void;
  /** The command is being started (a queued step: once the step before it is over). */
  started?: () => void;
}

export class Worker {
  /** Absolute root with a trailing slash, so resolving a path is one concatenation. */
  private readonly prefix: string;
  private readonly root: string;
  private readonly tsNode: string;
  private readonly tsLoader: string;
  private readonly shell: string;
  private tmp: string | null = null;
  private launcher: Launcher | null = null;
  private stage: Stage = { kind: "idle" };
  /** Only while a step runs (stage "running"): the step queued behind it. */
  private next: Queued | null = null;
  /**
   * The queued step must run on this lane, right after the running one: it takes over that
   * step's slot of a pool (WorkerPool.runBehind), so it must not start while that step runs.
   */
  private pinned = false;
  private launchers = 0;
  private closed = false;
  /**
   * A queued step was withdrawn while the current one runs: its request and "s" token wait for
   * the launcher. No step is queued behind this one any more, so that withdrawals cannot pile
   * up in the FIFO behind one long step.
   */
  private revoked = false;
  /** Polls for the start of the running step while it holds back a signal (watchPending). */
  private pendingTimer: NodeJS.Timeout | null = null;
  /** The launcher's environment: the director's plus what every step gets (setCommonEnv). */
  private launcherEnv: NodeJS.ProcessEnv = process.env;

  constructor(opts: WorkerOptions) {
    this.root = opts.root.length > 1 && opts.root.endsWith("/") ? opts.root.slice(0, -1) : opts.root;
    this.prefix = this.root.endsWith("/") ? this.root : this.root + "/";
    this.tsNode = opts.tsNode;
    this.tsLoader = opts.tsLoader;
    this.shell = opts.shell ?? "/bin/sh";
  }

  get busy(): boolean {
    return this.stage.kind !== "idle";
  }

  /** Whether queue() would take a step now: one runs, nothing is queued behind it. */
  get canQueue(): boolean {
    const stage = this.stage;
    return (
      !this.closed &&
      stage.kind === "running" &&
      this.next === null &&
      this.launcher === stage.step.launcher &&
      !this.launcher.exited &&
      !this.revoked &&
      this.launcher.tokens >= 0
    );
  }

  /** Whether a step is queued that withdraw() can hand to another lane as it is. */
  get hasMovable(): boolean {
    return this.next !== null && !this.pinned;
  }

  /** The request of the running step, if one runs. */
  get runningRequest(): RunRequest | null {
    return this.stage.kind === "running" ? this.stage.step.req : null;
  }

  /** The request of the queued step, if one is queued. */
  get queuedRequest(): RunRequest | null {
    const next = this.next;
    return next === null ? null : next.kind === "written" ? next.step.req : next.req;
  }

  /** See WorkerPool.setCommonEnv. A launcher already running keeps its environment. */
  setCommonEnv(env: Record<string, string>): void {
    this.launcherEnv = { ...process.env, ...env };
  }

  /** Start a launcher now if there is none, so that the first step finds it ready. */
  warm(): void {
    if (this.closed || this.launcher !== null) return;
    try {
      this.startLauncher();
    } catch {
      // The step that needs it tries again, and reports the failure.
    }
  }

  /** Pid of the current launcher shell, if one runs (for tests and diagnostics). */
  launcherPid(): number | null {
    return this.launcher === null || this.launcher.exited ? null : this.launcher.pgid;
  }

  /**
   * Run one step; `done` receives its result exactly once. Only call when not busy. A step whose
   * inputs are all small and unchanged is handed to the launcher before run() returns.
   *
   * `exited`, if given, is called as soon as the command is over and this lane is free again,
   * before the outputs are hashed and `done` is called. It may call run() for the next step right
   * away: the launcher then starts that step while the director is still busy with the
   * bookkeeping of this one, which keeps the director's round trip off each lane's critical path.
   */
  run(req: RunRequest, done: (result: RunResult) => void, hooks: LaneHooks = {}): void {
    if (this.closed) {
      done(failedResult(req, "The worker pool is closed"));
      return;
    }
    if (this.stage.kind !== "idle") {
      // The pool never does this; answering keeps a buggy caller from hanging forever.
      done(failedResult(req, "Worker is busy with another step"));
      return;
    }
    const start = performance.now();
    const outcomes = this.hashSmall(req.inputs);
    if (!outcomes.some(isLarge)) {
      const step = this.prepare(req, done, hooks, start, outcomes as HashOutcome[]);
      if (step !== null) this.dispatch(step);
      return;
    }
    const stage: Stage = { kind: "hashing", signal: null };
    this.stage = stage;
    void hashLarge(outcomes).then((hashed) => {
      if (this.stage !== stage) return;
      this.stage = { kind: "idle" };
      if (this.closed || stage.signal !== null) {
        // Interrupted before the command started: it never ran.
        const result = emptyResult(req, performance.now() - start);
        hooks.exited?.();
        done({ ...result, signal: stage.signal ?? "SIGKILL" });
        return;
      }
      const step = this.prepare(req, done, hooks, start, hashed);
      if (step !== null) this.dispatch(step);
    });
  }

  /**
   * Queue a step behind the running one (only when canQueue): its inputs are hashed and its
   * request and go token written now, and the launcher starts it as soon as the running step is
   * over, without waiting for the director. Until the launcher has read the token, withdraw()
   * can still take the step back and run it elsewhere, or not at all. A `pinned` step is not
   * offered to idle lanes (hasMovable): see WorkerPool.runBehind.
   */
  queue(req: RunRequest, done: (result: RunResult) => void, hooks: LaneHooks = {}, pinned = false): void {
    if (!this.canQueue) {
      done(failedResult(req, "Worker cannot queue a step now"));
      return;
    }
    const start = performance.now();
    const outcomes = this.hashSmall(req.inputs);
    if (outcomes.some(isLarge)) {
      // Hashed once the lane is free (run), so that the director never waits on it meanwhile.
      this.next = { kind: "unwritten", req, done, hooks };
      this.pinned = pinned;
      return;
    }
    const step = this.prepare(req, done, hooks, start, outcomes as HashOutcome[]);
    if (step !== null) this.queueWritten(step, pinned);
  }

  /** Write `step`'s request and go token to the launcher, behind the running step (canQueue). */
  private queueWritten(step: Step, pinned: boolean): void {
    const launcher = this.launcher!;
    this.next = { kind: "written", step, launcher, signal: null };
    this.pinned = pinned;
    this.send(launcher, step.request);
  }

  /**
   * Take back the queued step (for another lane, or to cancel it). Null when there is none, or
   * when it is too late: the launcher has taken its go token and is starting it.
   */
  withdraw(): Queued | null {
    const next = this.next;
    if (next === null) return null;
    if (next.kind === "written" && !next.launcher.exited) {
      // Its token is the last one written (dispatch and queue write one only while no step is
      // queued), so if anything of it is still unread, it is whole.
      if (!revokeLastToken(next.launcher.tokens)) return null;
      this.revoked = true;
    }
    this.next = null;
    this.pinned = false;
    return next;
  }

  /** Queue a step withdrawn from another lane, pinned, behind the running one (only when canQueue). */
  requeue(queued: Queued): void {
    if (queued.kind === "unwritten") {
      this.queue(queued.req, queued.done, queued.hooks, true);
      return;
    }
    if (!this.canQueue) {
      settleUnstarted(queued);
      return;
    }
    // Its inputs were hashed when it was first queued; nothing has run on them since.
    this.queueWritten(queued.step, true);
  }

  /** Run a step withdrawn from another lane (only when not busy). */
  adopt(queued: Queued): void {
    if (queued.kind === "unwritten") this.run(queued.req, queued.done, queued.hooks);
    else {
      queued.step.start = performance.now();
      this.dispatch(queued.step);
    }
  }

  /** Signal the running step's process group (held back until the step's subshell exists). */
  signal(sig: NodeJS.Signals): void {
    const stage = this.stage;
    if (stage.kind === "hashing") stage.signal ??= sig;
    else if (stage.kind === "running") this.signalStep(stage.step, sig);
    // A queued step must not start after this: it is handed back, never having run; or, if it
    // is starting already, it gets the signal as soon as it has started.
    const queued = this.withdraw();
    if (queued !== null) settleUnstarted(queued);
    else if (this.next?.kind === "written") this.next.signal ??= sig;
  }

  /**
   * Stop for good: SIGKILL the launcher's process group (the running step and anything earlier
   * steps left in the background), remove the temporary directory. Resolves when the launcher
   * has exited. A running step reports SIGKILL.
   */
  close(): Promise<void> {
    this.closed = true;
    const launcher = this.launcher;
    this.dispose();
    if (launcher === null || launcher.exited) return Promise.resolve();
    // SIGKILL makes this quick; the timer is only a safety net.
    return settledWithin(launcher.gone, 1000).then(() => {});
  }

  /** Synchronous part of close(), also safe in a process 'exit' handler. Idempotent. */
  dispose(): void {
    this.closed = true;
    const launcher = this.launcher;
    this.launcher = null;
    if (launcher !== null) {
      if (!launcher.exited) killGroup(launcher.pgid, "SIGKILL");
      closeFifos(launcher);
    }
    if (this.pendingTimer !== null) clearInterval(this.pendingTimer);
    this.pendingTimer = null;
    if (this.tmp !== null) {
      rmSync(this.tmp, { recursive: true, force: true });
      this.tmp = null;
    }
  }

  private signalStep(step: Running, sig: NodeJS.Signals): void {
    if (!hasBegun(step)) {
      // See the header: held back until the step's subshell says it exists.
      step.pending = sig;
      this.watchPending();
      return;
    }
    step.pending = null;
    step.delivered = sig;
    if (!step.launcher.exited) killGroup(step.launcher.pgid, sig);
  }

  /**
   * While the running step holds back a signal, look for its "+" every few milliseconds: the
   * start FIFO wakes nobody. Signals are rare, and a step that has not started yet will do so
   * within milliseconds, so polling costs nothing the rest of the time.
   */
  private watchPending(): void {
    if (this.pendingTimer !== null) return;
    const timer = setInterval(() => {
      const stage = this.stage;
      if (stage.kind !== "running" || stage.step.pending === null) {
        clearInterval(timer);
        this.pendingTimer = null;
        return;
      }
      if (hasBegun(stage.step)) this.signalStep(stage.step, stage.step.pending);
    }, PENDING_POLL_MS);
    // The running step keeps the event loop alive; the timer itself never should.
    timer.unref();
    this.pendingTimer = timer;
  }

  private abs(path: string): string {
    return path.charCodeAt(0) === 47 /* "/" */ ? path : this.prefix + path;
  }

  /**
   * Inputs are hashed: report invalid ones or a bad workdir (and return null), else return the
   * step ready for a launcher.
   */
  private prepare(
    req: RunRequest,
    done: (result: RunResult) => void,
    hooks: LaneHooks,
    start: number,
    outcomes: HashOutcome[],
  ): Step | null {
    const inputHashes: Array<FileHash | null> = new Array<FileHash | null>(outcomes.length);
    let invalidInputs: string[] | undefined;
    for (let i = 0; i < outcomes.length; i++) {
      const outcome = outcomes[i]!;
      if (outcome.kind === "ok") {
        inputHashes[i] = outcome.hash;
        continue;
      }
      inputHashes[i] = null;
      const path = req.inputs[i]!.path;
      (invalidInputs ??= []).push(
        outcome.kind === "missing" ? `Path does not exist: ${path}` : `${outcome.message}: ${path}`,
      );
    }
    if (invalidInputs !== undefined) {
      hooks.exited?.();
      done({ ...emptyResult(req, performance.now() - start), invalidInputs, inputHashes });
      return null;
    }

    // The launcher's cwd is the root: steps there need no `cd`.
    let cwd: string | null = null;
    if (req.workdir !== "./") {
      cwd = this.abs(req.workdir);
      const problem = cwdProblem(cwd, req.workdir);
      if (problem !== null) {
        hooks.exited?.();
        done({ ...emptyResult(req, performance.now() - start), inputHashes, spawnError: problem });
        return null;
      }
    }

    const command = effectiveCommand(req.command, this.tsNode, this.tsLoader);
    const snippet = stepSnippet(command, cwd, req.env);
    return {
      req,
      done,
      hooks,
      inputHashes,
      start,
      request: stepRequest(snippet),
      retried: false,
      typeScript: command !== req.command,
      launcher: null,
      set: 0,
      ordinal: 0,
      pending: null,
      delivered: null,
    };
  }

  /** Hand `step` to the launcher, starting one if needed. */
  private dispatch(step: Step): void {
    let launcher: Launcher;
    try {
      launcher = this.launcher ?? this.startLauncher();
    } catch (err) {
      this.stage = { kind: "idle" };
      const message = `Could not start ${this.shell}: ${err instanceof Error ? err.message : String(err)}`;
      step.hooks.exited?.();
      step.done({
        ...emptyResult(step.req, performance.now() - step.start),
        inputHashes: step.inputHashes,
        spawnError: message,
      });
      return;
    }
    // The lane is idle: its go comes with the request.
    launcher.proc.stdin!.write(RUN_NOW + step.request);
    this.running(step, launcher, null);
    step.hooks.started?.();
  }

  /**
   * Write a request and its go token (only when canQueue, which opened the FIFO): the launcher
   * runs it once it is done with those before.
   */
  private send(launcher: Launcher, request: string): void {
    // The token first: the launcher reads it right after the request and should find it there.
    writeSync(launcher.tokens, GO_TOKEN);
    launcher.proc.stdin!.write(RUN_ON_GO + request);
  }

  /** `step` runs (or is about to) on `launcher`: the lane is busy with it. */
  private running(step: Step, launcher: Launcher, pending: NodeJS.Signals | null): void {
    launcher.set ^= 1;
    step.launcher = launcher;
    step.set = launcher.set;
    step.ordinal = ++launcher.runs;
    step.pending = null;
    step.delivered = null;
    this.stage = { kind: "running", step: step as Running };
    if (pending !== null) this.signalStep(step as Running, pending);
  }

  private startLauncher(): Launcher {
    this.tmp ??= mkdtempSync(join(tmpdir(), "tsup-worker-"));
    // Per-launcher file names: a dead launcher's step cannot write into a new one's output, and
    // tokens a dead launcher left unread in its FIFO go with it.
    const base = `${this.tmp}/${++this.launchers}.`;
    const proc = spawn(this.shell, ["-s", base], {
      cwd: this.root,
      env: this.launcherEnv,
      // Steps write to their own files; all the launcher itself would print is the shell's
      // "Terminated" notice for a step killed by a signal. fd 3 is the watchdog's pipe.
      stdio: ["pipe", "pipe", "ignore", "pipe"],
      // New session and process group: terminal signals do not reach steps directly (the
      // director forwards them), and the group is what kill and cleanup address.
      detached: true,
    });
    if (proc.pid === undefined) {
      // spawn() reports ENOENT and friends asynchronously; its 'error' must still be handled.
      proc.on("error", () => {});
      throw new Error("spawn failed");
    }
    let markGone!: () => void;
    const gone = new Promise<void>((r) => (markGone = r));
    const launcher: Launcher = {
      proc,
      base,
      tokens: -1,
      starts: -1,
      runs: 0,
      begun: 0,
      set: 1,
      pgid: proc.pid,
      buf: "",
      exited: false,
      closed: false,
      gone,
    };
    this.launcher = launcher;
    proc.stdout!.setEncoding("latin1");
    proc.stdout!.on("data", (chunk: string) => this.onLauncherOutput(launcher, chunk));
    // EPIPE when the launcher died: its 'close' reports the step.
    proc.stdin!.on("error", () => {});
    proc.stdin!.write(LAUNCHER_PROLOGUE);
    const watchdogPipe = proc.stdio[3];
    if (watchdogPipe) {
      watchdogPipe.on("error", () => {});
      // Only its existence matters; it must not keep the director's event loop alive.
      (watchdogPipe as unknown as { unref?: () => void }).unref?.();
    }
    proc.on("error", () => {});
    proc.on("exit", () => {
      launcher.exited = true;
      // Our end of the watchdog's pipe: closing it makes the watchdog clear out the dead
      // launcher's group, and lets 'close' fire (it waits for every pipe of the child).
      watchdogPipe?.destroy();
      markGone();
    });
    proc.on("close", () => this.onLauncherGone(launcher));
    return launcher;
  }

  private onLauncherOutput(launcher: Launcher, chunk: string): void {
    launcher.buf += chunk;
    let nl: number;
    while ((nl = launcher.buf.indexOf("\n")) >= 0) {
      const line = launcher.buf.slice(0, nl);
      launcher.buf = launcher.buf.slice(nl + 1);
      if (line === "t") {
        openFifos(launcher);
        continue;
      }
      const stage = this.stage;
      const step = stage.kind === "running" && stage.step.launcher === launcher ? stage.step : null;
      if (line === "+") {
        // A launcher without FIFOs: see LAUNCHER_PROLOGUE.
        launcher.begun++;
        if (step !== null && step.pending !== null) this.signalStep(step, step.pending);
        continue;
      }
      if (step === null) continue;
      const status = Number(line);
      // Anything else would be a launcher bug; the step then ends when the launcher does.
      if (line !== "" && Number.isInteger(status)) this.finish(step, status);
    }
  }

  private onLauncherGone(launcher: Launcher): void {
    launcher.closed = true;
    // What its steps wrote to the start FIFO is still there: whether the step started counts.
    readStarts(launcher);
    closeFifos(launcher);
    if (this.launcher === launcher) this.launcher = null;
    // Whatever is left in a dead launcher's group (its watchdog, steps' background processes)
    // belongs to no one any more.
    killGroup(launcher.pgid, "SIGKILL");
    const stage = this.stage;
    if (stage.kind !== "running" || stage.step.launcher !== launcher) return;
    const step = stage.step;
    if (!this.closed && !step.retried && step.pending === null && !hasBegun(step)) {
      // The launcher died (killed from outside, say by an earlier step's `kill -9 0`) before it
      // started this step: nothing of the step ran yet, so a fresh launcher can run it.
      step.retried = true;
      this.dispatch(step);
      return;
    }
    if (this.closed && step.delivered === null) step.delivered = "SIGKILL";
    this.finish(step, null);
  }

  /** `status` is the launcher's report (0-255), or null when the launcher died. */
  private finish(step: Running, status: number | null): void {
    const durationMs = performance.now() - step.start;
    let exitCode: number | null = status;
    let signal: string | null = null;
    if (status === null) {
      signal = step.delivered ?? "SIGKILL";
    } else if (status > 128 && step.delivered !== null && osConstants.signals[step.delivered] === status - 128) {
      // The shell reports death by signal n as 128+n. Only when we sent that very signal is it
      // taken as a signal; a command may well `exit 143` by itself.
      exitCode = null;
      signal = step.delivered;
    }
    const req = step.req;
    // Its "+" is in the start FIFO unless read before: taking it (hasBegun reads what it has not
    // counted yet) keeps the FIFO from filling up.
    hasBegun(step);
    // First of all, start the queued step: the lane must not wait for the rest of this. Its
    // caller hears of it only after this step's `exited`, so that reports keep their order.
    const started = this.startNext(step.launcher);
    // Its file set is the other one: this step's files are still as it left them.
    const files = step.launcher.base + step.set;
    const stdout = readOutput(files + ".o");
    const stderr = readOutput(files + ".e");
    // Only TypeScript commands run tsup's loader, which is what writes this file.
    const sources = step.typeScript ? readSources(files + ".s") : NO_STRINGS;
    step.hooks.exited?.();
    started?.();
    const result: RunResult = {
      exitCode,
      signal,
      stdout,
      stderr,
      durationMs,
      invalidInputs: NO_STRINGS,
      inputHashes: step.inputHashes,
      changedInputs: this.changedInputs(req, step.inputHashes),
      outputHashes: NO_HASHES,
      spawnError: status === null && step.delivered === null ? "The step's launcher shell died" : null,
      sources,
    };
    const outcomes = this.hashSmall(req.outputs);
    if (!outcomes.some(isLarge)) {
      result.outputHashes = outputHashes(outcomes as HashOutcome[]);
      step.done(result);
      return;
    }
    void hashLarge(outcomes).then((hashed) => {
      result.outputHashes = outputHashes(hashed);
      step.done(result);
    });
  }

  /**
   * The step on `launcher` is over: start the queued one, if any, else the lane is idle.
   * Returns the started hook of the step it started, for the caller to call.
   */
  private startNext(launcher: Launcher): (() => void) | undefined {
    const next = this.next;
    this.next = null;
    this.pinned = false;
    this.stage = { kind: "idle" };
    this.revoked = false;
    if (next === null) return undefined;
    if (this.closed) {
      settleUnstarted(next);
      return undefined;
    }
    if (next.kind === "unwritten") {
      this.run(next.req, next.done, next.hooks);
      return undefined;
    }
    const step = next.step;
    step.start = performance.now();
    const started = step.hooks.started;
    // Called by the caller instead (see finish).
    step.hooks = { exited: step.hooks.exited };
    if (launcher.closed || next.launcher !== launcher) {
      // Its launcher is gone and never reported starting it: a new launcher runs it.
      this.dispatch(step);
      return started;
    }
    // The launcher went on to it by itself. Should it have died meanwhile, what it still printed
    // (a "+" or not) decides in onLauncherGone whether the step is retried.
    this.running(step, launcher, next.signal);
    return started;
  }

  /** Hash `paths` now, except files above LARGE_FILE_BYTES that need reading (see hashLarge). */
  private hashSmall(paths: RunRequest["inputs"]): Array<HashOutcome | LargeFile> {
    return paths.map((p) => hashPathUpTo(this.abs(p.path), p.path.endsWith("/"), p.known, LARGE_FILE_BYTES));
  }

  /** Inputs whose stat no longer matches what was hashed before the command ran. */
  private changedInputs(req: RunRequest, hashes: Array<FileHash | null>): string[] {
    let changed: string[] | undefined;
    for (let i = 0; i < req.inputs.length; i++) {
      const path = req.inputs[i]!.path;
      const hash = hashes[i];
      if (hash == null) continue;
      let ok: boolean;
      try {
        const st = statSync(this.abs(path), { throwIfNoEntry: false });
        // Directories carry no stat values in their FileHash: only their kind can be checked.
        ok = st !== undefined && (path.endsWith("/") ? st.isDirectory() : sameStat(hash, st));
      } catch {
        ok = false;
      }
      if (!ok) (changed ??= []).push(path);
    }
    return changed ?? NO_STRINGS;
  }
}

function isLarge(o: HashOutcome | LargeFile): o is LargeFile {
  return o.kind === "large";
}

/** Finish what hashSmall left: the large files, each read without blocking the event loop. */
function hashLarge(outcomes: Array<HashOutcome | LargeFile>): Promise<HashOutcome[]> {
  return Promise.all(outcomes.map((o) => (isLarge(o) ? hashLargeFile(o) : o)));
}

function outputHashes(outcomes: HashOutcome[]): Array<FileHash | null> {
  return outcomes.map((o) => (o.kind === "ok" ? o.hash : null));
}

/** True when `p` settled within `ms`. */
export function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Shared empty arrays: nobody mutates a result's arrays. */
const NO_STRINGS: string[] = [];
const NO_HASHES: Array<FileHash | null> = [];

function killGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // ESRCH: the group is already gone.
  }
}

function cwdProblem(cwd: string, workdir: string): string | null {
  let isDir: boolean | undefined;
  try {
    isDir = statSync(cwd, { throwIfNoEntry: false })?.isDirectory();
  } catch {
    isDir = undefined;
  }
  if (isDir === undefined) return `Working directory does not exist: ${workdir}`;
  if (!isDir) return `Working directory is not a directory: ${workdir}`;
  return null;
}

function emptyResult(req: RunRequest, durationMs: number): RunResult {
  return {
    exitCode: null,
    signal: null,
    stdout: "",
    stderr: "",
    durationMs,
    invalidInputs: NO_STRINGS,
    inputHashes: req.inputs.map(() => null),
    changedInputs: NO_STRINGS,
    // The command did not run: nothing is known about the outputs.
    outputHashes: req.outputs.map(() => null),
    spawnError: null,
    sources: NO_STRINGS,
  };
}

/** Hand back a queued step that never started (RunResult.withdrawn). */
export function settleUnstarted(queued: Queued): void {
  const req = queued.kind === "written" ? queued.step.req : queued.req;
  const { done, hooks } = queued.kind === "written" ? queued.step : queued;
  hooks.exited?.();
  done({ ...emptyResult(req, 0), withdrawn: true });
}

function failedResult(req: RunRequest, message: string): RunResult {
  return { ...emptyResult(req, 0), spawnError: message };
}

/**
 * The paths in a lane's sources file, which is then emptied for the lane's next step. Missing or
 * unreadable: none (the step then only has a smaller fingerprint).
 */
function readSources(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
    if (text !== "") truncateSync(path, 0);
  } catch {
    return NO_STRINGS;
  }
  const paths = text.split("\n").filter((line) => line !== "");
  return paths.length === 0 ? NO_STRINGS : paths;
}

/** Outputs above this size are truncated once read, so they do not sit on disk until the next step. */
const KEEP_OUTPUT_BYTES = 1 << 20;

/** What a step wrote to one of its output files ("" when the file is missing). */
function readOutput(path: string): string {
  let data: Buffer;
  try {
    // Most steps print nothing: one stat() instead of open, fstat, read and close.
    if (statSync(path, { throwIfNoEntry: false })?.size === 0) return "";
    data = readFileSync(path);
  } catch {
    return "";
  }
  if (data.length > KEEP_OUTPUT_BYTES) {
    try {
      truncateSync(path, 0);
    } catch {
      // Gone already: nothing to free.
    }
  }
  return data.length === 0 ? "" : data.toString("utf8");
}

const GO_TOKEN = Buffer.from("g\n");
const G = 0x67;
const NEWLINE = 0x0a;
const SKIP = 0x73;
const PLUS = 0x2b;

/**
 * Open the director's ends of `launcher`'s token and start FIFOs, which the launcher has made:
 * read-write, so that the opens never wait and the FIFOs stay usable while they are open;
 * non-blocking, so that reading back tokens (revokeLastToken) or starts (readStarts) never waits.
 */
function openFifos(launcher: Launcher): void {
  if (launcher.tokens >= 0 || launcher.closed) return;
  const flags = fsConstants.O_RDWR | fsConstants.O_NONBLOCK;
  try {
    launcher.starts = openSync(launcher.base + "p", flags);
    launcher.tokens = openSync(launcher.base + "t", flags);
  } catch {
    // Gone already (a launcher killed meanwhile): its lane takes no queued step.
  }
}

function closeFifos(launcher: Launcher): void {
  if (launcher.tokens >= 0) closeQuietly(launcher.tokens);
  if (launcher.starts >= 0) closeQuietly(launcher.starts);
  launcher.tokens = -1;
  launcher.starts = -1;
}

/** How often a held-back signal looks for its step's start (Worker.watchPending). */
const PENDING_POLL_MS = 2;

/** Count the "+" lines waiting in `launcher`'s start FIFO into Launcher.begun. */
function readStarts(launcher: Launcher): void {
  if (launcher.starts < 0) return;
  for (const byte of takeUnread(launcher.starts)) if (byte === PLUS) launcher.begun++;
}

/** Whether `step`'s subshell has said it exists. */
function hasBegun(step: Running): boolean {
  const launcher = step.launcher;
  if (launcher.begun < step.ordinal) readStarts(launcher);
  return launcher.begun >= step.ordinal;
}

/** Everything unread in the FIFO, taken out of it. */
function takeUnread(fd: number): Buffer {
  const chunks: Buffer[] = [];
  for (;;) {
    const buf = Buffer.allocUnsafe(512);
    let n: number;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EAGAIN") break;
      throw err;
    }
    if (n > 0) chunks.push(buf.subarray(0, n));
    // A read of a pipe returns all it holds, up to the buffer's size: a short read emptied it.
    // Reading on to EAGAIN instead threw an exception at every step's end, which cost the
    // director more than the rest of the start FIFO's handling (stack trace, deoptimization).
    if (n < buf.length) break;
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/**
 * Turn the last token written into a skip if the launcher has not read any of it yet; true if
 * it did. Whatever else is unread goes back unchanged and in order: the launcher, should it
 * read meanwhile, just waits for it.
 */
function revokeLastToken(fd: number): boolean {
  const unread = takeUnread(fd);
  const n = unread.length;
  if (n === 0) return false;
  const whole = n >= 2 && unread[n - 2] === G && unread[n - 1] === NEWLINE;
  if (whole) unread[n - 2] = SKIP;
  for (let off = 0; off < n; ) off += writeSync(fd, unread, off, n - off);
  return whole;
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed: nothing to release.
  }
}
