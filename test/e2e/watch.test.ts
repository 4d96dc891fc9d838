// End-to-end: the watch phase, driven deterministically with the control subcommands
// (`tsup wait`, `watch-update`, `run`, `join`, ...) against a real tsup left running.
import assert from "node:assert/strict";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import { freshProjects, show, startTsup, tsup, withAction, type Background } from "./harness.js";

const fresh = freshProjects();
const imports = `import { copy, declareStatic, glob, step } from "tsup-flow";\n`;

/** START lines printed after `mark`. */
function startedSince(bg: Background, mark: number): string[] {
  return bg
    .linesSince(mark)
    .filter(([a]) => a === "START")
    .map(([, d]) => d);
}

async function ok(result: Promise<{ code: number | null; stdout: string; stderr: string }>): Promise<string> {
  const r = await result;
  assert.equal(r.code, 0, `control command failed: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

describe("watch phase", () => {
  test("an edited static input reruns exactly its consumers; join ends tsup", async () => {
    const p = fresh({
      "plan.ts": `${imports}declareStatic("a.txt", "b.txt");
step("cat a.txt > a.out", { inp: "a.txt", out: "a.out" });
step("cat a.out > a2.out", { inp: "a.out", out: "a2.out" });
step("cat b.txt > b.out", { inp: "b.txt", out: "b.out" });
`,
      "a.txt": "a\n",
      "b.txt": "b\n",
    });
    const bg = startTsup(p.dir);
    await ok(bg.control("wait"));
    assert.match(bg.output(), /PHASE │ watch\n\s+DIRECTOR │ Watching for changes\. Stop with `tsup shutdown` or Ctrl-C; use -n/);
    const status = await ok(bg.control("status"));
    assert.match(status, /phase\s+watch/);
    const mark = bg.output().length;
    p.write("a.txt", "A\n");
    await ok(bg.control("watch-update", "a.txt"));
    assert.deepEqual(bg.linesSince(mark), [["UPDATED", "a.txt"]]);
    await ok(bg.control("run"));
    await ok(bg.control("wait"));
    assert.deepEqual(startedSince(bg, mark), ["cat a.txt > a.out", "cat a.out > a2.out"], bg.output());
    // Unchanged steps are replayed silently in a rerun: only what ran is news.
    assert.deepEqual(bg.linesSince(mark).filter(([a]) => a === "SKIP"), []);
    assert.equal(p.read("a2.out"), "A\n");
    const joined = await ok(bg.control("join"));
    assert.match(joined, /tsup finished: 2 executed, 2 skipped, 0 failed, 0 pending/);
    const end = await bg.done;
    assert.equal(end.code, 0, show(end));
  });

  test("an edited plan reruns; a new step runs, a dropped step's output is cleaned", async () => {
    const p = fresh({
      "plan.ts": `${imports}step("echo one > one.txt", { out: "one.txt" });\nstep("echo two > two.txt", { out: "two.txt" });\n`,
    });
    const bg = startTsup(p.dir);
    await ok(bg.control("wait"));
    const mark = bg.output().length;
    p.write("plan.ts", `${imports}step("echo one > one.txt", { out: "one.txt" });\nstep("echo three > three.txt", { out: "three.txt" });\n`);
    await ok(bg.control("watch-update", "plan.ts"));
    await ok(bg.control("run"));
    await ok(bg.control("wait"));
    assert.deepEqual(startedSince(bg, mark), ["./plan.ts", "echo three > three.txt"], bg.output());
    assert.ok(bg.linesSince(mark).some(([a, d]) => a === "CLEAN" && d === "two.txt"), bg.output());
    assert.ok(!existsSync(p.path("two.txt")));
    assert.equal(p.read("three.txt"), "three\n");
    await ok(bg.control("join"));
    assert.equal((await bg.done).code, 0);
  });

  test("an edited module that plan.ts imports is noticed and reruns the plan", async () => {
    const p = fresh({
      "plan.ts": `${imports}import { n } from "./lib/n.js";\nstep(\`echo \${n} > n.txt\`, { out: "n.txt" });\n`,
      "lib/n.ts": `export const n: number = 1;\n`,
    });
    const bg = startTsup(p.dir);
    await ok(bg.control("wait"));
    assert.equal(p.read("n.txt"), "1\n");
    const mark = bg.output().length;
    p.write("lib/n.ts", `export const n: number = 2;\n`);
    await ok(bg.control("watch-update", "lib/n.ts"));
    assert.deepEqual(bg.linesSince(mark), [["UPDATED", "lib/n.ts"]]);
    await ok(bg.control("run"));
    await ok(bg.control("wait"));
    assert.deepEqual(startedSince(bg, mark), ["./plan.ts", "echo 2 > n.txt"], bg.output());
    assert.equal(p.read("n.txt"), "2\n");
    await ok(bg.control("join"));
    assert.equal((await bg.done).code, 0);
  });

  test("a new file matching a glob reruns the plan; a deleted match's copy is cleaned", async () => {
    const p = fresh({
      "plan.ts": `${imports}declareStatic("out/");\nfor (const f of glob("inp*.txt")) copy(f, "out/");\n`,
      "inp1.txt": "1\n",
      "out/.keep": "",
    });
    const bg = startTsup(p.dir);
    await ok(bg.control("wait"));
    assert.equal(p.read("out/inp1.txt"), "1\n");
    let mark = bg.output().length;
    p.write("inp2.txt", "2\n");
    await ok(bg.control("watch-update", "inp2.txt"));
    assert.deepEqual(bg.linesSince(mark), [["UPDATED", "inp2.txt"]]);
    await ok(bg.control("run"));
    await ok(bg.control("wait"));
    assert.deepEqual(startedSince(bg, mark), ["./plan.ts", "cp -fp inp2.txt out/inp2.txt"], bg.output());
    assert.equal(p.read("out/inp2.txt"), "2\n");
    mark = bg.output().length;
    rmSync(p.path("inp1.txt"));
    await ok(bg.control("watch-delete", "inp1.txt"));
    await ok(bg.control("run"));
    await ok(bg.control("wait"));
    assert.deepEqual(startedSince(bg, mark), ["./plan.ts"], bg.output());
    assert.ok(!existsSync(p.path("out/inp1.txt")), bg.output());
    await ok(bg.control("join"));
    assert.equal((await bg.done).code, 0);
  });

  test("a deleted input makes its consumers wait; restoring it lets them run", async () => {
    const p = fresh({
      "plan.ts": `${imports}declareStatic("in.txt");\nstep("cat in.txt > out.txt", { inp: "in.txt", out: "out.txt" });\n`,
      "in.txt": "x\n",
    });
    const bg = startTsup(p.dir);
    await ok(bg.control("wait"));
    let mark = bg.output().length;
    rmSync(p.path("in.txt"));
    await ok(bg.control("watch-delete", "in.txt"));
    assert.deepEqual(bg.linesSince(mark), [["DELETED", "in.txt"]]);
    await ok(bg.control("run"));
    await ok(bg.control("wait"));
    assert.deepEqual(startedSince(bg, mark), [], "nothing runs: the plan did not change");
    assert.match(bg.output().slice(mark), /MISSING {2}in\.txt {2}declared static by \.\/plan\.ts/);
    assert.match(bg.output().slice(mark), /DIRECTOR │ 0 executed, 1 skipped, 0 failed, 1 pending/);
    mark = bg.output().length;
    p.write("in.txt", "y\n");
    await ok(bg.control("watch-update", "in.txt"));
    await ok(bg.control("run"));
    await ok(bg.control("wait"));
    assert.deepEqual(startedSince(bg, mark), ["cat in.txt > out.txt"], bg.output());
    assert.equal(p.read("out.txt"), "y\n");
    await ok(bg.control("shutdown"));
    assert.equal((await bg.done).code, 0);
  });

  test("a deleted plan.ts leaves the plan waiting and cleans nothing; restoring it reruns only the plan", async () => {
    const p = fresh({ "plan.ts": `${imports}step("echo x > x.txt", { out: "x.txt" });\n` });
    const bg = startTsup(p.dir);
    await ok(bg.control("wait"));
    const plan = p.read("plan.ts");
    let mark = bg.output().length;
    rmSync(p.path("plan.ts"));
    await ok(bg.control("watch-delete", "plan.ts"));
    await ok(bg.control("run"));
    await ok(bg.control("wait"));
    assert.match(bg.output().slice(mark), /MISSING {2}plan\.ts {2}declared static by the root/);
    assert.ok(existsSync(p.path("x.txt")), "nothing is cleaned while the plan is missing");
    mark = bg.output().length;
    p.write("plan.ts", plan);
    await ok(bg.control("watch-update", "plan.ts"));
    await ok(bg.control("run"));
    await ok(bg.control("wait"));
    // The plan runs again (what it declared was not replayed while it waited); its step is skipped.
    assert.deepEqual(startedSince(bg, mark), ["./plan.ts"], bg.output());
    assert.match(bg.output().slice(mark), /DIRECTOR │ 1 executed, 1 skipped, 0 failed, 0 pending/);
    await ok(bg.control("join"));
  });

  test("a glob match created and deleted within one watch phase does not upset anything (StepUp bug 7)", async () => {
    const p = fresh({ "plan.ts": `${imports}for (const f of glob("inp*.txt")) step(\`cat \${f}\`, { inp: f });\n` });
    const bg = startTsup(p.dir);
    await ok(bg.control("wait"));
    const mark = bg.output().length;
    p.write("inp9.txt", "9\n");
    await ok(bg.control("watch-update", "inp9.txt"));
    rmSync(p.path("inp9.txt"));
    await ok(bg.control("watch-delete", "inp9.txt"));
    await ok(bg.control("run"));
    await ok(bg.control("wait"));
    assert.deepEqual(startedSince(bg, mark), [], bg.output());
    await ok(bg.control("join"));
    assert.equal((await bg.done).code, 0);
  });

  test("a glob match created while a run phase goes on is noticed afterwards (StepUp bug 9)", async () => {
    const p = fresh({
      "plan.ts": `${imports}for (const f of glob("inp*.txt")) step(\`cat \${f}\`, { inp: f });\nstep("sleep 1.5", {});\n`,
      "inp1.txt": "1\n",
    });
    // A first run so that the second one starts with the glob's directory known and watched.
    assert.equal((await tsup(p.dir)).code, 0);
    p.write("plan.ts", p.read("plan.ts").replace("sleep 1.5", "sleep 1.6"));
    const bg = startTsup(p.dir);
    await bg.waitFor(/START │ sleep 1\.6/);
    p.write("inp2.txt", "2\n");
    await ok(bg.control("wait"));
    await ok(bg.control("watch-update", "inp2.txt"));
    assert.match(bg.output(), /UPDATED │ inp2\.txt/);
    const mark = bg.output().length;
    await ok(bg.control("run"));
    await ok(bg.control("wait"));
    assert.deepEqual(startedSince(bg, mark), ["./plan.ts", "cat inp2.txt"], bg.output());
    await ok(bg.control("join"));
  });

  test("--auto reruns by itself once changes settle", async () => {
    const p = fresh({
      "plan.ts": `${imports}declareStatic("a.txt");\nstep("cat a.txt > a.out", { inp: "a.txt", out: "a.out" });\n`,
      "a.txt": "a\n",
    });
    const bg = startTsup(p.dir, ["-w2", "--auto", "--debounce", "200"]);
    await ok(bg.control("wait"));
    p.write("a.txt", "b\n");
    await bg.waitFor(/DIRECTOR │ 1 executed, 1 skipped/);
    await ok(bg.control("wait"));
    assert.equal(p.read("a.out"), "b\n");
    await ok(bg.control("join"));
    assert.equal((await bg.done).code, 0);
  });

  test("shutdown during a run lets running steps finish and starts nothing new", async () => {
    const p = fresh({
      "plan.ts": `${imports}for (const i of [1, 2, 3, 4]) step(\`sleep 1; echo \${i} > s\${i}.txt\`, { out: \`s\${i}.txt\` });\n`,
    });
    const bg = startTsup(p.dir, ["-w1"]);
    await bg.waitFor(/START │ sleep 1; echo 1/);
    const down = await ok(bg.control("shutdown"));
    const end = await bg.done;
    assert.equal(end.code, 5, show(end));
    // Whatever had started when the command arrived finished; nothing started after it.
    const at = end.lines.findIndex(([a, d]) => a === "KEYBOARD" && d.includes("(tsup shutdown)"));
    assert.ok(at > 0, show(end));
    const before = end.lines.slice(0, at).filter(([a]) => a === "START").length;
    assert.deepEqual(end.lines.slice(at).filter(([a]) => a === "START"), [], show(end));
    assert.equal(end.lines.slice(at).filter(([a]) => a === "SUCCESS").length <= 1, true, show(end));
    const pending = 5 - before;
    assert.match(down, new RegExp(`tsup finished: ${before} executed, 0 skipped, 0 failed, ${pending} pending`));
    assert.ok(pending >= 1, "the test needs at least one step that never started");
    assert.equal(p.read("s1.txt"), "1\n");
    assert.match(end.stdout, new RegExp(`${pending} steps? remains? pending because tsup is shutting down`));
    assert.doesNotMatch(end.stdout, /PHASE │ watch/);
  });

  test("watch-update refuses paths the workflow does not care about", async () => {
    const p = fresh({ "plan.ts": `${imports}step("true", {});\n` });
    const bg = startTsup(p.dir);
    await ok(bg.control("wait"));
    writeFileSync(p.path("unrelated.txt"), "x");
    const r = await bg.control("watch-update", "unrelated.txt");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unrelated\.txt does not matter to the workflow/);
    await ok(bg.control("graph"));
    assert.match(p.read(".stepup/graph.txt"), /plan\.ts/);
    assert.match(p.read(".stepup/graph_supplier.dot"), /digraph/);
    await ok(bg.control("join"));
  });
});

describe("control commands without a watching tsup", () => {
  test("each says clearly that no tsup is running", async () => {
    const p = fresh({ "plan.ts": `${imports}` });
    for (const cmd of [["run"], ["wait"], ["join"], ["shutdown"], ["graph"], ["status"], ["watch-update", "plan.ts"]]) {
      const r = await tsup(p.dir, cmd);
      assert.equal(r.code, 1, `${cmd.join(" ")}: ${show(r)}`);
      assert.match(r.stderr, new RegExp(`tsup ${cmd[0]}: no tsup is running in `));
    }
  });

  test("with -n, run and watch-update are refused, wait returns when tsup exits", async () => {
    const p = fresh({ "plan.ts": `${imports}step("sleep 4", {});\n` });
    const bg = startTsup(p.dir, ["-n", "-w1"]);
    await bg.waitFor(/START │ sleep 4/);
    const run = await bg.control("run");
    assert.equal(run.code, 1);
    assert.match(run.stderr, /tsup runs with -n: it does not watch files/);
    const wait = await bg.control("wait");
    assert.equal(wait.code, 1);
    assert.match(wait.stderr, /exited before it started watching/);
    assert.equal((await bg.done).code, 0);
  });

  test("usage errors exit 2", async () => {
    const p = fresh({ "plan.ts": `${imports}` });
    const r = await tsup(p.dir, ["watch-update"]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /usage: tsup watch-update PATH/);
  });
});
