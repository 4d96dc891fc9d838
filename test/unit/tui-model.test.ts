import { describe, it } from "node:test";
import assert from "node:assert/strict";

import {
  WATCH_LINE,
  formatElapsed,
  initialModel,
  liveLines,
  liveRows,
  progressText,
  reduce,
  truncate,
} from "../../src/tui/model.js";
import type { Model } from "../../src/tui/model.js";
import { keyOf, keysOf, keysOfInk } from "../../src/tui/keys.js";
import type { PoolUsage, StepCounts, StepRef, TsupEvent } from "../../src/events.js";

function step(command: string, opts: { workdir?: string; pool?: string } = {}): StepRef {
  return { key: `step:${command}`, command, workdir: opts.workdir ?? "./", pool: opts.pool };
}

function counts(over: Partial<StepCounts> = {}): StepCounts {
  return { total: 0, succeeded: 0, skipped: 0, failed: 0, running: 0, pending: 0, ...over };
}

function progress(c: Partial<StepCounts>, pools: PoolUsage[] = [], workers = 4): TsupEvent {
  return { kind: "progress", counts: counts(c), pools, workers };
}

const start = (s: StepRef, time: number): TsupEvent => ({ kind: "start", step: s, time });
const finish = (s: StepRef, outcome: "success" | "fail" | "reschedule" = "success"): TsupEvent => ({
  kind: "finish",
  step: s,
  outcome,
  pages: [],
  durationMs: 1,
});

function run(events: TsupEvent[], model: Model = initialModel()): Model {
  return events.reduce(reduce, model);
}

describe("reduce", () => {
  it("tracks running steps from start, finish (any outcome) and skip", () => {
    const a = step("cp a b");
    const b = step("cp c d");
    const c = step("cp e f");
    const d = step("cp g h");
    let m = run([{ kind: "phase", phase: "run" }, start(a, 0), start(b, 10), start(c, 20), start(d, 30)]);
    assert.deepEqual([...m.running.keys()], [a.key, b.key, c.key, d.key]);

    m = run([finish(a, "success"), finish(b, "fail"), finish(c, "reschedule")], m);
    assert.deepEqual([...m.running.keys()], [d.key]);

    m = reduce(m, { kind: "skip", step: d, pages: [] });
    assert.equal(m.running.size, 0);
  });

  it("does not mutate the previous model and returns it unchanged for events it ignores", () => {
    const a = step("cp a b");
    const m0 = initialModel();
    const m1 = reduce(m0, start(a, 5));
    assert.equal(m0.running.size, 0);
    assert.equal(m1.running.size, 1);
    for (const e of [
      { kind: "director", message: "hi" },
      { kind: "workflow", message: "x" },
      { kind: "updated", path: "a" },
      { kind: "keyboard", message: "help" },
      { kind: "noskip", step: a, pages: [] },
      // A finish of a step that is not running changes nothing either.
      finish(step("other")),
      { kind: "phase", phase: "run" },
    ] satisfies TsupEvent[]) {
      assert.equal(reduce(m1, e), m1, e.kind);
    }
  });

  it("takes counts, pools and workers from the latest progress event", () => {
    const pools = [{ name: "inkscape", size: 1, running: 1, queued: 12 }];
    const m = run([
      progress({ total: 5, pending: 5 }),
      progress({ total: 436, succeeded: 40, skipped: 80, failed: 2, running: 4, pending: 310 }, pools, 8),
    ]);
    assert.deepEqual(m.counts, counts({ total: 436, succeeded: 40, skipped: 80, failed: 2, running: 4, pending: 310 }));
    assert.deepEqual(m.pools, pools);
    assert.equal(m.workers, 8);
  });

  it("tracks the phase", () => {
    let m = initialModel();
    assert.equal(m.phase, "run");
    m = reduce(m, { kind: "phase", phase: "watch" });
    assert.equal(m.phase, "watch");
    m = reduce(m, { kind: "phase", phase: "run" });
    assert.equal(m.phase, "run");
  });

  it("restarts a rescheduled step with its new start time", () => {
    const a = step("cp a b");
    const m = run([start(a, 0), finish(a, "reschedule"), start(a, 5000)]);
    assert.equal(m.running.get(a.key)?.since, 5000);
    assert.deepEqual(liveLines(m, 6000, 80), ["  1.0s cp a b"]);
  });

  it("stays fast over 100k events", () => {
    const events: TsupEvent[] = [];
    for (let i = 0; i < 25_000; i++) {
      const s = step(`step ${i}`);
      events.push(start(s, i), finish(s), progress({ total: 25_000, succeeded: i }));
      events.push({ kind: "director", message: "x" });
    }
    const t0 = performance.now();
    const m = run(events);
    const ms = performance.now() - t0;
    assert.equal(m.running.size, 0);
    assert.equal(m.counts?.succeeded, 24_999);
    assert.ok(ms < 1000, `100k events took ${ms.toFixed(0)} ms`);
  });
});

describe("formatElapsed", () => {
  it("shows tenths of seconds below a minute, then minutes and hours", () => {
    assert.equal(formatElapsed(0), "0.0s");
    assert.equal(formatElapsed(-5), "0.0s");
    assert.equal(formatElapsed(12_345), "12.3s");
    assert.equal(formatElapsed(59_999), "59.9s");
    assert.equal(formatElapsed(60_000), "1m00s");
    assert.equal(formatElapsed(125_400), "2m05s");
    assert.equal(formatElapsed(3_599_999), "59m59s");
    assert.equal(formatElapsed(3_600_000), "1h00m");
    assert.equal(formatElapsed(3_780_000), "1h03m");
  });
});

describe("truncate", () => {
  it("cuts to the width with an ellipsis and leaves short text alone", () => {
    assert.equal(truncate("abcdef", 6), "abcdef");
    assert.equal(truncate("abcdefg", 6), "abcde…");
    assert.equal(truncate("ééééé", 3), "éé…");
    assert.equal(truncate("abc", 0), "");
  });
});

describe("liveLines", () => {
  it("lists running steps oldest first with elapsed time and pool", () => {
    const m = run([
      start(step("inkscape -o b.pdf b.svg", { pool: "inkscape" }), 2_000),
      start(step("cp a b", { workdir: "sub/" }), 1_000),
    ]);
    assert.deepEqual(liveLines(m, 13_300, 80), [
      " 12.3s cp a b  # wd=sub/",
      " 11.3s [inkscape] inkscape -o b.pdf b.svg",
    ]);
  });

  it("truncates every line to the width", () => {
    const m = run([
      start(step("x".repeat(200)), 0),
      progress({ total: 436, succeeded: 40, skipped: 80, failed: 2, running: 4, pending: 310 }, [
        { name: "a-very-long-pool-name", size: 2, running: 2, queued: 100 },
      ]),
    ]);
    const lines = liveLines(m, 500, 30);
    assert.equal(lines.length, 3);
    for (const line of lines) {
      assert.equal([...line].length, 30, line);
      assert.ok(line.endsWith("…"), line);
    }
    assert.equal(lines[0], "  0.5s " + "x".repeat(22) + "…");
  });

  it("shows the 10 oldest running steps and how many more", () => {
    const events: TsupEvent[] = [];
    // Started newest first, so insertion order and age disagree.
    for (let i = 16; i >= 0; i--) events.push(start(step(`job ${i}`), i * 1000));
    const lines = liveLines(run(events), 20_000, 80);
    assert.equal(lines.length, 11);
    assert.equal(lines[0], " 20.0s job 0");
    assert.equal(lines[9], " 11.0s job 9");
    assert.equal(lines[10], "… and 7 more");
  });

  it("shows all running steps when they fit in the limit", () => {
    const events: TsupEvent[] = [];
    for (let i = 0; i < 10; i++) events.push(start(step(`job ${i}`), 0));
    const lines = liveLines(run(events), 0, 80);
    assert.equal(lines.length, 10);
    assert.ok(!lines.some((l) => l.includes("more")));
  });

  it("shrinks the running list to fit the height, keeping pools and progress", () => {
    const events: TsupEvent[] = [];
    for (let i = 0; i < 8; i++) events.push(start(step(`job ${i}`), i));
    events.push(progress({ total: 10, running: 8, pending: 2 }, [{ name: "p", size: 1, running: 1, queued: 0 }]));
    const lines = liveLines(run(events), 100, 120, 5);
    assert.equal(lines.length, 5);
    assert.equal(lines[2], "… and 6 more");
    assert.match(lines[3] ?? "", /^pool p/);
    assert.match(lines[4] ?? "", /total 10$/);
    // With no room at all the progress line is the last one left.
    assert.deepEqual(liveLines(run(events), 100, 120, 1).length, 1);
    assert.match(liveLines(run(events), 100, 120, 1)[0] ?? "", /done 0/);
  });

  it("renders the progress line, with a bar only when the width allows", () => {
    const c = counts({ total: 436, succeeded: 40, skipped: 80, failed: 2, running: 4, pending: 310 });
    const text = "done 120 (skipped 80) · failed 2 · running 4 · pending 310 · total 436";
    assert.equal(progressText(c), text);
    const m = run([progress(c)]);

    const narrow = liveRows(m, 0, text.length + 5);
    assert.deepEqual(narrow, [{ kind: "progress", text }]);

    const wide = liveRows(m, 0, 120);
    assert.equal(wide.length, 1);
    const row = wide[0]!;
    assert.ok(row.text.endsWith(`  ${text}`), row.text);
    // 120 of 436 done is 5.5 of 20 cells, rounded to 6; 122 of 436 still rounds to 6.
    assert.deepEqual(row.bar, { done: 6, failed: 0, rest: 14 });
    assert.equal(row.text.slice(0, 20), "█".repeat(6) + "░".repeat(14));
  });

  it("fills the bar when everything is done", () => {
    const m = run([progress({ total: 10, succeeded: 7, failed: 3 })]);
    const row = liveRows(m, 0, 120)[0]!;
    assert.deepEqual(row.bar, { done: 14, failed: 6, rest: 0 });
    assert.equal(row.text.slice(0, 20), "█".repeat(20));
  });

  it("shows one aligned line per pool while running", () => {
    const m = run([
      progress({ total: 3 }, [
        { name: "inkscape", size: 1, running: 1, queued: 12 },
        { name: "tex", size: 2, running: 0, queued: 0 },
      ]),
    ]);
    assert.deepEqual(liveLines(m, 0, 100).slice(0, 2), [
      "pool inkscape  1/1 running, 12 queued",
      "pool tex       0/2 running, 0 queued",
    ]);
  });

  it("shows the last counts and the key hint while watching, without pools", () => {
    const m = run([
      progress({ total: 3, succeeded: 3 }, [{ name: "inkscape", size: 1, running: 0, queued: 0 }]),
      { kind: "phase", phase: "watch" },
    ]);
    assert.deepEqual(liveLines(m, 0, 60), [
      "done 3 (skipped 0) · failed 0 · running 0 · pending 0 · total 3",
      WATCH_LINE,
    ].map((l) => truncate(l, 60)));
    assert.equal(WATCH_LINE, "watching — press r to run, ? for help, q to quit");
  });

  it("keeps a step's line on one row even if its command has newlines or escapes", () => {
    const m = run([start(step("echo 'a\nb'\t\x1b[31mred"), 0)]);
    assert.deepEqual(liveLines(m, 0, 80), ["  0.0s echo 'a b' red"]);
  });

  it("is empty before anything happens", () => {
    assert.deepEqual(liveLines(initialModel(), 0, 80), []);
  });
});

describe("keys", () => {
  it("maps the command keys, Ctrl-C and anything else", () => {
    for (const k of ["q", "d", "j", "f", "t", "r", "g", "?"]) assert.equal(keyOf(k), k);
    assert.equal(keyOf("\x03"), "interrupt");
    assert.deepEqual(keyOf("x"), { other: "x" });
    assert.equal(keyOf(""), undefined);
  });

  it("splits typed text into keys, keeping escape sequences whole", () => {
    assert.deepEqual(keysOf("qr\x1b[Ax\x03"), ["q", "r", { other: "\x1b[A" }, { other: "x" }, "interrupt"]);
  });

  it("maps ink's Ctrl+c to interrupt and ignores ink's empty special-key input", () => {
    assert.deepEqual(keysOfInk("c", { ctrl: true }), ["interrupt"]);
    assert.deepEqual(keysOfInk("c", { ctrl: false }), [{ other: "c" }]);
    assert.deepEqual(keysOfInk("", { ctrl: false }), []);
    assert.deepEqual(keysOfInk("q", { ctrl: false }), ["q"]);
  });
});
