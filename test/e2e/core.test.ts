// End-to-end: the bundled example, skipping, pools and planning while building.
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { freshProjects, parseLines, REPO, show, tsup, withAction } from "./harness.js";

const fresh = freshProjects();

/** Copy an example as a newcomer gets it: without the state of an earlier run in the repo. */
function copyExample(name: string, dir: string): void {
  cpSync(join(REPO, "examples", name), dir, { recursive: true, filter: (src) => !src.includes("/.stepup") });
}

describe("the bundled limerick example", () => {
  test("builds, then skips everything on a second run", async () => {
    const p = fresh();
    copyExample("limerick", p.dir);
    const first = await tsup(p.dir, ["-n", "-w4"]);
    assert.equal(first.code, 0, show(first));
    assert.deepEqual(withAction(first, "START").slice(0, 1), ["./plan.ts"]);
    assert.equal(withAction(first, "SUCCESS").length, 6, show(first));
    assert.match(p.read("numbered.txt"), /^\s+1\tThere was an Old Man with a beard,/);
    assert.equal(Number(p.read("words.txt").trim()), p.read("numbered.txt").split(/\s+/).filter(Boolean).length);
    assert.ok(existsSync(p.path(".stepup/workflow.mpk.xz")));

    const second = await tsup(p.dir, ["-n", "-w4"]);
    assert.equal(second.code, 0, show(second));
    assert.deepEqual(withAction(second, "START"), [], show(second));
    assert.equal(withAction(second, "SKIP").length, 6, show(second));
    assert.equal(withAction(second, "SKIP")[0], "./plan.ts");
  });
});

describe("every bundled example", () => {
  for (const name of readdirSync(join(REPO, "examples"))) {
    test(`examples/${name} builds and then skips everything`, async () => {
      const p = fresh();
      copyExample(name, p.dir);
      const first = await tsup(p.dir, ["-n", "-w4"]);
      assert.equal(first.code, 0, show(first));
      const second = await tsup(p.dir, ["-n", "-w4"]);
      assert.equal(second.code, 0, show(second));
      assert.deepEqual(withAction(second, "START"), [], show(second));
      assert.ok(withAction(second, "SKIP").length >= 2, show(second));
    });
  }
});

describe("skipping", () => {
  const plan = `
import { declareStatic, step } from "tsup-flow";
declareStatic("a.txt", "b.txt");
step("tr a-z A-Z < \${inp} > \${out}", { inp: "a.txt", out: "A.txt" });
step("tr a-z A-Z < \${inp} > \${out}", { inp: "b.txt", out: "B.txt" });
step("cat \${inp} > \${out}", { inp: ["A.txt", "B.txt"], out: "AB.txt" });
`;

  test("reruns exactly the steps whose inputs changed and their dependents", async () => {
    const p = fresh({ "plan.ts": plan, "a.txt": "apple\n", "b.txt": "banana\n" });
    const first = await tsup(p.dir);
    assert.equal(first.code, 0, show(first));
    assert.equal(p.read("AB.txt"), "APPLE\nBANANA\n");

    p.write("a.txt", "avocado\n");
    const second = await tsup(p.dir);
    assert.equal(second.code, 0, show(second));
    assert.deepEqual(withAction(second, "START").sort(), ["cat A.txt B.txt > AB.txt", "tr a-z A-Z < a.txt > A.txt"]);
    assert.deepEqual(withAction(second, "SKIP").sort(), ["./plan.ts", "tr a-z A-Z < b.txt > B.txt"]);
    assert.equal(p.read("AB.txt"), "AVOCADO\nBANANA\n");
  });

  test("an output with the same content as before does not rerun its dependents", async () => {
    const p = fresh({ "plan.ts": plan, "a.txt": "apple\n", "b.txt": "banana\n" });
    assert.equal((await tsup(p.dir)).code, 0);
    p.write("a.txt", "APPLE\n"); // upper-cases to the same A.txt
    const second = await tsup(p.dir);
    assert.deepEqual(withAction(second, "START"), ["tr a-z A-Z < a.txt > A.txt"], show(second));
    assert.ok(withAction(second, "SKIP").includes("cat A.txt B.txt > AB.txt"));
  });

  test("touching a file without changing it skips; changing its mode reruns", async () => {
    const p = fresh({ "plan.ts": plan, "a.txt": "apple\n", "b.txt": "banana\n" });
    assert.equal((await tsup(p.dir)).code, 0);
    // A run whose reruns are recorded in the journal alone, which the touched run would extend.
    p.write("b.txt", "blueberry\n");
    const journaled = await tsup(p.dir);
    assert.match(journaled.stdout, /Recorded in \.stepup\/workflow\.journal/, show(journaled));
    const later = new Date(Date.now() + 5000);
    utimesSync(p.path("a.txt"), later, later);
    const touched = await tsup(p.dir);
    assert.deepEqual(withAction(touched, "START"), [], show(touched));
    // The new mtime is saved (no journal entry holds it), so that later runs trust the stat again
    // instead of reading the file every time (a checkout touches thousands): the next run writes
    // nothing.
    assert.match(touched.stdout, /Dumped to \.stepup\/workflow\.mpk\.xz/, show(touched));
    const after = await tsup(p.dir);
    assert.deepEqual(withAction(after, "START"), [], show(after));
    assert.doesNotMatch(after.stdout, /Dumped|Recorded/, show(after));
    p.write("b.txt", "blueberry\n", 0o600);
    const chmodded = await tsup(p.dir);
    assert.ok(withAction(chmodded, "START").includes("tr a-z A-Z < b.txt > B.txt"), show(chmodded));
  });

  test("a static file that no step reads is checked with stat() alone: no run reads or records it", async () => {
    const p = fresh({
      "plan.ts": `
import { declareStatic, step } from "tsup-flow";
declareStatic("a.txt", "README.txt");
step("cp a.txt b.txt", { inp: "a.txt", out: "b.txt" });
`,
      "a.txt": "apple\n",
      "README.txt": "read me\n",
    });
    assert.equal((await tsup(p.dir)).code, 0);
    for (let run = 0; run < 2; run++) {
      const noop = await tsup(p.dir);
      assert.deepEqual(withAction(noop, "START"), [], show(noop));
      assert.doesNotMatch(noop.stdout, /Dumped|Recorded/, show(noop));
    }
    // Edited, it reruns nothing and changes nothing tsup records: no step reads it.
    p.write("README.txt", "read me again, it is longer now\n");
    const edited = await tsup(p.dir);
    assert.deepEqual(withAction(edited, "START"), [], show(edited));
    assert.doesNotMatch(edited.stdout, /Dumped|Recorded/, show(edited));
  });

  test("a deleted or hand-edited output makes its step run again", async () => {
    const p = fresh({ "plan.ts": plan, "a.txt": "apple\n", "b.txt": "banana\n" });
    assert.equal((await tsup(p.dir)).code, 0);
    p.write("AB.txt", "edited by hand\n");
    const edited = await tsup(p.dir, ["-n", "-w2", "-e"]);
    assert.deepEqual(withAction(edited, "START"), ["cat A.txt B.txt > AB.txt"], show(edited));
    assert.match(edited.stdout, /Modified output\s+AB\.txt/);
    assert.equal(p.read("AB.txt"), "APPLE\nBANANA\n");
  });

  test("env vars listed by a step are part of its fingerprint", async () => {
    const p = fresh({
      "plan.ts": `import { step } from "tsup-flow";\nstep("echo $GREETING > \${out}", { out: "g.txt", env: "GREETING" });\n`,
    });
    assert.equal((await tsup(p.dir, ["-n"], { env: { GREETING: "hi" } })).code, 0);
    assert.equal(p.read("g.txt"), "hi\n");
    const same = await tsup(p.dir, ["-n"], { env: { GREETING: "hi" } });
    assert.deepEqual(withAction(same, "START"), []);
    const changed = await tsup(p.dir, ["-n", "-e"], { env: { GREETING: "hello" } });
    assert.deepEqual(withAction(changed, "START"), ["echo $GREETING > g.txt"], show(changed));
    assert.match(changed.stdout, /Modified env var\s+GREETING 'hi' ➜ 'hello'/);
    assert.equal(p.read("g.txt"), "hello\n");
  });

  test("getenv() makes the plan depend on the variable", async () => {
    const p = fresh({
      "plan.ts": `import { getenv, step } from "tsup-flow";\nconst n = getenv("COUNT", "1");\nstep(\`seq \${n} > \${"\${out}"}\`, { out: "seq.txt" });\n`,
    });
    assert.equal((await tsup(p.dir, ["-n"], { env: { COUNT: "2" } })).code, 0);
    assert.equal(p.read("seq.txt"), "1\n2\n");
    const same = await tsup(p.dir, ["-n"], { env: { COUNT: "2" } });
    assert.deepEqual(withAction(same, "START"), [], show(same));
    const changed = await tsup(p.dir, ["-n"], { env: { COUNT: "3" } });
    assert.ok(withAction(changed, "START").includes("./plan.ts"), show(changed));
    assert.equal(p.read("seq.txt"), "1\n2\n3\n");
    // The old step (seq 2) left the plan: its output was replaced by the new step's, not cleaned.
    assert.ok(existsSync(p.path("seq.txt")));
  });
});

describe("planning while building", () => {
  test("a step starts before plan.ts has finished", async () => {
    // The plan waits (up to 20 s) for a file that only its first step creates.
    const p = fresh({
      "plan.ts": `
import { existsSync } from "node:fs";
import { step } from "tsup-flow";
step("echo early > \${out}", { out: "early.txt" });
const start = Date.now();
while (!existsSync("early.txt")) {
  if (Date.now() - start > 20000) throw new Error("the step did not start while the plan ran");
  await new Promise((r) => setTimeout(r, 20));
}
step("cat early.txt > \${out}", { inp: "early.txt", out: "late.txt" });
`,
    });
    const r = await tsup(p.dir, ["-n", "-w2"]);
    assert.equal(r.code, 0, show(r));
    const order = r.lines.map(([a, d]) => `${a} ${d}`);
    assert.ok(order.indexOf("START echo early > early.txt") < order.indexOf("SUCCESS ./plan.ts"), show(r));
    assert.equal(p.read("late.txt"), "early\n");
  });

  test("while plan.ts runs, every lane's launcher shell is up already", async () => {
    // The plan's parent is its lane's launcher shell, whose parent is the director: the plan
    // counts the director's shells. The other lanes start theirs when the plan starts, so that
    // its first steps do not wait for them.
    const p = fresh({
      "plan.ts": `
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
const fields = (pid: string | number): string[] => {
  const s = readFileSync(\`/proc/\${pid}/stat\`, "utf8");
  return [s.slice(s.indexOf("(") + 1, s.lastIndexOf(")")), ...s.slice(s.lastIndexOf(")") + 2).split(" ")];
};
const director = fields(process.ppid)[2];
let shells = 0;
for (const pid of readdirSync("/proc")) {
  if (!/^[0-9]+$/.test(pid)) continue;
  try {
    const [comm, , ppid] = fields(pid);
    if (ppid === director && comm === "sh") shells++;
  } catch {
    // Gone meanwhile.
  }
}
writeFileSync("shells.txt", String(shells));
`,
    });
    const r = await tsup(p.dir, ["-n", "-w3"]);
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("shells.txt"), "3");
  });

  test("a step that must run starts as soon as its skip check fails, before the checks after it", async () => {
    // 40 steps replayed from a skipped plan are checked in one go, in definition order. The one
    // whose input changed must not wait for the 30 checks after it: with 100,000 steps those
    // take seconds.
    const files: Record<string, string> = {
      "plan.ts": `
import { declareStatic, step } from "tsup-flow";
const n = 40;
declareStatic(...Array.from({ length: n }, (_, i) => \`in\${i}.txt\`));
for (let i = 0; i < n; i++) step("cp \${inp} \${out}", { inp: \`in\${i}.txt\`, out: \`out\${i}.txt\` });
`,
    };
    for (let i = 0; i < 40; i++) files[`in${i}.txt`] = `${i}\n`;
    const p = fresh(files);
    const first = await tsup(p.dir, ["-n", "-w1"]);
    assert.equal(first.code, 0, show(first));
    p.write("in9.txt", "nine\n");
    const second = await tsup(p.dir, ["-n", "-w1"]);
    assert.equal(second.code, 0, show(second));
    const order = second.lines.map(([a, d]) => `${a} ${d}`);
    assert.deepEqual(withAction(second, "START"), ["cp in9.txt out9.txt"]);
    // The plan and the 39 other steps: every SKIP line looked up below is there.
    assert.equal(withAction(second, "SKIP").length, 40, show(second));
    const started = order.indexOf("START cp in9.txt out9.txt");
    assert.ok(order.indexOf("SKIP cp in8.txt out8.txt") < started, show(second));
    assert.ok(started < order.indexOf("SKIP cp in39.txt out39.txt"), show(second));
    assert.equal(p.read("out9.txt"), "nine\n");
  });

  test("the API import resolves when the project has tsup-flow as a dependency too", async () => {
    const p = fresh({
      "plan.ts": `import { step } from "tsup-flow";\nstep("echo dep > \${out}", { out: "dep.txt" });\n`,
    });
    mkdirSync(p.path("node_modules"));
    symlinkSync(REPO, p.path("node_modules/tsup-flow"));
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("dep.txt"), "dep\n");
  });

  test("plan.ts may use TypeScript-only syntax on Node 20", async () => {
    const p = fresh({
      "plan.ts": `
import { step, type StepOptions } from "tsup-flow";
interface Job { name: string; size: number }
enum Kind { Small = "small" }
const jobs: Job[] = [{ name: "x", size: 1 }];
const opts = (j: Job): StepOptions => ({ out: \`\${j.name}-\${Kind.Small}.txt\` });
for (const j of jobs) step("touch \${out}", opts(j));
`,
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.ok(existsSync(p.path("x-small.txt")));
  });
});

describe("the environment of a step", () => {
  test("HERE, ROOT, TSUP_ROOT and the tsup shim on PATH, in the root and in a workdir", async () => {
    const p = fresh({
      "plan.ts": `
import { declareStatic, step } from "tsup-flow";
declareStatic("sub/a/");
const show = 'echo "$HERE|$ROOT|$TSUP_ROOT|$(command -v tsup)"';
step(show + " > root.txt", { out: "root.txt" });
step(show + " > deep.txt", { out: "deep.txt", workdir: "sub/a" });
`,
    });
    mkdirSync(p.path("sub/a"), { recursive: true });
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    const [here, root, tsupRoot, shim] = p.read("root.txt").trim().split("|");
    assert.deepEqual([here, root, tsupRoot], [".", ".", p.dir]);
    assert.match(shim!, /\/bin\/tsup$/);
    assert.ok(!shim!.startsWith(p.dir), "the shim lives in the director's private folder");
    assert.equal(p.read("sub/a/deep.txt"), `sub/a|../..|${p.dir}|${shim}\n`);
  });
});

describe("pools", () => {
  test("a pool of 2 delays the third step; a rerun skips all three at once", async () => {
    const p = fresh({
      "plan.ts": `
import { pool, step } from "tsup-flow";
pool("test", 2);
for (const c of ["A", "B", "C"]) {
  step(\`echo start \${c} $(date +%s%N) >> ../log.txt; sleep 0.6; echo end \${c} $(date +%s%N) >> ../log.txt; echo \${c}\`, { pool: "test", workdir: "w" });
}
`,
    });
    mkdirSync(p.path("w"));
    p.write("plan.ts", p.read("plan.ts").replace('import { pool, step } from "tsup-flow";', 'import { declareStatic, pool, step } from "tsup-flow";\ndeclareStatic("w/");'));
    const r = await tsup(p.dir, ["-n", "-w4"]);
    assert.equal(r.code, 0, show(r));
    const events = readFileSync(p.path("log.txt"), "utf8")
      .trim()
      .split("\n")
      .map((l) => l.split(" "))
      .map(([what, name, ns]) => ({ what: what!, name: name!, t: BigInt(ns!) }));
    const starts = events.filter((e) => e.what === "start").sort((a, b) => (a.t < b.t ? -1 : 1));
    const ends = events.filter((e) => e.what === "end").sort((a, b) => (a.t < b.t ? -1 : 1));
    assert.equal(starts.length, 3);
    // The third start comes after the first end; the first two overlap.
    assert.ok(starts[2]!.t >= ends[0]!.t, `third step started before a slot was free: ${JSON.stringify(events.map((e) => [e.what, e.name, String(e.t)]))}`);
    assert.ok(starts[1]!.t < ends[0]!.t, "the first two steps did not run together");

    const again = await tsup(p.dir, ["-n", "-w4"]);
    assert.equal(again.code, 0, show(again));
    assert.equal(withAction(again, "SKIP").length, 4, show(again));
    assert.ok(again.ms < 5000);
  });

  test("a step of a full pool that waits behind a long step does not wait for it to end", async () => {
    // Steps of a full pool wait on the lanes of its running steps, to take over their slots
    // without a round trip through the director. One that happened to pick the lane of a long
    // step must not wait there while the pool has a slot for it elsewhere: S2 waits behind L.
    const timed = (name: string, seconds: number): string =>
      `step(\`echo start ${name} $(date +%s%N) >> log.txt; sleep ${seconds}; echo end ${name} $(date +%s%N) >> log.txt\`, { pool: "p" });`;
    const events = (p: ReturnType<typeof fresh>): Map<string, { start: bigint; end: bigint }> => {
      const out = new Map<string, { start: bigint; end: bigint }>();
      for (const line of p.read("log.txt").trim().split("\n")) {
        const [what, name, ns] = line.split(" ");
        const e = out.get(name!) ?? { start: -1n, end: -1n };
        if (what === "start") e.start = BigInt(ns!);
        else e.end = BigInt(ns!);
        out.set(name!, e);
      }
      return out;
    };
    const mostAtOnce = (ev: Map<string, { start: bigint; end: bigint }>): number => {
      const edges = [...ev.values()].flatMap((e) => [{ t: e.start, d: 1 }, { t: e.end, d: -1 }]);
      edges.sort((a, b) => (a.t === b.t ? a.d - b.d : a.t < b.t ? -1 : 1));
      let now = 0;
      let most = 0;
      for (const e of edges) most = Math.max(most, (now += e.d));
      return most;
    };
    const describeAll = (ev: Map<string, { start: bigint; end: bigint }>): string =>
      JSON.stringify([...ev].map(([n, e]) => [n, String(e.start), String(e.end)]));

    // The queue runs dry while S2 still waits behind L: it takes the free slot on an idle lane.
    const few = fresh({
      "plan.ts": `import { pool, step } from "tsup-flow";\npool("p", 2);\n${timed("L", 2.5)}\n${["S1", "S2", "S3"].map((n) => timed(n, 0.2)).join("\n")}\n`,
    });
    const r = await tsup(few.dir, ["-n", "-w4"]);
    assert.equal(r.code, 0, show(r));
    const ev = events(few);
    assert.equal(ev.size, 4);
    assert.ok(mostAtOnce(ev) <= 2, `more than 2 steps of the pool at once: ${describeAll(ev)}`);
    for (const n of ["S1", "S2", "S3"]) {
      assert.ok(ev.get(n)!.end < ev.get("L")!.end, `${n} waited for the long step: ${describeAll(ev)}`);
    }

    // The other lane keeps going through the queue: S2 moves behind one of its steps.
    const many = fresh({
      "plan.ts": `import { pool, step } from "tsup-flow";\npool("p", 2);\n${timed("L", 2.5)}\n${Array.from({ length: 8 }, (_, i) => timed(`S${i + 1}`, 0.15)).join("\n")}\n`,
    });
    const m = await tsup(many.dir, ["-n", "-w4"]);
    assert.equal(m.code, 0, show(m));
    const mev = events(many);
    assert.equal(mev.size, 9);
    assert.ok(mostAtOnce(mev) <= 2, `more than 2 steps of the pool at once: ${describeAll(mev)}`);
    for (let i = 1; i <= 8; i++) {
      assert.ok(mev.get(`S${i}`)!.end < mev.get("L")!.end, `S${i} waited for the long step: ${describeAll(mev)}`);
    }
    // Not only once the queue ran dry: it goes before most of the steps queued after it.
    assert.ok(mev.get("S2")!.end < mev.get("S6")!.end, `S2 was held back behind the long step: ${describeAll(mev)}`);
  });

  test("the log shows the steps of a pool of 1, and of -w1, one after the other", async () => {
    // A worker takes its next step as soon as the command is over, before the last one's result
    // is recorded; the START line must still come after the SUCCESS it waited for.
    const p = fresh({
      "plan.ts": `
import { pool, step } from "tsup-flow";
pool("one", 1);
for (let i = 0; i < 8; i++) step(\`echo p\${i}\`, { pool: "one" });
`,
    });
    const sequence = (stdout: string, prefix: string): string[] =>
      parseLines(stdout)
        .filter(([action, what]) => (action === "START" || action === "SUCCESS") && what.startsWith(prefix))
        .map(([action]) => action);
    const alternating = (n: number): string[] => Array.from({ length: 2 * n }, (_, i) => (i % 2 === 0 ? "START" : "SUCCESS"));
    const r = await tsup(p.dir, ["-n", "-w4"]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(sequence(r.stdout, "echo p"), alternating(8), show(r));

    p.write("plan.ts", `import { step } from "tsup-flow";\nfor (let i = 0; i < 8; i++) step(\`echo q\${i}\`);\n`);
    const w1 = await tsup(p.dir, ["-n", "-w1"]);
    assert.equal(w1.code, 0, show(w1));
    assert.deepEqual(sequence(w1.stdout, ""), alternating(9), show(w1));

    // Outputs above 4 MB are hashed asynchronously: the quick step after such a step can end,
    // and be recorded, before it. Its START and SUCCESS still come after the big one's SUCCESS.
    p.write(
      "plan.ts",
      `import { step } from "tsup-flow";
for (let i = 0; i < 3; i++) {
  step(\`head -c 6000000 /dev/zero > \${"\${out}"}\`, { out: \`big\${i}.bin\` });
  step(\`echo s\${i}\`);
}
`,
    );
    const big = await tsup(p.dir, ["-n", "-w1"]);
    assert.equal(big.code, 0, show(big));
    assert.deepEqual(sequence(big.stdout, ""), alternating(7), show(big));
  });

  test("an undefined pool is an error naming the plan line", async () => {
    const p = fresh({
      "plan.ts": `import { step } from "tsup-flow";\n\nstep("echo x", { pool: "nope" });\n`,
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /plan\.ts:3:\d+: error: unknown pool "nope"/);
    assert.doesNotMatch(r.stdout + r.stderr, /at .*dist\//, "no stack trace of tsup's own code");
  });

  test("a pool size below 1 is an error naming the plan line", async () => {
    const p = fresh({ "plan.ts": `import { pool } from "tsup-flow";\npool("x", 0);\n` });
    const r = await tsup(p.dir);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /plan\.ts:2:\d+: error: pool "x" needs an integer size of at least 1, got 0/);
  });
});
