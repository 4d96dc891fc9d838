import { describe, it } from "node:test";
import assert from "node:assert/strict";

import {
  LineReporter,
  createJsonReporter,
  formatLine,
  perfPrefix,
  rule,
  stripControl,
} from "../../src/report/lines.js";
import type { LineReporterOptions } from "../../src/report/lines.js";
import type { StepRef, TsupEvent } from "../../src/events.js";

const H = "─";
const ESC_RE = /\x1b/;

function step(command: string, workdir = "./"): StepRef {
  return { key: `step:${command}`, command, workdir };
}

/** A reporter writing into an array, with a clock the test moves by hand. */
function harness(over: Partial<LineReporterOptions> = {}) {
  const writes: string[] = [];
  const clock = { t: 1000 };
  const reporter = new LineReporter({
    write: (s) => writes.push(s),
    color: false,
    width: 80,
    showPerf: false,
    now: () => clock.t,
    ...over,
  });
  return { writes, clock, reporter, out: () => writes.join("") };
}

describe("formatLine", () => {
  it("right-aligns the action in 10 columns", () => {
    assert.equal(formatLine("START", "./plan.ts"), "     START │ ./plan.ts");
    assert.equal(formatLine("RESCHEDULE", "./step.ts"), "RESCHEDULE │ ./step.ts");
    assert.equal(formatLine("DIRECTOR", "See you!"), "  DIRECTOR │ See you!");
  });

  it("colours the action bold and the description grey", () => {
    assert.equal(
      formatLine("SUCCESS", "cp a b", true),
      "\x1b[1;32m   SUCCESS\x1b[0m │ \x1b[38;5;243mcp a b\x1b[0m",
    );
    // START descriptions are the lighter grey82.
    assert.equal(
      formatLine("START", "cp a b", true),
      "\x1b[1;34m     START\x1b[0m │ \x1b[38;5;252mcp a b\x1b[0m",
    );
  });
});

describe("rule", () => {
  it("centres an odd-length title at width 80 (extra filler on the right)", () => {
    const r = rule("Step info", 80);
    assert.equal(r, `${H.repeat(34)} Step info ${H.repeat(35)}`);
    assert.equal([...r].length, 80);
  });

  it("centres an even-length title at width 80", () => {
    const title = "Rescheduling due to unavailable amended inputs";
    assert.equal(title.length % 2, 0);
    assert.equal(rule(title, 80), `${H.repeat(16)} ${title} ${H.repeat(16)}`);
    const r = rule("Standard output", 80);
    assert.equal(r, `${H.repeat(31)} Standard output ${H.repeat(32)}`);
  });

  it("draws a plain rule without title", () => {
    assert.equal(rule(undefined, 80), H.repeat(80));
    assert.equal(rule(undefined, 12), H.repeat(12));
  });

  it("cuts a title that does not fit, keeping the width exact", () => {
    const r = rule("abcdefghijklmnop", 12);
    assert.equal(r, `${H} abcdefg… ${H}`);
    assert.equal([...r].length, 12);
  });
});

describe("LineReporter", () => {
  it("prints START and SUCCESS lines with a stdout page", () => {
    const h = harness();
    h.reporter.emit({ kind: "start", step: step("./plan.ts"), time: 0 });
    h.reporter.emit({
      kind: "finish",
      step: step("echo Hello World"),
      outcome: "success",
      durationMs: 3,
      pages: [{ title: "Standard output", text: "Hello World\n\n  \n" }],
    });
    assert.deepEqual(h.writes, [
      "     START │ ./plan.ts\n",
      "   SUCCESS │ echo Hello World\n" +
        `${H.repeat(31)} Standard output ${H.repeat(32)}\n` +
        "Hello World\n" +
        `${H.repeat(80)}\n`,
    ]);
  });

  it("prints a FAIL line with two pages in one write, omitting an empty page", () => {
    const h = harness();
    h.reporter.emit({
      kind: "finish",
      step: step("./step.ts", "sub/"),
      outcome: "fail",
      durationMs: 10,
      pages: [
        { title: "Step info", text: "Command               ./step.ts\nReturn code           1" },
        { title: "Standard output", text: " \n\t\n" },
        { title: "Standard error", text: "  boom\n" },
      ],
    });
    assert.equal(h.writes.length, 1);
    assert.equal(
      h.writes[0],
      "      FAIL │ ./step.ts  # wd=sub/\n" +
        `${H.repeat(34)} Step info ${H.repeat(35)}\n` +
        "Command               ./step.ts\n" +
        "Return code           1\n" +
        `${H.repeat(32)} Standard error ${H.repeat(32)}\n` +
        "  boom\n" +
        `${H.repeat(80)}\n`,
    );
  });

  it("prints no rules when all pages are empty", () => {
    const h = harness();
    h.reporter.emit({
      kind: "skip",
      step: step("cp a b", "sub/"),
      pages: [{ title: "Standard output", text: "\n" }],
    });
    assert.deepEqual(h.writes, ["      SKIP │ cp a b  # wd=sub/\n"]);
  });

  it("maps every printing event kind to its action and description", () => {
    const h = harness();
    const events: TsupEvent[] = [
      { kind: "director", message: "Launched worker 0" },
      { kind: "workflow", message: "Dumped to .stepup/workflow.mpk.xz" },
      { kind: "phase", phase: "run" },
      { kind: "noskip", step: step("a"), pages: [] },
      { kind: "finish", step: step("b"), outcome: "reschedule", pages: [], durationMs: 1 },
      { kind: "clean", path: "out.txt" },
      { kind: "warning", message: "1 step(s) remained pending" },
      { kind: "error", message: "Could not connect to director" },
      { kind: "phase", phase: "watch" },
      { kind: "updated", path: "inp.txt" },
      { kind: "deleted", path: "old.txt" },
      { kind: "keyboard", message: "Continuing" },
      {
        kind: "progress",
        counts: { total: 1, succeeded: 0, skipped: 0, failed: 0, running: 1, pending: 0 },
        pools: [],
        workers: 1,
      },
    ];
    for (const e of events) h.reporter.emit(e);
    assert.equal(
      h.out(),
      [
        "  DIRECTOR │ Launched worker 0",
        "  WORKFLOW │ Dumped to .stepup/workflow.mpk.xz",
        "     PHASE │ run",
        "    NOSKIP │ a",
        "RESCHEDULE │ b",
        "     CLEAN │ out.txt",
        "   WARNING │ 1 step(s) remained pending",
        "     ERROR │ Could not connect to director",
        "     PHASE │ watch",
        "   UPDATED │ inp.txt",
        "   DELETED │ old.txt",
        "  KEYBOARD │ Continuing",
        "",
      ].join("\n"),
    );
    // progress printed nothing and cost no write.
    assert.equal(h.writes.length, events.length - 1);
  });

  it("writes no escape codes and no carriage returns without colour", () => {
    const h = harness();
    h.reporter.emit({
      kind: "finish",
      step: step("./colorful"),
      outcome: "fail",
      durationMs: 1,
      pages: [
        { title: "Standard output", text: "\x1b[1;31mERR\x1b[0m 10%\r20%\r\nok\x07\n" },
        { title: "Standard error", text: "\x1b]8;;http://x\x07link\x1b]8;;\x07\x1bc\n" },
      ],
    });
    const out = h.out();
    assert.doesNotMatch(out, ESC_RE);
    assert.doesNotMatch(out, /\r/);
    assert.match(out, /\nERR 10%\n20%\nok\n/);
    assert.match(out, /\nlink\n/);
  });

  it("sanitizes a red, CRLF-terminated page to plain text", () => {
    const h = harness();
    h.reporter.emit({
      kind: "finish",
      step: step("./red.sh"),
      outcome: "success",
      durationMs: 1,
      pages: [{ title: "Standard output", text: "\x1b[31mred\x1b[0m\r\n" }],
    });
    assert.equal(
      h.out(),
      "   SUCCESS │ ./red.sh\n" +
        `${H.repeat(31)} Standard output ${H.repeat(32)}\n` +
        "red\n" +
        `${H.repeat(80)}\n`,
    );
    assert.equal(stripControl("a\tb\x1b[31mc\x1b[0m\r\nd"), "a\tbc\nd");
  });

  it("uses colour codes when colour is on", () => {
    const h = harness({ color: true });
    h.reporter.emit({
      kind: "finish",
      step: step("./red.sh"),
      outcome: "fail",
      durationMs: 1,
      pages: [{ title: "Standard output", text: "a\x1b[31mred\x1b[0mb\n" }],
    });
    const grey = "\x1b[38;5;243m";
    assert.equal(
      h.out(),
      `\x1b[1;31m      FAIL\x1b[0m │ ${grey}./red.sh\x1b[0m\n` +
        `\x1b[2m${H.repeat(31)} Standard output ${H.repeat(32)}\x1b[0m\n` +
        // The step's own colours survive, and grey resumes after its reset.
        `${grey}a\x1b[31mred\x1b[0m${grey}b\x1b[0m\n` +
        `\x1b[2m${H.repeat(80)}\x1b[0m\n`,
    );
  });

  it("honours the width for rules", () => {
    const h = harness({ width: 20 });
    h.reporter.emit({ kind: "error", message: "oops", pages: [{ title: "Tb", text: "x" }] });
    assert.equal(
      h.out(),
      `     ERROR │ oops\n${H.repeat(8)} Tb ${H.repeat(8)}\nx\n${H.repeat(20)}\n`,
    );
  });
});

describe("LineReporter -s prefix", () => {
  it("formats elapsed and running count like %7.2f and %3d", () => {
    assert.equal(perfPrefix(0.42, 1), "   0.42   1 ");
    assert.equal(perfPrefix(1234.567, 1234), "1234.57 1234 ");
  });

  it("counts from creation, resets after a PHASE line, tracks running steps", () => {
    const h = harness({ showPerf: true });
    h.clock.t += 250;
    h.reporter.emit({ kind: "director", message: "Launched worker 0" });
    h.clock.t += 170;
    h.reporter.emit({ kind: "phase", phase: "run" }); // shows 0.42, then resets
    h.clock.t += 420;
    h.reporter.emit({ kind: "start", step: step("echo out"), time: 0 });
    h.reporter.emit({ kind: "start", step: step("echo two"), time: 0 });
    h.clock.t += 1005;
    h.reporter.emit({
      kind: "finish",
      step: step("echo out"),
      outcome: "success",
      durationMs: 1,
      pages: [{ title: "Standard output", text: "out" }],
    });
    h.reporter.setRunning(12);
    h.reporter.emit({ kind: "warning", message: "w" });
    h.reporter.emit({
      kind: "progress",
      counts: { total: 2, succeeded: 1, skipped: 0, failed: 0, running: 0, pending: 0 },
      pools: [],
      workers: 1,
    });
    h.clock.t += 10;
    h.reporter.emit({ kind: "phase", phase: "watch" });
    h.clock.t += 3000;
    h.reporter.emit({ kind: "updated", path: "inp.txt" });
    assert.deepEqual(h.writes, [
      "   0.25   0   DIRECTOR │ Launched worker 0\n",
      "   0.42   0      PHASE │ run\n",
      "   0.42   1      START │ echo out\n",
      "   0.42   2      START │ echo two\n",
      "   1.43   1    SUCCESS │ echo out\n" +
        `${H.repeat(31)} Standard output ${H.repeat(32)}\nout\n${H.repeat(80)}\n`,
      "   1.43  12    WARNING │ w\n",
      "   1.44   0      PHASE │ watch\n",
      "   3.00   0    UPDATED │ inp.txt\n",
    ]);
  });
});

describe("createJsonReporter", () => {
  it("writes one JSON object per event per line", () => {
    const writes: string[] = [];
    const sink = createJsonReporter((s) => writes.push(s));
    const events: TsupEvent[] = [
      { kind: "phase", phase: "run" },
      { kind: "finish", step: step("a", "sub/"), outcome: "fail", pages: [], durationMs: 2 },
      {
        kind: "progress",
        counts: { total: 1, succeeded: 0, skipped: 0, failed: 1, running: 0, pending: 0 },
        pools: [{ name: "p", size: 1, running: 0, queued: 0 }],
        workers: 1,
      },
    ];
    for (const e of events) sink.emit(e);
    assert.equal(writes.length, 3);
    for (const w of writes) assert.equal(w.split("\n").length, 2);
    assert.deepEqual(
      writes.map((w) => JSON.parse(w) as unknown),
      events,
    );
    assert.equal(writes[0], '{"kind":"phase","phase":"run"}\n');
  });
});
