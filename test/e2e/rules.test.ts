// End-to-end: the graph rules (optional, blocked, volatile, directories, duplicates, cycles,
// cleaning) and the errors a plan can make.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { freshProjects, show, tsup, withAction } from "./harness.js";

const fresh = freshProjects();

const imports = `import { copy, declareStatic, glob, mkdir, plan, pool, step } from "tsup-flow";\n`;

describe("graph rules", () => {
  test("optional steps run only when something needs their outputs", async () => {
    const p = fresh({
      "plan.ts": `${imports}
for (const n of [1, 2, 3]) step(\`echo \${n} > \${"\${out}"}\`, { out: \`conv\${n}.txt\`, optional: true });
step("cat \${inp} > \${out}", { inp: "conv2.txt", out: "used.txt" });
`,
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(withAction(r, "START").sort(), ["./plan.ts", "cat conv2.txt > used.txt", "echo 2 > conv2.txt"]);
    assert.ok(!existsSync(p.path("conv1.txt")));
    // Needing another one later runs that one and cleans the one no longer needed.
    p.write("plan.ts", p.read("plan.ts").replace('"conv2.txt"', '"conv3.txt"'));
    const r2 = await tsup(p.dir);
    assert.equal(r2.code, 0, show(r2));
    assert.ok(withAction(r2, "START").includes("echo 3 > conv3.txt"), show(r2));
    assert.deepEqual(withAction(r2, "CLEAN"), ["conv2.txt"], show(r2));
    assert.ok(!existsSync(p.path("conv2.txt")));
  });

  test("blocked steps never run; their dependents are pending (exit 5)", async () => {
    const p = fresh({
      "plan.ts": `${imports}
step("echo b > \${out}", { out: "b.txt", block: true });
step("cat \${inp} > \${out}", { inp: "b.txt", out: "c.txt" });
step("echo free > \${out}", { out: "free.txt" });
`,
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 5, show(r));
    assert.ok(!existsSync(p.path("b.txt")));
    assert.ok(existsSync(p.path("free.txt")));
    assert.match(r.stdout, /WARNING │ 2 steps remain pending due to blocked steps/);
    // The block flag survives a restart in which the plan is skipped (StepUp bug 5).
    const r2 = await tsup(p.dir);
    assert.equal(r2.code, 5, show(r2));
    assert.ok(!existsSync(p.path("b.txt")), show(r2));
  });

  test("volatile outputs are cleaned when their step leaves the plan", async () => {
    const p = fresh({
      "plan.ts": `${imports}step("echo log > \${vol}; echo out > \${out}", { out: "o.txt", vol: "log.txt" });\n`,
    });
    assert.equal((await tsup(p.dir)).code, 0);
    assert.ok(existsSync(p.path("log.txt")));
    p.write("plan.ts", `${imports}\n`);
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(withAction(r, "CLEAN").sort(), ["log.txt", "o.txt"]);
    assert.ok(!existsSync(p.path("log.txt")) && !existsSync(p.path("o.txt")));
  });

  test("outputs of removed steps are cleaned, but not when modified by hand", async () => {
    const p = fresh({
      "plan.ts": `${imports}
step("echo 1 > \${out}", { out: "one.txt" });
step("echo 2 > \${out}", { out: "two.txt" });
step("echo 3 > \${out}", { out: "three.txt" });
`,
    });
    assert.equal((await tsup(p.dir)).code, 0);
    p.write("two.txt", "my own notes\n");
    p.write("plan.ts", `${imports}step("echo 1 > \${out}", { out: "one.txt" });\n`);
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(withAction(r, "CLEAN"), ["three.txt"]);
    assert.equal(p.read("two.txt"), "my own notes\n");
    assert.match(r.stdout, /Kept 1 obsolete output modified since tsup built it/);
  });

  test("cleaning waits for a complete build", async () => {
    const p = fresh({
      "plan.ts": `${imports}step("echo 1 > \${out}", { out: "one.txt" });\nstep("echo 2 > \${out}", { out: "two.txt" });\n`,
    });
    assert.equal((await tsup(p.dir)).code, 0);
    p.write("plan.ts", `${imports}step("echo 1 > \${out}", { out: "one.txt" });\nstep("false", {});\n`);
    const failing = await tsup(p.dir);
    assert.equal(failing.code, 4, show(failing));
    assert.deepEqual(withAction(failing, "CLEAN"), []);
    assert.match(failing.stdout, /Skipping cleanup due to incomplete build/);
    assert.ok(existsSync(p.path("two.txt")));
    // Once the build is complete again, the old output is cleaned after all.
    p.write("plan.ts", `${imports}step("echo 1 > \${out}", { out: "one.txt" });\n`);
    const fixed = await tsup(p.dir);
    assert.equal(fixed.code, 0, show(fixed));
    assert.deepEqual(withAction(fixed, "CLEAN"), ["two.txt"]);
  });

  test("outputs go only into declared or built directories", async () => {
    const p = fresh({
      "plan.ts": `${imports}
step("echo x > \${out}", { out: "undeclared/x.txt" });
mkdir("made");
step("echo y > \${out}", { out: "made/y.txt" });
`,
    });
    p.write("undeclared/.keep", "");
    const r = await tsup(p.dir);
    assert.equal(r.code, 5, show(r));
    assert.equal(p.read("made/y.txt"), "y\n");
    assert.match(r.stdout, /1 step remains pending due to incomplete requirements/);
    assert.match(r.stdout, /\(undeclared\/\)\s+not declared static and not built by any step/);
  });

  test("a declared static directory may hold outputs; static parents are declared implicitly", async () => {
    const p = fresh({
      "plan.ts": `${imports}
declareStatic("data/raw/input.txt");
step("cp \${inp} \${out}", { inp: "data/raw/input.txt", out: "data/copy.txt" });
`,
      "data/raw/input.txt": "in\n",
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("data/copy.txt"), "in\n");
  });

  test("two steps with the same output: error naming the plan line", async () => {
    const p = fresh({
      "plan.ts": `${imports}step("echo a > \${out}", { out: "x.txt" });\nstep("echo b > \${out}", { out: "x.txt" });\n`,
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /plan\.ts:3:1: error: x\.txt is already an output of step `echo a > x\.txt`/);
  });

  test("a cycle is an error that prints the cycle", async () => {
    const p = fresh({
      "plan.ts": `${imports}
copy("a.txt", "b.txt");
copy("b.txt", "c.txt");
copy("c.txt", "a.txt");
`,
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /plan\.ts:5:1: error: this step would close a dependency cycle:/);
    assert.match(r.stdout, /-> a\.txt\n\s+-> step `cp -fp a\.txt b\.txt`\n\s+-> b\.txt/);
  });

  test("a static path that does not exist: error naming the plan line", async () => {
    const p = fresh({ "plan.ts": `${imports}\n\ndeclareStatic("missing.txt");\n` });
    const r = await tsup(p.dir);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /plan\.ts:4:1: error: static path does not exist: missing\.txt/);
    assert.doesNotMatch(r.stdout, /at .*(dist|src)\/api/);
  });

  test("a directory declared without trailing slash is a clear error", async () => {
    const p = fresh({ "plan.ts": `${imports}declareStatic("sub");\n` });
    p.write("sub/x", "");
    const r = await tsup(p.dir);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /plan\.ts:2:1: error: sub is a directory: write it with a trailing slash/);
  });

  test("an unknown step option is rejected", async () => {
    const p = fresh({ "plan.ts": `${imports}step("true", { inputs: ["a"] } as never);\n` });
    const r = await tsup(p.dir);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /plan\.ts:2:1: error: step\(\) has no option "inputs"/);
  });

  test("a NUL character in a command or a path is an error naming the plan line", async () => {
    for (const [call, message] of [
      ['step("echo a\\u0000b > x");', /plan\.ts:2:1: error: a step's command cannot contain a NUL character/],
      ['step("cp ${inp} x", { inp: "a\\u0000b" });', /plan\.ts:2:1: error: inp: a path cannot contain a NUL character: "a\\u0000b"/],
    ] as const) {
      const p = fresh({ "plan.ts": `${imports}${call}\n` });
      const r = await tsup(p.dir);
      assert.equal(r.code, 3, show(r));
      assert.match(r.stdout, message);
      assert.equal(withAction(r, "START").length, 1, show(r));
    }
  });

  test("a crashing plan keeps what it declared before the crash and fails with exit 3", async () => {
    const p = fresh({
      "plan.ts": `${imports}step("echo ok > \${out}", { out: "ok.txt" });\nthrow new Error("boom in my plan");\n`,
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /FAIL │ \.\/plan\.ts/);
    assert.match(r.stdout, /Error: boom in my plan/);
    assert.equal(p.read("ok.txt"), "ok\n");
  });

  test("sub-plans run in their folder with paths relative to it", async () => {
    const p = fresh({
      "plan.ts": `${imports}plan("sub");\n`,
      "sub/plan.ts": `${imports}declareStatic("in.txt");\ncopy("in.txt", "out.txt");\n`,
      "sub/in.txt": "sub input\n",
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("sub/out.txt"), "sub input\n");
    assert.ok(withAction(r, "SUCCESS").includes("./plan.ts  # wd=sub/"), show(r));
    assert.ok(withAction(r, "SUCCESS").includes("cp -fp in.txt out.txt  # wd=sub/"), show(r));
    const again = await tsup(p.dir);
    assert.deepEqual(withAction(again, "START"), [], show(again));
  });

  test("glob() with named wildcards pairs files; a plan using it reruns when matches change", async () => {
    const p = fresh({
      "plan.ts": `${imports}
for (const m of glob("data/\${*name}.csv", "meta/\${*name}.txt")) {
  step("cat \${inp} > \${out}", { inp: [m.file(0), m.file(1)], out: \`out/\${m.values.name}.txt\` });
}
if (glob("optional.flag").isEmpty()) step("echo no flag > \${out}", { out: "out/flag.txt" });
`,
      "data/a.csv": "a\n",
      "data/b.csv": "b\n",
      "meta/a.txt": "meta a\n",
      "out/.keep": "",
    });
    p.write("plan.ts", p.read("plan.ts").replace(`${imports}`, `${imports}declareStatic("out/");\n`));
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("out/a.txt"), "a\nmeta a\n");
    assert.ok(!existsSync(p.path("out/b.txt")), "b has no meta file: not a consistent match");
    assert.equal(p.read("out/flag.txt"), "no flag\n");
    const same = await tsup(p.dir);
    assert.deepEqual(withAction(same, "START"), [], show(same));
    p.write("meta/b.txt", "meta b\n");
    const more = await tsup(p.dir);
    assert.equal(more.code, 0, show(more));
    assert.ok(withAction(more, "START").includes("./plan.ts"), show(more));
    assert.equal(p.read("out/b.txt"), "b\nmeta b\n");
    assert.ok(withAction(more, "SKIP").includes("cat data/a.csv meta/a.txt > out/a.txt"), show(more));
  });

  test("pools defined by a skipped plan still apply", async () => {
    const p = fresh({
      "plan.ts": `${imports}pool("one", 1);\nstep("cat \${inp} > \${out}", { inp: "i.txt", out: "o.txt", pool: "one" });\n`,
      "i.txt": "1\n",
    });
    p.write("plan.ts", p.read("plan.ts").replace(`${imports}`, `${imports}declareStatic("i.txt");\n`));
    assert.equal((await tsup(p.dir)).code, 0);
    p.write("i.txt", "2\n");
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(withAction(r, "START"), ["cat i.txt > o.txt"]);
    assert.equal(p.read("o.txt"), "2\n");
  });
});
