import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { PassThrough, Writable } from "node:stream";

import type { StepRef, TsupEvent } from "../../src/events.js";
import type { Key } from "../../src/tui/keys.js";
import type { TuiOptions } from "../../src/tui/start.js";

// Ink decides at import time whether it runs in CI and then draws no live area at all. The CLI
// never starts the UI under CI, but these tests do run there, so ink is imported only after the
// variables it looks at are gone (each test file runs in its own process).
delete process.env["CI"];
delete process.env["CONTINUOUS_INTEGRATION"];
const { startTui } = await import("../../src/tui/start.js");
const { LiveStore } = await import("../../src/tui/view.js");
const { initialModel } = await import("../../src/tui/model.js");
const { readKeys } = await import("../../src/tui/keys.js");

const COLUMNS = 100;

/** A terminal-like output stream that records everything written to it. */
class FakeTerminal extends Writable {
  readonly isTTY = true;
  columns = COLUMNS;
  rows = 30;
  output = "";
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.output += chunk.toString();
    cb();
  }
}

/** A terminal-like input stream whose raw-mode changes are recorded. */
class FakeKeyboard extends PassThrough {
  readonly isTTY = true;
  isRaw = false;
  rawCalls: boolean[] = [];
  setRawMode(mode: boolean): this {
    this.rawCalls.push(mode);
    this.isRaw = mode;
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
}

/**
 * What a terminal would show after `output`: just enough of a VT100 for what ink writes (line
 * erase, cursor up / to column 1, newline, deferred wrap at the right margin). Styles and mode
 * switches are dropped. Clearing the whole screen fails the test, because it would also wipe
 * the report lines in the scrollback.
 */
function terminal(output: string, width = COLUMNS): { lines: string[]; cursorRow: number } {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  // eslint-disable-next-line no-control-regex
  const re = /\x1b\[([?0-9;]*)([A-Za-z])|\x1b\][^\x07]*\x07|(\r)|(\n)|([^\x1b\r\n])/gu;
  for (const m of output.matchAll(re)) {
    const line = (lines[row] ??= []);
    if (m[5] !== undefined) {
      if (col >= width) {
        row += 1;
        col = 0;
        lines[row] ??= [];
      }
      const target = lines[row]!;
      while (target.length < col) target.push(" ");
      target[col] = m[5];
      col += 1;
    } else if (m[4] !== undefined) {
      row += 1;
      col = 0;
      lines[row] ??= [];
    } else if (m[3] !== undefined) {
      col = 0;
    } else if (m[2] !== undefined) {
      const param = m[1] ?? "";
      const n = param === "" ? 1 : Number(param);
      switch (m[2]) {
        case "A":
          row = Math.max(0, row - n);
          break;
        case "G":
          col = param === "" ? 0 : n - 1;
          break;
        case "K":
          if (param === "2") line.length = 0;
          else line.length = Math.min(line.length, col);
          break;
        case "J":
          assert.fail(`screen cleared (${JSON.stringify(m[0])})`);
          break;
        default:
          // SGR colours, cursor show/hide, synchronized output: nothing to draw.
          break;
      }
    }
  }
  const shown = lines.map((l) => l.join("").trimEnd());
  // Rows below the cursor that a shrinking live area left blank are not content.
  while (shown.length > row + 1 && shown.at(-1) === "") shown.pop();
  return { lines: shown, cursorRow: row };
}

function screen(output: string): string[] {
  return terminal(output).lines;
}

function step(command: string, pool?: string): StepRef {
  return { key: `step:${command}`, command, workdir: "./", pool };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Retry `check` until it passes: frames come on timers, which a loaded machine delays. */
async function eventually(check: () => void, timeoutMs = 3000): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    try {
      check();
      return;
    } catch (err) {
      if (performance.now() > end) throw err;
      await sleep(20);
    }
  }
}

function setup(over: Partial<TuiOptions> = {}) {
  const stdout = new FakeTerminal();
  const stdin = new FakeKeyboard();
  const keys: Key[] = [];
  const clock = { t: 0 };
  const tui = startTui({
    stdout: stdout as unknown as NodeJS.WriteStream,
    stdin: stdin as unknown as NodeJS.ReadStream,
    color: false,
    showPerf: false,
    workers: 4,
    onKey: (k) => keys.push(k),
    now: () => clock.t,
    ...over,
  });
  return { stdout, stdin, keys, clock, tui, screen: () => screen(stdout.output) };
}

describe("startTui", () => {
  it("prints finished lines above the live area, in order, and shows running steps below", async () => {
    const { tui, clock, stdout, screen: shown } = setup();
    const a = step("cp a b");
    const b = step("inkscape -o c.pdf c.svg", "inkscape");
    const events: TsupEvent[] = [
      { kind: "phase", phase: "run" },
      { kind: "start", step: a, time: 0 },
      { kind: "start", step: b, time: 1000 },
      { kind: "finish", step: a, outcome: "success", pages: [{ title: "Step info", text: "all good" }], durationMs: 5 },
      {
        kind: "progress",
        counts: { total: 3, succeeded: 1, skipped: 0, failed: 0, running: 1, pending: 1 },
        pools: [{ name: "inkscape", size: 1, running: 1, queued: 0 }],
        workers: 4,
      },
    ];
    for (const e of events) tui.sink.emit(e);
    clock.t = 13_300;

    const rule = (title?: string) => {
      if (title === undefined) return "─".repeat(COLUMNS);
      const left = Math.floor((COLUMNS - title.length - 2) / 2);
      return `${"─".repeat(left)} ${title} ${"─".repeat(COLUMNS - title.length - 2 - left)}`;
    };
    const report = [
      "     PHASE │ run",
      "     START │ cp a b",
      "     START │ inkscape -o c.pdf c.svg",
      "   SUCCESS │ cp a b",
      rule("Step info"),
      "all good",
      rule(),
    ];
    const live = [
      " 12.3s [inkscape] inkscape -o c.pdf c.svg",
      "pool inkscape  1/1 running, 0 queued",
      `${"█".repeat(7)}${"░".repeat(13)}  done 1 (skipped 0) · failed 0 · running 1 · pending 1 · total 3`,
    ];
    await eventually(() => assert.deepEqual(shown(), [...report, ...live, ""]));

    // Later lines go above the live area too, after the earlier ones.
    tui.sink.emit({ kind: "finish", step: b, outcome: "fail", pages: [], durationMs: 5 });
    tui.sink.emit({ kind: "phase", phase: "watch" });
    await eventually(() =>
      assert.deepEqual(shown(), [
        ...report,
        "      FAIL │ inkscape -o c.pdf c.svg",
        "     PHASE │ watch",
        live[2],
        "watching — press r to run, ? for help, q to quit",
        "",
      ]),
    );

    // Closing removes the live area and leaves the report.
    await tui.close();
    const final = terminal(stdout.output);
    assert.deepEqual(final.lines, [...report, "      FAIL │ inkscape -o c.pdf c.svg", "     PHASE │ watch", ""]);
    // The shell prompt comes right under the last line, not after a blank one.
    assert.equal(final.cursorRow, report.length + 2);
  });

  it("prints lines emitted right before close, and after it", async () => {
    const { tui, screen: shown } = setup();
    tui.sink.emit({ kind: "director", message: "one" });
    tui.sink.emit({ kind: "director", message: "two" });
    await tui.close();
    tui.sink.emit({ kind: "error", message: "late" });
    const final = shown().filter((l) => l !== "");
    assert.deepEqual(final, ["  DIRECTOR │ one", "  DIRECTOR │ two", "     ERROR │ late"]);
  });

  it("turns raw mode on for keys and off on close, which is safe to call twice", async () => {
    const { tui, stdin, stdout } = setup();
    await eventually(() => assert.equal(stdin.isRaw, true));
    const first = tui.close();
    assert.equal(tui.close(), first);
    // Restored synchronously, so an exit handler that cannot wait still leaves a sane terminal.
    assert.equal(stdin.isRaw, false);
    await first;
    await tui.close();
    assert.equal(stdin.isRaw, false);
    assert.deepEqual(stdin.rawCalls, [true, false]);
    assert.ok(stdout.output.lastIndexOf("\x1b[?25h") > stdout.output.lastIndexOf("\x1b[?25l"), "cursor shown");
  });

  it("restores the terminal when closed after its output stream failed", async () => {
    const { tui, stdin, stdout } = setup();
    await eventually(() => assert.equal(stdin.isRaw, true));
    tui.sink.emit({ kind: "director", message: "pending" });
    stdout.destroy();
    await tui.close();
    assert.equal(stdin.isRaw, false);
  });

  it("passes keys on, Ctrl-C as interrupt, and stays up after Ctrl-C", async () => {
    const { tui, stdin, keys, screen: shown } = setup();
    await eventually(() => assert.equal(stdin.isRaw, true));
    stdin.write("q");
    await eventually(() => assert.equal(keys.length, 1));
    stdin.write("\x03");
    await eventually(() => assert.equal(keys.length, 2));
    stdin.write("x");
    await eventually(() => assert.deepEqual(keys, ["q", "interrupt", { other: "x" }]));
    tui.sink.emit({ kind: "keyboard", message: "Interrupted" });
    await eventually(() => assert.ok(shown().includes("  KEYBOARD │ Interrupted")));
    assert.equal(stdin.isRaw, true);
    await tui.close();
  });

  it("colours the live area only when asked to", async () => {
    for (const color of [false, true]) {
      const { tui, stdout } = setup({ color });
      tui.sink.emit({ kind: "start", step: step("cp a b"), time: 0 });
      await eventually(() => assert.ok(screen(stdout.output).includes("  0.0s cp a b")));
      const frame = stdout.output;
      await tui.close();
      assert.equal(/\x1b\[38;5;252m {2}0\.0s cp a b/.test(frame), color, `color=${color}`);
    }
  });

  it("cuts live lines to the terminal width, again after a resize", async () => {
    const { tui, stdout, screen: shown } = setup();
    stdout.columns = 30;
    tui.sink.emit({ kind: "start", step: step("x".repeat(80)), time: 0 });
    await eventually(() => assert.equal(shown().at(-2), "  0.0s " + "x".repeat(22) + "…"));
    stdout.columns = 50;
    stdout.emit("resize");
    await eventually(() => assert.equal(shown().at(-2), "  0.0s " + "x".repeat(42) + "…"));
    await tui.close();
  });

  it("keeps the live area shorter than the terminal", async () => {
    const { tui, stdout, screen: shown } = setup();
    stdout.rows = 6;
    for (let i = 0; i < 20; i++) tui.sink.emit({ kind: "start", step: step(`job ${i}`), time: i });
    // 20 START lines, then at most rows - 2 live lines, then the cursor line.
    await eventually(() => assert.equal(shown()[23], "… and 17 more"));
    assert.equal(shown().length, 20 + 4 + 1);
    await tui.close();
  });
});

describe("LiveStore", () => {
  it("turns a burst of thousands of events into a handful of frames", async () => {
    const store = new LiveStore(initialModel(), { frameMs: 100, heartbeatMs: 1000 });
    const writes: string[] = [];
    let renders = 0;
    store.attach({ write: (t) => writes.push(t), render: () => (renders += 1) });
    for (let i = 0; i < 20_000; i++) {
      const s = step(`job ${i}`);
      store.emit({ kind: "start", step: s, time: 0 });
      store.append(`line ${i}\n`);
      store.emit({ kind: "finish", step: s, outcome: "success", pages: [], durationMs: 1 });
    }
    // Then a steady stream for 300 ms more: at most one frame per 100 ms.
    const t0 = performance.now();
    for (let i = 0; performance.now() - t0 < 300; i++) {
      store.append("tick\n");
      store.emit({
        kind: "progress",
        counts: { total: 20_000, succeeded: 20_000, skipped: 0, failed: 0, running: 0, pending: i },
        pools: [],
        workers: 4,
      });
      await sleep(5);
    }
    await sleep(150);
    // Timers only fire late, never early, so the elapsed time bounds the number of frames.
    const most = Math.floor((performance.now() - t0) / 100) + 1;
    assert.ok(renders >= 2 && renders <= most, `renders: ${renders}, at most ${most}`);
    assert.ok(writes.length <= most, `writes: ${writes.length}, at most ${most}`);
    const text = writes.join("");
    assert.ok(text.startsWith("line 0\nline 1\n"));
    assert.ok(text.indexOf("line 19999\n") < text.indexOf("tick\n"));
    store.close();
  });

  it("re-renders on a heartbeat only while steps run", async () => {
    const store = new LiveStore(initialModel(), { frameMs: 10, heartbeatMs: 40 });
    let renders = 0;
    store.attach({ write: () => {}, render: () => (renders += 1) });
    await sleep(100);
    assert.equal(renders, 1, "idle: only the first frame");
    const s = step("sleep 1");
    store.emit({ kind: "start", step: s, time: 0 });
    await sleep(230);
    assert.ok(renders >= 3 && renders <= 8, `running: ${renders}`);
    store.emit({ kind: "finish", step: s, outcome: "success", pages: [], durationMs: 1 });
    await sleep(100);
    const after = renders;
    await sleep(150);
    assert.equal(renders, after, "no heartbeat once nothing runs");
    store.close();
  });
});

describe("readKeys", () => {
  it("reads single keys in raw mode and restores the terminal once", () => {
    const stdin = new FakeKeyboard();
    const keys: Key[] = [];
    const restore = readKeys(stdin as unknown as NodeJS.ReadStream, (k) => keys.push(k));
    assert.equal(stdin.isRaw, true);
    stdin.emit("data", "qj\x03");
    stdin.emit("data", Buffer.from("?\x1b[A"));
    assert.deepEqual(keys, ["q", "j", "interrupt", "?", { other: "\x1b[A" }]);
    restore();
    restore();
    assert.deepEqual(stdin.rawCalls, [true, false]);
    stdin.emit("data", "q");
    assert.equal(keys.length, 5, "no keys after restore");
  });

  it("does nothing for a stdin that is not a terminal", () => {
    const stdin = new PassThrough();
    const restore = readKeys(stdin as unknown as NodeJS.ReadStream, () => assert.fail("no keys"));
    stdin.emit("data", "q");
    restore();
  });
});
