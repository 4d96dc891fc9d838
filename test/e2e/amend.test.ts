// End-to-end: steps that declare more about themselves while they run (amend), in TypeScript,
// shell and Python, and how that is replayed on the next run.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import { BIN, freshProjects, show, tsup, withAction } from "./harness.js";

const fresh = freshProjects();

const usesGen = `
import { declareStatic, getenv, step } from "tsup-flow";
declareStatic("use.ts");
step("./use.ts", { inp: "use.ts" });
step(\`sleep 1; echo \${getenv("GEN", "gen")} > \${"\${out}"}\`, { out: "gen.txt" });
`;
const useTs = `
import { readFileSync, writeFileSync } from "node:fs";
import { amend } from "tsup-flow";
if (!(await amend({ inp: "gen.txt", out: "copy.txt" }))) process.exit(0);
writeFileSync("copy.txt", readFileSync("gen.txt", "utf8").toUpperCase());
`;

describe("amend()", () => {
  test("an input that does not exist yet: RESCHEDULE, producer runs, step runs again", async () => {
    const p = fresh({ "plan.ts": usesGen, "use.ts": useTs });
    const r = await tsup(p.dir, ["-n", "-w2"]);
    assert.equal(r.code, 0, show(r));
    const seq = r.lines.filter(([, d]) => d === "./use.ts" || d.startsWith("sleep 1")).map(([a, d]) => `${a} ${d}`);
    assert.deepEqual(seq, [
      "START ./use.ts",
      "START sleep 1; echo gen > gen.txt",
      "RESCHEDULE ./use.ts",
      "SUCCESS sleep 1; echo gen > gen.txt",
      "START ./use.ts",
      "SUCCESS ./use.ts",
    ]);
    assert.match(r.stdout, /─ Rescheduling due to unavailable amended inputs ─+\ngen\.txt\n/);
    assert.equal(p.read("copy.txt"), "GEN\n");
  });

  test("amended inputs are replayed: unchanged skips, changed reruns", async () => {
    const p = fresh({ "plan.ts": usesGen, "use.ts": useTs });
    assert.equal((await tsup(p.dir, ["-n", "-w2"])).code, 0);
    const again = await tsup(p.dir, ["-n", "-w2"]);
    assert.equal(again.code, 0, show(again));
    assert.deepEqual(withAction(again, "START"), [], show(again));
    const changed = await tsup(p.dir, ["-n", "-w2", "-e"], { env: { GEN: "other" } });
    assert.equal(changed.code, 0, show(changed));
    // The step waits for the new gen.txt up front: no RESCHEDULE this time.
    assert.deepEqual(withAction(changed, "RESCHEDULE"), [], show(changed));
    assert.ok(withAction(changed, "START").includes("./use.ts"), show(changed));
    assert.match(changed.stdout, /Modified input\s+gen\.txt/);
    assert.equal(p.read("copy.txt"), "OTHER\n");
  });

  test("a deleted amended input is rebuilt by its producer and the step is skipped", async () => {
    const p = fresh({ "plan.ts": usesGen, "use.ts": useTs });
    assert.equal((await tsup(p.dir, ["-n", "-w2"])).code, 0);
    rmSync(p.path("gen.txt"));
    const r = await tsup(p.dir, ["-n", "-w2"]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(withAction(r, "START"), ["sleep 1; echo gen > gen.txt"], show(r));
    assert.ok(withAction(r, "SKIP").includes("./use.ts"), show(r));
  });

  test("when the producer of an amended input leaves the plan, the step runs again and waits", async () => {
    const p = fresh({ "plan.ts": usesGen, "use.ts": useTs });
    assert.equal((await tsup(p.dir, ["-n", "-w2"])).code, 0);
    rmSync(p.path("gen.txt"));
    p.write("plan.ts", usesGen.replace(/^step\(`sleep.*$/m, ""));
    const r = await tsup(p.dir, ["-n", "-w2"]);
    assert.equal(r.code, 5, show(r));
    assert.deepEqual(withAction(r, "RESCHEDULE"), ["./use.ts"], show(r));
    assert.match(r.stdout, /1 step remains pending/);
  });

  test("editing an amended static input between runs reruns the step", async () => {
    const p = fresh({
      "plan.ts": `import { declareStatic, step } from "tsup-flow";\ndeclareStatic("read.ts", "config.txt");\nstep("./read.ts", { inp: "read.ts" });\n`,
      "read.ts": `import { readFileSync, writeFileSync } from "node:fs";\nimport { amend } from "tsup-flow";\nawait amend({ inp: "config.txt", out: "out.txt" });\nwriteFileSync("out.txt", readFileSync("config.txt"));\n`,
      "config.txt": "one\n",
    });
    assert.equal((await tsup(p.dir)).code, 0);
    const same = await tsup(p.dir);
    assert.deepEqual(withAction(same, "START"), [], show(same));
    p.write("config.txt", "two\n");
    const edited = await tsup(p.dir);
    assert.deepEqual(withAction(edited, "START"), ["./read.ts"], show(edited));
    assert.equal(p.read("out.txt"), "two\n");
  });

  test("a step that declares steps and is rescheduled may declare them again", async () => {
    const p = fresh({
      "plan.ts": [
        'import { amend, plan, step } from "tsup-flow";',
        'plan("gen");',
        'step("echo side > ${out}", { out: "side.txt" });',
        'if (!(await amend({ inp: "late.txt" }))) process.exit(0);',
        'step("cat late.txt > ${out}", { inp: "late.txt", out: "copy.txt" });',
        "",
      ].join("\n"),
      "gen/plan.ts": 'import { step } from "tsup-flow";\nstep("sleep 0.5; echo late > ${out}", { out: "../late.txt" });\n',
    });
    const r = await tsup(p.dir, ["-n", "-w2"]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(withAction(r, "RESCHEDULE"), ["./plan.ts"], show(r));
    assert.equal(p.read("copy.txt"), "late\n");
    // The plan waits for its amended input, which only a step it defines itself produces: tsup
    // sees that nothing else can run, drops the outdated amendment and runs the plan again
    // (which may be rescheduled once more, depending on timing); everything else is skipped.
    const again = await tsup(p.dir, ["-n", "-w2"]);
    assert.equal(again.code, 0, show(again));
    assert.ok(withAction(again, "START").every((d) => d === "./plan.ts"), show(again));
    assert.ok(withAction(again, "SKIP").includes("cat late.txt > copy.txt"), show(again));
  });

  test("a rejected amend names the line in the step", async () => {
    const p = fresh({
      "plan.ts": `import { declareStatic, step } from "tsup-flow";\ndeclareStatic("bad.ts");\nstep("echo x > \${out}", { out: "taken.txt" });\nstep("./bad.ts", { inp: "bad.ts" });\n`,
      "bad.ts": `import { amend } from "tsup-flow";\n\nawait amend({ out: "taken.txt" });\n`,
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 4, show(r));
    assert.match(r.stdout, /bad\.ts:3:\d+: error: taken\.txt is already an output of step `echo x > taken\.txt`/);
  });
});

describe("tsup act: amend from any language", () => {
  test("a shell step and a Python step amend themselves", async () => {
    const p = fresh({
      "plan.ts": `import { declareStatic, step } from "tsup-flow";\ndeclareStatic("use.sh", "use.py");\nstep("./use.sh", { inp: "use.sh" });\nstep("./use.py", { inp: "use.py" });\nstep("sleep 1; echo gen > \${out}", { out: "gen.txt" });\n`,
    });
    p.write("use.sh", `#!/bin/sh\ntsup act amend --inp gen.txt --out sh.txt || exit 0\ntr a-z A-Z < gen.txt > sh.txt\n`, 0o755);
    p.write(
      "use.py",
      `#!/usr/bin/env python3\nimport subprocess, sys\nr = subprocess.run(["tsup", "act", "amend", "--inp", "gen.txt", "--out", "py.txt"])\nif r.returncode == 75:\n    sys.exit(0)\nr.check_returncode()\nopen("py.txt", "w").write(open("gen.txt").read()[::-1])\n`,
      0o755,
    );
    const r = await tsup(p.dir, ["-n", "-w3"]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(withAction(r, "RESCHEDULE").sort(), ["./use.py", "./use.sh"], show(r));
    assert.equal(p.read("sh.txt"), "GEN\n");
    assert.equal(p.read("py.txt"), "\nneg");
    const again = await tsup(p.dir, ["-n", "-w3"]);
    assert.deepEqual(withAction(again, "START"), [], show(again));
  });

  test("outside a tsup step it says so", () => {
    const env = { ...process.env };
    delete env["TSUP_DIRECTOR_SOCKET"];
    const r = spawnSync(process.execPath, [BIN, "act", "amend", "--inp", "x"], { env, encoding: "utf8" });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /not running inside a tsup step/);
  });
});

describe("paths with env vars, repeated globs", () => {
  test("${VAR} in paths is substituted and makes the plan depend on VAR", async () => {
    const p = fresh({
      "plan.ts": `import { step } from "tsup-flow";\nstep("echo hi > \${out}", { out: "\${NAME}.txt" });\n`,
    });
    const r = await tsup(p.dir, ["-n"], { env: { NAME: "first" } });
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("first.txt"), "hi\n");
    const r2 = await tsup(p.dir, ["-n"], { env: { NAME: "second" } });
    assert.ok(withAction(r2, "START").includes("./plan.ts"), show(r2));
    assert.equal(p.read("second.txt"), "hi\n");
    assert.deepEqual(withAction(r2, "CLEAN"), ["first.txt"]);
  });

  test("an undefined variable in a path is an error naming the plan line", async () => {
    const p = fresh({ "plan.ts": `import { step } from "tsup-flow";\n\nstep("true", { out: "\${NOPE_NOT_SET}/x" });\n` });
    const r = await tsup(p.dir, ["-n"], { env: { NOPE_NOT_SET: undefined } });
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /plan\.ts:3:1: error: undefined environment variable NOPE_NOT_SET/);
  });

  test("two globs (and a static declaration) may match the same file", async () => {
    const p = fresh({
      "plan.ts": `import { declareStatic, glob, step } from "tsup-flow";\ndeclareStatic("a.txt");\nconst x = glob("*.txt");\nconst y = glob("a.*");\nstep(\`cat \${x.files().join(" ")} \${y.files().join(" ")} > \${"\${out}"}\`, { inp: [...x.files(), ...y.files()], out: "all.out" });\n`,
      "a.txt": "a\n",
      "b.txt": "b\n",
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("all.out"), "a\nb\na\n");
  });
});

describe("tsup act paths", () => {
  test("a path outside the root names the same file as the plan API", async () => {
    const outer = fresh();
    const p = { dir: `${outer.dir}/proj` };
    mkdirSync(p.dir);
    writeFileSync(
      `${p.dir}/plan.ts`,
      'import { declareStatic, step } from "tsup-flow";\ndeclareStatic("../", "use.sh");\nstep("sleep 0.5; echo out > ${out}", { out: "../shared.txt" });\nstep("./use.sh", { inp: "use.sh" });\n',
    );
    writeFileSync(`${p.dir}/use.sh`, "#!/bin/sh\ntsup act amend --inp ../shared.txt --out got.txt || exit 0\ncp ../shared.txt got.txt\n");
    chmodSync(`${p.dir}/use.sh`, 0o755);
    const r = await tsup(p.dir, ["-n", "-w2"]);
    assert.equal(r.code, 0, show(r));
    assert.equal(readFileSync(`${p.dir}/got.txt`, "utf8"), "out\n");
  });
});
