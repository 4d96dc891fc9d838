// A small driver for tmux, so e2e tests can run tsup on a real terminal (a pty of known size),
// type keys into it and read the screen back, like a person would.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";

export interface PaneOptions {
  /** The folder the command starts in. */
  cwd: string;
  /** A shell command line (run by tmux through `sh -c`). */
  command: string;
  width?: number;
  height?: number;
}

/** `'...'` for sh, so paths with spaces or quotes survive the command line. */
export function shQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** One tmux server on a private socket: tests never touch a user's tmux, nor each other's. */
export class TmuxServer {
  readonly socket: string;
  private sessions = 0;
  /** Where the server's socket file is, once it runs: tmux leaves the file behind on kill. */
  private socketPath: string | undefined;

  constructor(socket = `tsup-test-${process.pid}`) {
    this.socket = socket;
  }

  /** Run a tmux command on this server; returns its stdout. */
  tmux(...args: string[]): string {
    // -f /dev/null: a user's ~/.tmux.conf (status bar, prefix keys, history size...) must not
    // change what the tests see.
    return execFileSync("tmux", ["-L", this.socket, "-f", "/dev/null", ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  }

  /** Start `command` in a new detached session; `name` is made unique on this server. */
  start(name: string, opts: PaneOptions): Pane {
    const session = `${name.replace(/[^A-Za-z0-9_-]/g, "_")}-${++this.sessions}`;
    this.tmux(
      // The server may not run yet; history-limit only applies to panes created after it is set,
      // so it goes first, in the same invocation. Far more history than any test prints means a
      // capture from the top sees every line. exit-empty off: by default the server exits once a
      // test has killed its last session, and the next test's client could reach it while it
      // shuts down ("server exited unexpectedly"); kill() stops it at the end instead.
      "start-server",
      ";",
      "set-option",
      "-g",
      "exit-empty",
      "off",
      ";",
      "set-option",
      "-g",
      "history-limit",
      "10000",
      ";",
      "new-session",
      "-d",
      "-s",
      session,
      "-x",
      String(opts.width ?? 120),
      "-y",
      String(opts.height ?? 40),
      "-c",
      opts.cwd,
      opts.command,
    );
    this.socketPath ??= this.tmux("display-message", "-p", "-t", session, "#{socket_path}").trim();
    return new Pane(this, session);
  }

  /** Stop the server and everything running in it. Never throws: it may be gone already. */
  kill(): void {
    try {
      this.tmux("kill-server");
    } catch {
      // No server (nothing was started, or it already exited with its last session).
    }
    if (this.socketPath) rmSync(this.socketPath, { force: true });
  }
}

export class Pane {
  constructor(
    private readonly server: TmuxServer,
    readonly session: string,
  ) {}

  /**
   * The text of the pane: the visible screen, or with `history` everything from the top of the
   * scrollback. Wrapped lines are joined (-J), so a long line stays one line.
   */
  capture(history = true): string {
    const args = ["capture-pane", "-p", "-J", "-t", this.session];
    if (history) args.push("-S", "-");
    return this.server.tmux(...args);
  }

  /** Type keys: tmux key names (`C-c`, `Enter`) or, with `literal`, plain text. */
  send(keys: string, literal = true): void {
    this.server.tmux("send-keys", "-t", this.session, ...(literal ? ["-l", keys] : [keys]));
  }

  /** A tmux format about the pane, e.g. `#{cursor_flag}` (1 while the cursor is visible). */
  format(format: string): string {
    return this.server.tmux("display-message", "-p", "-t", this.session, format).trim();
  }

  /** Copy everything the program writes to the terminal (raw bytes) into `file`. */
  record(file: string): void {
    this.server.tmux("pipe-pane", "-o", "-t", this.session, `cat >> ${shQuote(file)}`);
  }

  /**
   * Poll the capture until `test` accepts it; resolves with the capture. Fails after `timeoutMs`
   * with the last capture, which is the evidence a failing test needs.
   */
  async waitFor(test: RegExp | ((screen: string) => boolean), timeoutMs = 20000, what?: string): Promise<string> {
    const ok = typeof test === "function" ? test : (s: string) => test.test(s);
    const until = Date.now() + timeoutMs;
    for (;;) {
      const screen = this.capture();
      if (ok(screen)) return screen;
      if (Date.now() > until) {
        throw new Error(`waited ${timeoutMs} ms in vain for ${what ?? String(test)}\n--- screen\n${trimEnd(screen)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  kill(): void {
    try {
      this.server.tmux("kill-session", "-t", this.session);
    } catch {
      // Already gone.
    }
  }
}

/** Drop the blank rows below the last line of a capture (tmux pads to the pane height). */
export function trimEnd(screen: string): string {
  return screen.replace(/\s+$/, "");
}
