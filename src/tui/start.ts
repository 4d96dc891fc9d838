// Starting and stopping the terminal UI. The caller (the CLI) decides whether to use it at all;
// here it is assumed that stdout is a terminal.

import { createElement as h } from "react";
import { render } from "ink";
import type { Instance } from "ink";

import type { EventSink, TsupEvent } from "../events.js";
import { LineReporter } from "../report/lines.js";
import type { Key } from "./keys.js";
import { initialModel } from "./model.js";
import { LiveStore, TuiView } from "./view.js";

export type { Key } from "./keys.js";

export interface TuiOptions {
  stdout: NodeJS.WriteStream;
  stdin: NodeJS.ReadStream;
  color: boolean;
  /** Fixed width for the live area and page rules; the terminal's (tracking resizes) otherwise. */
  width?: number;
  showPerf: boolean;
  workers: number;
  onKey(key: Key): void;
  /** Clock of the `start` events' `time`; `performance.now` like the director's. */
  now?: () => number;
  /** Frame timing, for tests; see `LiveStoreOptions`. */
  frameMs?: number;
  heartbeatMs?: number;
}

export interface Tui {
  sink: EventSink;
  /** Print what is left, remove the live area, unmount and restore the terminal. Idempotent. */
  close(): Promise<void>;
}

// Longest wait for ink to drain its writes on close. Only a stalled stdout (a terminal that
// stopped reading) gets near it; close must resolve anyway because it runs on exit paths.
const CLOSE_TIMEOUT_MS = 2000;

const SHOW_CURSOR = "\x1b[?25h";
const CURSOR_UP = "\x1b[1A";

export function startTui(opts: TuiOptions): Tui {
  const { stdout, stdin } = opts;
  const now = opts.now ?? (() => performance.now());
  const wasRaw = stdin.isTTY === true && stdin.isRaw === true;

  const store = new LiveStore(initialModel({ workers: opts.workers }), {
    frameMs: opts.frameMs,
    heartbeatMs: opts.heartbeatMs,
    fallbackWrite: (text) => writeSafely(stdout, text),
  });
  const reporter = new LineReporter({
    write: (text) => store.append(text),
    color: opts.color,
    // A getter, so page rules follow the terminal when it is resized.
    get width() {
      return opts.width ?? (stdout.columns || 80);
    },
    showPerf: opts.showPerf,
    now,
  });

  const view = () => h(TuiView, { store, color: opts.color, now, width: opts.width, onKey: opts.onKey });
  const instance: Instance = render(view(), {
    stdout,
    stdin,
    // Ctrl-C is a key like the others: the director decides what an interrupt does, and the
    // UI must stay up to show what happens next.
    exitOnCtrlC: false,
    // Stray console output from anywhere in the process lands above the live area instead of
    // tearing it; ink restores the console on unmount.
    patchConsole: true,
    // Frames come from the store at most every 100 ms; this only bounds ink's own redraws
    // (resizes) and must not delay ours.
    maxFps: 30,
  });
  // Asked for now: ink resolves the promise only if someone waits before the unmount finishes.
  const exited = instance.waitUntilExit().then(
    () => undefined,
    () => undefined,
  );

  const sink: EventSink = {
    emit(event: TsupEvent): void {
      reporter.emit(event);
      store.emit(event);
    },
  };

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    if (closing !== undefined) return closing;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
      timer.unref();
    });
    closing = Promise.race([exited, timeout]).then(() => {
      clearTimeout(timer);
      // Ink's unmount may have completed only now; raw mode must end up as it was regardless.
      restoreTerminal(stdin, stdout, wasRaw, false);
    });
    process.off("exit", closeOnExit);
    // Everything that restores the terminal happens synchronously, so it is done even when
    // close is called from a process 'exit' handler where promises never settle.
    try {
      // Ink may have unmounted on its own already (a render error, its own exit hook);
      // rendering into it again would mount a fresh tree that grabs stdin once more.
      const mounted = store.attached;
      store.close();
      if (mounted) {
        // Render the now empty view synchronously, so ink's final frame erases the live area.
        instance.rerender(view());
        instance.unmount();
        // Ink ends every frame, its empty last one too, with a newline; stepping back over it
        // puts the shell prompt right under the last report line instead of after a blank one.
        if (stdout.isTTY) writeSafely(stdout, CURSOR_UP);
      }
      instance.unmount();
    } catch {
      // An ink that already failed must not keep the terminal from being restored below.
    }
    restoreTerminal(stdin, stdout, wasRaw, true);
    return closing;
  };
  // A process that exits without closing (process.exit on an error path, an uncaught
  // exception) still prints the buffered lines and gets its terminal back. 'exit' listeners run
  // before ink's own exit hook, which would keep the live area and drop the buffered lines.
  const closeOnExit = (): void => {
    void close();
  };
  process.once("exit", closeOnExit);

  return { sink, close };
}

/** Raw mode back to how it was and the cursor visible, whatever state ink left. */
function restoreTerminal(
  stdin: NodeJS.ReadStream,
  stdout: NodeJS.WriteStream,
  wasRaw: boolean,
  showCursor: boolean,
): void {
  try {
    if (stdin.isTTY && typeof stdin.setRawMode === "function" && stdin.isRaw !== wasRaw) {
      stdin.setRawMode(wasRaw);
    }
  } catch {
    // A terminal that hung up has no mode left to restore.
  }
  if (showCursor && stdout.isTTY) writeSafely(stdout, SHOW_CURSOR);
}

function writeSafely(stream: NodeJS.WriteStream, text: string): void {
  if (stream.destroyed || stream.writableEnded) return;
  try {
    stream.write(text);
  } catch {
    // Output to a closed terminal is lost either way.
  }
}
