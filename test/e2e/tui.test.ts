// End-to-end: tsup on a real terminal. Each test runs bin/tsup.js inside tmux (a pty of 120x40),
// types keys into it and reads the screen back, so the live view, the keys and the state the
// terminal is left in are checked the way a person meets them. Plain mode (CI, stdout not a
// terminal) is checked byte by byte for escape codes and carriage returns.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { after, describe, test, type TestContext } from "node:test";
import { BIN, freshProjects, parseLines, type Project } from "./harness.js";
import { shQuote, TmuxServer, trimEnd, type Pane } from "./tmux.js";

const hasTmux = (() => {
  try {
    execFileSync("tmux", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
// On a developer machine without tmux these tests are skipped; in CI (.ci/run installs tmux)
// a missing tmux must fail loudly instead of passing by skipping everything.
const ci = process.env["CI"] !== undefined && process.env["CI"] !== "" && process.env["CI"] !== "false";
const skip = !hasTmux && !ci ? "tmux is not installed" : false;

const fresh = freshProjects();
const server = new TmuxServer();
after(() => server.kill());

const imports = `import { declareStatic, pool, step } from "tsup-flow";\n`;

/**
 * The shell line run in the pane: tsup, then its exit status and the terminal modes it left
 * behind (`STTY=icanon` or `STTY=-icanon`, same for echo), then a pause that keeps the pane and
 * its text around until the test has read it.
 */
function command(tsup: string): string {
  return (
    `${tsup}; echo EXIT=$?; ` +
    `for w in $(stty -a); do case $w in icanon|-icanon|echo|-echo) echo STTY=$w;; esac; done; sleep 60`
  );
}

/** tsup in the live-view setting: a terminal, and CI unset whatever the test runner has. */
function tsupLine(args = "-w2", env = "env -u CI -u FORCE_COLOR"): string {
  return `${env} ${shQuote(process.execPath)} ${shQuote(BIN)} ${args}`;
}

/** Start `shell` in a new pane in the project folder; the pane dies with the test. */
function open(t: TestContext, p: Project, shell: string): Pane {
  const pane = server.start(t.name.slice(0, 20), { cwd: p.dir, command: shell });
  t.after(() => pane.kill());
  return pane;
}

/** Report lines (`ACTION │ text`) on screen and in the scrollback, in order. */
function lines(screen: string): Array<[string, string]> {
  return parseLines(screen).map(([a, d]) => [a, d.trimEnd()]);
}

/** Descriptions of the report lines with `action`. */
function described(screen: string, action: string): string[] {
  return lines(screen)
    .filter(([a]) => a === action)
    .map(([, d]) => d);
}

/** The part of the capture after the last line containing `marker`. */
function since(screen: string, marker: string): string {
  const at = screen.lastIndexOf(marker);
  assert.ok(at >= 0, `no ${JSON.stringify(marker)} on screen\n${trimEnd(screen)}`);
  return screen.slice(at + marker.length);
}

function count(screen: string, re: RegExp): number {
  return screen.match(new RegExp(re.source, re.flags.includes("g") ? re.flags : `${re.flags}g`))?.length ?? 0;
}

/** The screen once at least `n` watch phases have begun. */
function watchPhase(pane: Pane, n: number): Promise<string> {
  return pane.waitFor((s) => count(s, /PHASE │ watch/) >= n && s.includes("watching — press r"), 20000, `watch phase ${n}`);
}

interface Ended {
  code: number;
  /** `icanon`/`-icanon` and `echo`/`-echo` as `stty -a` reported them after tsup exited. */
  stty: string[];
  /** Whether the terminal's cursor is visible after tsup exited. */
  cursorVisible: boolean;
  screen: string;
}

async function ended(pane: Pane, timeoutMs = 20000): Promise<Ended> {
  const screen = await pane.waitFor(
    (s) => /^EXIT=\d+$/m.test(s) && count(s, /^STTY=/m) >= 2,
    timeoutMs,
    "tsup to exit",
  );
  return {
    code: Number(/^EXIT=(\d+)$/m.exec(screen)![1]),
    stty: [...screen.matchAll(/^STTY=(\S+)$/gm)].map((m) => m[1]!),
    cursorVisible: pane.format("#{cursor_flag}") === "1",
    screen,
  };
}

/** Cooked mode, echo on and the cursor shown: what a shell needs after tsup is gone. */
function assertRestored(end: Ended): void {
  assert.deepEqual([...end.stty].sort(), ["echo", "icanon"], `terminal modes after exit\n${trimEnd(end.screen)}`);
  assert.ok(end.cursorVisible, "the cursor is hidden after tsup exited");
}

async function until(ok: () => boolean, what: string, timeoutMs = 20000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`waited ${timeoutMs} ms in vain for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("terminal UI in tmux", { skip }, () => {
  test("the live area shows running steps, pools and progress, then the watch line", async (t) => {
    const p = fresh({
      "plan.ts": `${imports}pool("serial", 1);
for (const n of [1, 2, 3]) step(\`sleep 2 # serial \${n}\`, { pool: "serial" });
step("sleep 2 # free", {});
`,
    });
    const pane = open(t, p, command(tsupLine()));
    // While the first pooled step runs, the other two wait in the pool; the free step runs beside it.
    let screen = await pane.waitFor(
      (s) =>
        /pool serial\s+1\/1 running, 2 queued/.test(s) &&
        /^\s*\d+\.\ds \[serial\] sleep 2 # serial \d$/m.test(s) &&
        /^\s*\d+\.\ds sleep 2 # free$/m.test(s) &&
        /done \d+ \(skipped 0\) · failed 0 · running 2 · pending \d+ · total 5$/m.test(s),
      20000,
      "two running steps, the pool line and the progress line",
    );
    // Elapsed times move on their own (a heartbeat frame), not only when an event arrives.
    screen = await pane.waitFor(/^\s*[1-9]\.\ds \[serial\] sleep 2 # serial \d$/m, 20000, "an elapsed time of a second or more");
    screen = await watchPhase(pane, 1);
    const visible = pane.capture(false);
    assert.match(visible, /done 5 \(skipped 0\) · failed 0 · running 0 · pending 0 · total 5/);
    assert.match(visible, /^watching — press r to run, \? for help, q to quit$/m);
    // Finished steps no longer occupy the live area, and a watching screen has no pool lines.
    assert.doesNotMatch(visible, /^\s*\d+\.\ds /m, trimEnd(visible));
    assert.doesNotMatch(visible, /^pool /m, trimEnd(visible));
    assert.deepEqual(
      described(screen, "SUCCESS").sort(),
      ["./plan.ts", "sleep 2 # free", "sleep 2 # serial 1", "sleep 2 # serial 2", "sleep 2 # serial 3"],
      trimEnd(screen),
    );
    // The pool is respected: a pooled step starts only after the previous one succeeded.
    const order = lines(screen)
      .filter(([a, d]) => (a === "START" || a === "SUCCESS") && d.includes("serial"))
      .map(([a]) => a);
    assert.deepEqual(order, ["START", "SUCCESS", "START", "SUCCESS", "START", "SUCCESS"], trimEnd(screen));
    pane.send("q");
    const end = await ended(pane);
    assert.equal(end.code, 0, trimEnd(end.screen));
    assertRestored(end);
    // Closing erased the live area: none of its rows were left behind on screen or in the scrollback.
    assert.doesNotMatch(end.screen, /^pool |^watching — |done \d+ \(skipped/m, trimEnd(end.screen));
  });

  test("? shows the Keys page; an unknown key says so and shows it too", async (t) => {
    const p = fresh({ "plan.ts": `${imports}step("echo hello", {});\n` });
    const pane = open(t, p, command(tsupLine()));
    await watchPhase(pane, 1);
    pane.send("?");
    let screen = await pane.waitFor(/KEYBOARD │ Keys\n─+ Keys ─+\n/, 15000, "the Keys page");
    assert.match(since(screen, "KEYBOARD │ Keys"), /r = run what changed[\s\S]*q = quit after running steps/);
    pane.send("x");
    screen = await pane.waitFor(/KEYBOARD │ Unsupported key "x"\n─+ Keys ─+\n/, 15000, "Unsupported key");
    assert.match(since(screen, 'Unsupported key "x"'), /r = run what changed/);
    // The watch line is still drawn below the pages: the keys did not disturb the live area.
    assert.match(pane.capture(false), /watching — press r to run/);
    pane.send("q");
    const end = await ended(pane);
    assert.equal(end.code, 0, trimEnd(end.screen));
    assertRestored(end);
  });

  test("watching: an edit shows UPDATED, r reruns only its consumer, q exits 0 with the terminal restored", async (t) => {
    const p = fresh({
      "plan.ts": `${imports}declareStatic("a.txt", "b.txt");
step("cat a.txt > a.out", { inp: "a.txt", out: "a.out" });
step("cat b.txt > b.out", { inp: "b.txt", out: "b.out" });
`,
      "a.txt": "a\n",
      "b.txt": "b\n",
    });
    const pane = open(t, p, command(tsupLine()));
    await watchPhase(pane, 1);
    p.write("a.txt", "A\n");
    await pane.waitFor(/UPDATED │ a\.txt/, 20000, "UPDATED │ a.txt");
    pane.send("r");
    const screen = await watchPhase(pane, 2);
    const rerun = since(screen, "KEYBOARD │ Running what changed");
    assert.deepEqual(described(rerun, "START"), ["cat a.txt > a.out"], trimEnd(screen));
    assert.equal(p.read("a.out"), "A\n");
    pane.send("q");
    const end = await ended(pane);
    assert.equal(end.code, 0, trimEnd(end.screen));
    assertRestored(end);
  });

  test("q during a run: the running step finishes, nothing new starts, exit 5 without watching", async (t) => {
    const p = fresh({ "plan.ts": `${imports}for (const n of [1, 2, 3]) step(\`sleep 4 # \${n}\`, {});\n` });
    const pane = open(t, p, command(tsupLine("-w1")));
    await pane.waitFor(/START │ sleep 4 # \d/, 20000, "the first sleep to start");
    pane.send("q");
    const end = await ended(pane);
    const screen = end.screen;
    assert.match(screen, /KEYBOARD │ Shutting down: running steps finish, nothing new starts/);
    const started = described(screen, "START").filter((d) => d.startsWith("sleep"));
    assert.equal(started.length, 1, trimEnd(screen));
    assert.deepEqual(described(screen, "SUCCESS"), ["./plan.ts", started[0]], trimEnd(screen));
    assert.doesNotMatch(screen, /PHASE │ watch/);
    assert.match(screen, /WARNING │ 2 steps remain pending because tsup is shutting down/);
    assert.match(screen, /DIRECTOR │ 2 executed, 0 skipped, 0 failed, 2 pending/);
    assert.equal(end.code, 5, trimEnd(screen));
    assertRestored(end);
  });

  test("a second q interrupts the running step: exit 130", async (t) => {
    const p = fresh({ "plan.ts": `${imports}step("sleep 30", {});\n` });
    const pane = open(t, p, command(tsupLine()));
    await pane.waitFor(/START │ sleep 30/, 20000, "sleep 30 to start");
    pane.send("q");
    await pane.waitFor(/KEYBOARD │ Shutting down/, 15000, "the first q");
    const pressed = Date.now();
    pane.send("q");
    // Well within the 30 s the step would take: it was interrupted, not waited for.
    const end = await ended(pane, 15000);
    const tookMs = Date.now() - pressed;
    assert.ok(tookMs < 15000, `tsup took ${tookMs} ms after the second q`);
    assert.match(end.screen, /KEYBOARD │ Interrupting running steps/);
    assert.deepEqual(described(end.screen, "FAIL"), ["sleep 30"], trimEnd(end.screen));
    assert.match(since(end.screen, "FAIL │ sleep 30"), /Killed by signal\s+SIG(INT|TERM|KILL)/);
    assert.match(end.screen, /DIRECTOR │ .*, interrupted/);
    assert.doesNotMatch(end.screen, /PHASE │ watch/);
    assert.equal(end.code, 130, `exit status after q q\n${trimEnd(end.screen)}`);
    assertRestored(end);
  });

  test("Ctrl-C interrupts the running step: exit 130", async (t) => {
    const p = fresh({ "plan.ts": `${imports}step("sleep 30", {});\n` });
    const pane = open(t, p, command(tsupLine()));
    await pane.waitFor(/START │ sleep 30/, 20000, "sleep 30 to start");
    const pressed = Date.now();
    pane.send("C-c", false);
    const end = await ended(pane, 15000);
    const tookMs = Date.now() - pressed;
    assert.ok(tookMs < 15000, `tsup took ${tookMs} ms after Ctrl-C`);
    assert.deepEqual(described(end.screen, "FAIL"), ["sleep 30"], trimEnd(end.screen));
    assert.match(end.screen, /DIRECTOR │ .*, interrupted/);
    assert.equal(end.code, 130, `exit status after Ctrl-C\n${trimEnd(end.screen)}`);
    assertRestored(end);
  });

  test("d drains the run and watches (pending reported); j then exits", async (t) => {
    const p = fresh({ "plan.ts": `${imports}for (const n of [1, 2, 3]) step(\`sleep 3 # \${n}\`, {});\n` });
    const pane = open(t, p, command(tsupLine("-w1")));
    await pane.waitFor(/START │ sleep 3 # \d/, 20000, "the first sleep to start");
    pane.send("d");
    const screen = await watchPhase(pane, 1);
    assert.match(screen, /KEYBOARD │ Draining: running steps finish, nothing new starts, then watching/);
    assert.equal(described(screen, "START").filter((d) => d.startsWith("sleep")).length, 1, trimEnd(screen));
    assert.match(screen, /WARNING │ 2 steps remain pending because the run was drained/);
    assert.match(screen, /DIRECTOR │ 2 executed, 0 skipped, 0 failed, 2 pending/);
    assert.match(pane.capture(false), /pending 2 · total 4/);
    pane.send("j");
    const end = await ended(pane);
    assert.match(end.screen, /KEYBOARD │ Exiting/);
    // j leaves with the outcome of the last run phase, which left two steps pending.
    assert.equal(end.code, 5, trimEnd(end.screen));
    assertRestored(end);
  });

  test("watching: f runs every step again, t replays every step, g writes the graph", async (t) => {
    const p = fresh({
      "plan.ts": `${imports}step("echo one > one.txt", { out: "one.txt" });
step("cat one.txt > two.txt", { inp: "one.txt", out: "two.txt" });
`,
    });
    const all = ["./plan.ts", "cat one.txt > two.txt", "echo one > one.txt"];
    const pane = open(t, p, command(tsupLine()));
    await watchPhase(pane, 1);
    pane.send("f");
    let screen = await watchPhase(pane, 2);
    assert.deepEqual(described(since(screen, "KEYBOARD │ Forgetting all fingerprints"), "START").sort(), all, trimEnd(screen));
    pane.send("t");
    screen = await watchPhase(pane, 3);
    const tried = since(screen, "KEYBOARD │ Trying to replay every step");
    assert.deepEqual(described(tried, "SKIP").sort(), all, trimEnd(screen));
    assert.deepEqual(described(tried, "START"), [], trimEnd(screen));
    pane.send("g");
    screen = await pane.waitFor(/KEYBOARD │ Workflow graph written to/, 15000, "the graph message");
    assert.match(
      screen,
      /Workflow graph written to \.stepup\/graph\.txt, \.stepup\/graph_supplier\.dot, \.stepup\/graph_creator\.dot/,
    );
    for (const file of ["graph.txt", "graph_supplier.dot", "graph_creator.dot"]) {
      assert.ok(statSync(p.path(`.stepup/${file}`)).size > 0, `.stepup/${file} is empty`);
    }
    assert.match(p.read(".stepup/graph.txt"), /echo one > one\.txt/);
    pane.send("q");
    const end = await ended(pane);
    assert.equal(end.code, 0, trimEnd(end.screen));
    assertRestored(end);
  });

  test("CI=true on a terminal: plain lines without escape codes, keys still work", async (t) => {
    const p = fresh({ "plan.ts": `${imports}step("sleep 1", {});\n` });
    const raw = p.path("raw.log");
    // tsup waits for the file `go`, so the recording of the pane is in place before it prints.
    const pane = open(
      t,
      p,
      command(`while [ ! -e go ]; do sleep 0.05; done; ${tsupLine("-w2", "env -u FORCE_COLOR CI=true")}`),
    );
    pane.record(raw);
    p.write("go", "");
    await pane.waitFor(/PHASE │ watch/, 20000, "the watch phase");
    pane.send("q");
    const end = await ended(pane);
    assert.equal(end.code, 0, trimEnd(end.screen));
    assertRestored(end);
    await until(() => existsSync(raw) && readFileSync(raw, "utf8").includes("EXIT=0"), "the recording");
    const bytes = readFileSync(raw, "utf8");
    const tsupBytes = bytes.slice(0, bytes.indexOf("EXIT=0"));
    assert.match(tsupBytes, /DIRECTOR │ 2 executed, 0 skipped, 0 failed, 0 pending/);
    assert.ok(!tsupBytes.includes("\x1b"), `escape codes in plain mode: ${JSON.stringify(tsupBytes)}`);
    // The terminal turns each \n into \r\n (onlcr); a \r of tsup's own would stand alone.
    assert.ok(!/\r(?!\n)/.test(tsupBytes), `a bare \\r in plain mode: ${JSON.stringify(tsupBytes)}`);
    assert.doesNotMatch(end.screen, /watching — press r/);
  });

  test("stdout to a file, stdin the terminal: plain lines in the file, keys still work", async (t) => {
    const p = fresh({ "plan.ts": `${imports}step("sleep 1", {});\n` });
    const pane = open(t, p, command(`${tsupLine()} > out.log`));
    const out = p.path("out.log");
    const text = (): string => (existsSync(out) ? readFileSync(out, "utf8") : "");
    await until(() => text().includes("PHASE │ watch"), "PHASE │ watch in out.log");
    pane.send("q");
    const end = await ended(pane);
    assert.equal(end.code, 0, `${trimEnd(end.screen)}\n--- out.log\n${text()}`);
    assertRestored(end);
    const bytes = text();
    assert.match(bytes, /KEYBOARD │ Shutting down/);
    assert.ok(!bytes.includes("\x1b"), `escape codes in out.log: ${JSON.stringify(bytes)}`);
    assert.ok(!bytes.includes("\r"), `\\r in out.log: ${JSON.stringify(bytes)}`);
    // Keys read in raw mode are not echoed onto the terminal.
    assert.doesNotMatch(end.screen.slice(0, end.screen.indexOf("EXIT=")), /q/);
  });
});
