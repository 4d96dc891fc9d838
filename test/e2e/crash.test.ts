// End-to-end: crash safety. tsup is killed with SIGKILL at random moments (fixed seed); no later
// run may execute again a step that reported SUCCESS (unless its inputs changed since), and no
// run may skip a step whose outputs are stale. A kill half-way through a 5000-step build. Then
// damaged state and journal files.
import assert from "node:assert/strict";
import { chmodSync, cpSync, existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { before, describe, test } from "node:test";
import { freshProjects, show, tsup, withAction, type Project, type RunResult } from "./harness.js";

const fresh = freshProjects();

/** mulberry32: a tiny seeded PRNG, so that a failure can be replayed exactly. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const N = 80;
const GROUP = 10;

/** A boot plan with chains and fan-in, and a sub-plan: 2 plans and 208 cheap steps. */
const files: Record<string, string> = {
  "plan.ts": `import { declareStatic, plan, step } from "tsup-flow";
const N = ${N};
declareStatic(...Array.from({ length: N }, (_, i) => \`in/\${i}.txt\`));
for (let i = 0; i < N; i++) {
  step(\`cp in/\${i}.txt a\${i}.txt\`, { inp: \`in/\${i}.txt\`, out: \`a\${i}.txt\` });
  step(\`sed s/^/b/ a\${i}.txt > b\${i}.txt\`, { inp: \`a\${i}.txt\`, out: \`b\${i}.txt\` });
}
for (let g = 0; g < N / ${GROUP}; g++) {
  const parts = Array.from({ length: ${GROUP} }, (_, k) => \`b\${g * ${GROUP} + k}.txt\`);
  step(\`cat \${parts.join(" ")} > sum\${g}.txt\`, { inp: parts, out: \`sum\${g}.txt\` });
}
plan("sub");
`,
  "sub/plan.ts": `import { step } from "tsup-flow";
for (let i = 0; i < ${N}; i += 2) step(\`sed s/^/x/ ../in/\${i}.txt > x\${i}.txt\`, { inp: \`../in/\${i}.txt\`, out: \`x\${i}.txt\` });
`,
};
for (let i = 0; i < N; i++) files[`in/${i}.txt`] = `line ${i}\n`;

const aStep = (i: number): string => `cp in/${i}.txt a${i}.txt`;
const bStep = (i: number): string => `sed s/^/b/ a${i}.txt > b${i}.txt`;
const sumStep = (g: number): string =>
  `cat ${Array.from({ length: GROUP }, (_, k) => `b${g * GROUP + k}.txt`).join(" ")} > sum${g}.txt`;
const xStep = (i: number): string => `sed s/^/x/ ../in/${i}.txt > x${i}.txt  # wd=sub/`;

/** The steps whose result depends on in/i.txt. */
function dependents(i: number): string[] {
  const out = [aStep(i), bStep(i), sumStep(Math.floor(i / GROUP))];
  if (i % 2 === 0) out.push(xStep(i));
  return out;
}

/** Every output must be exactly what its command makes of the inputs as they are now. */
function checkOutputs(p: Project): void {
  const input = (i: number): string => p.read(`in/${i}.txt`);
  const prefix = (c: string, text: string): string => text.replace(/^(?=.)/gm, c);
  for (let i = 0; i < N; i++) {
    assert.equal(p.read(`a${i}.txt`), input(i), `a${i}.txt`);
    assert.equal(p.read(`b${i}.txt`), prefix("b", input(i)), `b${i}.txt`);
    if (i % 2 === 0) assert.equal(p.read(`sub/x${i}.txt`), prefix("x", input(i)), `sub/x${i}.txt`);
  }
  for (let g = 0; g < N / GROUP; g++) {
    let expected = "";
    for (let k = 0; k < GROUP; k++) expected += prefix("b", input(g * GROUP + k));
    assert.equal(p.read(`sum${g}.txt`), expected, `sum${g}.txt`);
  }
}

/** No JavaScript stack trace may reach the user, whatever state the files are in. */
function noStackTrace(r: RunResult): void {
  assert.doesNotMatch(r.stdout + r.stderr, /^\s+at .+:\d+:\d+\)?$/m, show(r));
}

/**
 * Run tsup and SIGKILL it: after `afterSuccesses` SUCCESS lines, or `afterMs` after the start,
 * whichever comes first (a run that ends before either is not killed).
 */
async function killedRun(p: Project, afterSuccesses: number, afterMs: number): Promise<RunResult> {
  const r = await tsup(p.dir, ["-n", "-w2"], {
    timeoutMs: 60_000,
    onSpawn: (child) => {
      let seen = 0;
      const kill = (): void => {
        clearTimeout(timer);
        child.kill("SIGKILL");
      };
      const timer = setTimeout(kill, afterMs);
      let partial = "";
      child.stdout!.on("data", (d: Buffer) => {
        const lines = (partial + d.toString()).split("\n");
        partial = lines.pop()!;
        for (const line of lines) if (/^\s*SUCCESS │ /.test(line) && ++seen >= afterSuccesses) kill();
      });
      child.on("exit", () => clearTimeout(timer));
    },
  });
  // The kill may cut the last line short, say `SUCCESS │ cp in/12.txt out1`: only whole lines count.
  return r.stdout.endsWith("\n") ? r : { ...r, stdout: r.stdout.slice(0, r.stdout.lastIndexOf("\n") + 1) };
}

/** A run that was not killed reached every step: each one known to be done must be a SKIP. */
function allSkipped(r: RunResult, done: Set<string>, where: string): void {
  const skipped = new Set(withAction(r, "SKIP"));
  const missing = [...done].filter((c) => !skipped.has(c));
  assert.deepEqual(missing, [], `${where}: finished steps were not skipped\n${show(r)}`);
}

const pause = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

describe("crash safety", () => {
  test("SIGKILL at random moments never loses finished work and never skips a stale step", { timeout: 180_000 }, async () => {
    const p = fresh(files);
    const rand = mulberry32(0x7e5a9);
    /** Steps known to have finished with the inputs as they are now. */
    const done = new Set<string>();
    let edits = 0;
    let kills = 0;
    let recovered = 0;
    const iterations = 24;
    for (let iter = 0; iter < iterations; iter++) {
      // Half of the kills after some SUCCESS lines, half after a delay that may land anywhere:
      // while loading, compacting the journal, booting, running, or saving at the end.
      const bySuccess = rand() < 0.5;
      const afterSuccesses = bySuccess ? 1 + Math.floor(rand() * 40) : Number.POSITIVE_INFINITY;
      const afterMs = bySuccess ? 60_000 : Math.floor(rand() * 1500);
      const r = await killedRun(p, afterSuccesses, afterMs);
      const where = `iteration ${iter} (kill after ${bySuccess ? `${afterSuccesses} successes` : `${afterMs} ms`})`;
      if (r.signal === "SIGKILL") kills++;
      else {
        assert.equal(r.code, 0, `${where}\n${show(r)}`);
        noStackTrace(r);
      }
      if (/Recovered \d+ finished steps? from/.test(r.stdout)) recovered++;
      const rerun = withAction(r, "START").filter((c) => done.has(c));
      assert.deepEqual(rerun, [], `${where}: steps that had finished ran again\n${show(r)}`);
      if (r.signal !== "SIGKILL") allSkipped(r, done, where);
      for (const c of [...withAction(r, "SUCCESS"), ...withAction(r, "SKIP")]) done.add(c);
      // Let the workers of the killed director notice and stop their steps.
      await pause(100);
      // Edits keep work around for the later runs to be killed in.
      if (rand() < 0.5) {
        for (let k = 1 + Math.floor(rand() * 4); k > 0; k--) {
          const i = Math.floor(rand() * N);
          edits++;
          p.write(`in/${i}.txt`, `line ${i} edit ${edits}\n`);
          for (const c of dependents(i)) done.delete(c);
        }
      }
    }
    console.log(`${kills} runs killed, ${recovered} runs recovered finished steps from the journal, ${edits} inputs edited`);
    assert.ok(kills >= 5, `only ${kills} runs were killed`);
    assert.ok(recovered > 0, "no run recovered finished steps from the journal");
    const last = await tsup(p.dir);
    assert.equal(last.code, 0, show(last));
    noStackTrace(last);
    assert.deepEqual(withAction(last, "START").filter((c) => done.has(c)), [], show(last));
    allSkipped(last, done, "last run");
    checkOutputs(p);
    const noop = await tsup(p.dir);
    assert.deepEqual(withAction(noop, "START"), [], show(noop));
    assert.doesNotMatch(noop.stdout, /Recovered/, show(noop));
    // A run that ends normally either folds the journal into the state file or leaves it with
    // an end marker (few steps ran); nothing else may be left behind.
    const left = readdirSync(p.path(".stepup")).filter((f) => f.startsWith("workflow.journal")).sort();
    assert.ok(left.length === 0 || left.join() === "workflow.journal,workflow.journal.end", left.join());
  });
});

describe("a kill in the middle of a large build", () => {
  test("after a SIGKILL half-way through 5000 steps, the next run skips every step that had finished", { timeout: 180_000 }, async () => {
    const n = 5000;
    const project: Record<string, string> = {
      "plan.ts": `import { declareStatic, step } from "tsup-flow";
declareStatic(...Array.from({ length: ${n} }, (_, i) => \`in/\${i}.txt\`));
for (let i = 0; i < ${n}; i++) step(\`cp in/\${i}.txt out\${i}.txt\`, { inp: \`in/\${i}.txt\`, out: \`out\${i}.txt\` });
`,
    };
    for (let i = 0; i < n; i++) project[`in/${i}.txt`] = `input ${i}\n`;
    const p = fresh(project);
    const killed = await killedRun(p, 2500, 120_000);
    assert.equal(killed.signal, "SIGKILL", show(killed));
    const done = new Set(withAction(killed, "SUCCESS"));
    assert.ok(done.size >= 2500, `${done.size} steps reported SUCCESS before the kill`);
    await pause(100);
    const next = await tsup(p.dir, ["-n", "-w2"], { timeoutMs: 120_000 });
    assert.equal(next.code, 0, show(next));
    noStackTrace(next);
    // The plan is one of the finished steps; the others are the copies that printed SUCCESS.
    const recovered = /Recovered (\d+) finished steps from/.exec(next.stdout);
    assert.ok(recovered !== null && Number(recovered[1]) >= done.size, show(next));
    assert.deepEqual(withAction(next, "START").filter((c) => done.has(c)), [], "finished steps ran again");
    allSkipped(next, done, "the run after the kill");
    // Everything else ran: each of the 5000 copies is skipped or runs, once. (A step may have
    // been recorded just before the kill with its SUCCESS line still unprinted: it is skipped.)
    const ran = new Set(withAction(next, "SUCCESS"));
    const skipped = new Set(withAction(next, "SKIP"));
    for (let i = 0; i < n; i++) {
      const c = `cp in/${i}.txt out${i}.txt`;
      assert.ok(skipped.has(c) !== ran.has(c), `${c}: skipped ${skipped.has(c)}, ran ${ran.has(c)}`);
      assert.equal(p.read(`out${i}.txt`), `input ${i}\n`);
    }
  });
});

/** n static inputs `in/<i>.txt` ("input <i>") and n steps `sed s/^/<x>/ in/<i>.txt > <x><i>.txt`. */
function sedProject(n: number, x: string): Record<string, string> {
  const project: Record<string, string> = {
    "plan.ts": `import { declareStatic, step } from "tsup-flow";
declareStatic(...Array.from({ length: ${n} }, (_, i) => \`in/\${i}.txt\`));
for (let i = 0; i < ${n}; i++) step(\`sed s/^/${x}/ in/\${i}.txt > ${x}\${i}.txt\`, { inp: \`in/\${i}.txt\`, out: \`${x}\${i}.txt\` });
`,
  };
  for (let i = 0; i < n; i++) project[`in/${i}.txt`] = `input ${i}\n`;
  return project;
}

describe("ending a run without rewriting the state file", () => {
  const plan = sedProject(20, "z");

  test("a few reruns go to the journal, later runs continue it, a long journal or any other change is compacted", async () => {
    const p = fresh(plan);
    const stateFile = p.path(".stepup/workflow.mpk.xz");
    const journal = p.path(".stepup/workflow.journal");
    assert.equal((await tsup(p.dir)).code, 0);
    const saved = readFileSync(stateFile);
    const env = { TSUP_JOURNAL_LIMIT: "3" };
    for (let n = 1; n <= 3; n++) {
      p.write("in/4.txt", `edit ${n}\n`);
      const r = await tsup(p.dir, ["-n", "-w2"], { env });
      assert.equal(r.code, 0, show(r));
      assert.deepEqual(withAction(r, "START"), ["sed s/^/z/ in/4.txt > z4.txt"], show(r));
      assert.match(r.stdout, new RegExp(`WORKFLOW │ Recorded in \\.stepup/workflow\\.journal \\(${n} entr`), show(r));
      assert.doesNotMatch(r.stdout, /Dumped|Recovered/, show(r));
      assert.deepEqual(readFileSync(stateFile), saved, "the state file is left alone");
      assert.equal(p.read("z4.txt"), `zedit ${n}\n`);
    }
    // A no-op run on top of the journal skips everything and writes nothing.
    const noop = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.deepEqual(withAction(noop, "START"), [], show(noop));
    assert.doesNotMatch(noop.stdout, /Recovered|Dumped|Recorded/, show(noop));
    // The fourth entry is one too many: compacted.
    p.write("in/5.txt", "edit 4\n");
    const fourth = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.match(fourth.stdout, /Dumped to \.stepup\/workflow\.mpk\.xz/, show(fourth));
    assert.ok(!existsSync(journal));
    // A failed step is not something the journal records: compacted too.
    p.write("in/6.txt", "edit 5\n");
    p.write("plan.ts", p.read("plan.ts") + `step("exit 1");\n`);
    const failed = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.equal(failed.code, 4, show(failed));
    assert.match(failed.stdout, /Dumped/, show(failed));
    // Whatever path the state took, the next run skips exactly what is up to date.
    p.write("plan.ts", p.read("plan.ts").replace(`step("exit 1");\n`, ""));
    p.write("in/7.txt", "edit 6\n");
    const last = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.equal(last.code, 0, show(last));
    assert.deepEqual(withAction(last, "START").sort(), ["./plan.ts", "sed s/^/z/ in/7.txt > z7.txt"], show(last));
    for (let i = 0; i < 20; i++) assert.match(p.read(`z${i}.txt`), /^z/);
  });
});

describe("ending a run on the journal when a step reads other files than before", () => {
  // pick.sh amends whichever file which.txt names, then copies it.
  const project = {
    "plan.ts": `import { declareStatic, step } from "tsup-flow";
declareStatic("pick.sh", "which.txt", "a.txt", "b.txt");
step("./pick.sh", { inp: ["pick.sh", "which.txt"], out: "picked.txt" });
`,
    "pick.sh": `#!/bin/sh
f=$(cat which.txt)
tsup act amend --inp "$f" || exit
cp "$f" picked.txt
`,
    "which.txt": "a.txt\n",
    "a.txt": "from a\n",
    "b.txt": "from b\n",
  };

  test("the old input's hash stays in the table until the state file is written, and changes nothing", async () => {
    const p = fresh(project);
    chmodSync(p.path("pick.sh"), 0o755);
    const stateFile = p.path(".stepup/workflow.mpk.xz");
    const first = await tsup(p.dir, ["-n", "-w2"]);
    assert.equal(first.code, 0, show(first));
    assert.equal(p.read("picked.txt"), "from a\n");
    const saved = readFileSync(stateFile);

    // The step now amends b.txt instead of a.txt. No step names a.txt any more, yet the journal
    // says everything else: the run ends on it, and the state file keeps a.txt's hash.
    p.write("which.txt", "b.txt\n");
    const switched = await tsup(p.dir, ["-n", "-w2", "-e"]);
    assert.equal(switched.code, 0, show(switched));
    assert.deepEqual(withAction(switched, "START"), ["./pick.sh"], show(switched));
    assert.match(switched.stdout, /WORKFLOW │ Recorded in \.stepup\/workflow\.journal \(1 entry/, show(switched));
    assert.deepEqual(readFileSync(stateFile), saved, "the state file is left alone");
    assert.equal(p.read("picked.txt"), "from b\n");

    // a.txt is no input any more: editing it reruns nothing. Its outdated hash is noticed (the
    // plan declared it static) and the state file is written, without it.
    p.write("a.txt", "from a, edited\n");
    const edited = await tsup(p.dir, ["-n", "-w2"]);
    assert.equal(edited.code, 0, show(edited));
    assert.deepEqual(withAction(edited, "START"), [], show(edited));
    assert.match(edited.stdout, /Dumped to \.stepup\/workflow\.mpk\.xz/, show(edited));
    const noop = await tsup(p.dir, ["-n", "-w2"]);
    assert.deepEqual(withAction(noop, "START"), [], show(noop));
    assert.doesNotMatch(noop.stdout, /Dumped|Recorded|Recovered/, show(noop));

    // b.txt is the input now: editing it reruns the step.
    p.write("b.txt", "from b, edited\n");
    const rerun = await tsup(p.dir, ["-n", "-w2"]);
    assert.equal(rerun.code, 0, show(rerun));
    assert.deepEqual(withAction(rerun, "START"), ["./pick.sh"], show(rerun));
    assert.equal(p.read("picked.txt"), "from b, edited\n");
  });
});

describe("damaged state and journal files", () => {
  const small = sedProject(30, "y");
  const check = (p: Project): void => {
    for (let i = 0; i < 30; i++) assert.equal(p.read(`y${i}.txt`), `yinput ${i}${i % 3 === 0 ? " changed" : ""}\n`, `y${i}.txt`);
  };
  const journal = (p: Project): string => p.path(".stepup/workflow.journal");
  const state = (p: Project): string => p.path(".stepup/workflow.mpk.xz");

  // Made once and copied for each case: a project killed after 4 successes, with inputs changed
  // since its last complete run (so the journal holds entries), and the same project completed.
  let killed: Project;
  let completed: Project;
  before(async () => {
    killed = fresh(small);
    assert.equal((await tsup(killed.dir)).code, 0);
    for (let i = 0; i < 30; i += 3) killed.write(`in/${i}.txt`, `input ${i} changed\n`);
    const r = await killedRun(killed, 4, 60_000);
    assert.equal(r.signal, "SIGKILL", show(r));
    await pause(100);
    assert.ok(existsSync(journal(killed)), "a killed run leaves its journal");
    completed = fresh();
    cpSync(killed.dir, completed.dir, { recursive: true });
    assert.equal((await tsup(completed.dir)).code, 0);
  });
  const copyOf = (template: Project): Project => {
    const p = fresh();
    cpSync(template.dir, p.dir, { recursive: true });
    return p;
  };
  const interrupted = (): Project => copyOf(killed);

  /** The run after the damage: warns (or not), never a stack trace, correct outputs, then clean. */
  async function recovers(p: Project, warning: RegExp | null): Promise<RunResult> {
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    noStackTrace(r);
    const warnings = withAction(r, "WARNING");
    if (warning) assert.ok(warnings.some((w) => warning.test(w)), `expected a warning ${warning}\n${show(r)}`);
    else assert.deepEqual(warnings, [], show(r));
    check(p);
    const again = await tsup(p.dir);
    assert.deepEqual(withAction(again, "START"), [], show(again));
    assert.deepEqual(withAction(again, "WARNING"), [], show(again));
    return r;
  }

  const badCopies = (p: Project, name: string): string[] =>
    readdirSync(p.path(".stepup")).filter((f) => f.startsWith(`${name}.bad-`));

  test("an intact journal: the finished steps are skipped", async () => {
    const p = interrupted();
    const r = await recovers(p, null);
    assert.match(r.stdout, /WORKFLOW │ Recovered \d+ finished steps? from \.stepup\/workflow\.journal/);
    // The run was killed after 4 of the changed steps reported SUCCESS: those 4 at least skip.
    const changed = (c: string): boolean => Number(/^sed s\/\^\/y\/ in\/(\d+)\.txt/.exec(c)?.[1] ?? 1) % 3 === 0;
    assert.ok(withAction(r, "SKIP").filter(changed).length >= 4, show(r));
  });

  test("a journal cut inside its last entry", async () => {
    const p = interrupted();
    const size = readFileSync(journal(p)).length;
    truncateSync(journal(p), size - 7);
    const r = await recovers(p, /Ignoring the unreadable part of .*workflow\.journal: entry \d+ \(byte \d+\) is incomplete/);
    assert.equal(badCopies(p, "workflow.journal").length, 1);
    assert.match(r.stdout, /Recovered \d+ finished steps?/);
  });

  test("garbage in the middle of the journal", async () => {
    const p = interrupted();
    const b = readFileSync(journal(p));
    b.fill(0x5a, Math.floor(b.length / 2), Math.floor(b.length / 2) + 40);
    writeFileSync(journal(p), b);
    await recovers(p, /Ignoring the unreadable part of .*workflow\.journal: entry \d+ \(byte \d+\) is (damaged|incomplete)/);
    assert.equal(badCopies(p, "workflow.journal").length, 1);
  });

  test("a journal that is not one, and an empty one", async () => {
    const p = interrupted();
    writeFileSync(journal(p), "these are not the bytes you are looking for\n");
    await recovers(p, /Ignoring the unreadable part of .*workflow\.journal: not a tsup journal/);
    const q = interrupted();
    writeFileSync(journal(q), "");
    await recovers(q, null);
  });

  test("a damaged journal header", async () => {
    const p = interrupted();
    const b = readFileSync(journal(p));
    b[12]! ^= 0xff;
    writeFileSync(journal(p), b);
    await recovers(p, /workflow\.journal: the header is damaged/);
  });

  test("a leftover journal of an earlier state file is ignored without a word", async () => {
    const p = interrupted();
    const old = readFileSync(journal(p));
    // Fold it in and finish; then put the old journal back, as if deleting it had failed.
    assert.equal((await tsup(p.dir)).code, 0);
    writeFileSync(journal(p), old);
    const r = await recovers(p, null);
    assert.doesNotMatch(r.stdout, /Recovered/);
  });

  test("a truncated state file with a journal: both set aside, everything runs again", async () => {
    const p = interrupted();
    const b = readFileSync(state(p));
    writeFileSync(state(p), b.subarray(0, Math.floor(b.length / 2)));
    const r = await recovers(p, /Ignoring unreadable saved workflow .*workflow\.mpk\.xz/);
    assert.match(r.stdout, /journal .*workflow\.journal extends that file, so it was ignored too/);
    assert.equal(badCopies(p, "workflow.mpk.xz").length, 1);
    assert.equal(badCopies(p, "workflow.journal").length, 1);
    assert.equal(withAction(r, "SKIP").length, 0, show(r));
  });

  test("a state file of garbage, and one cut to a few bytes, without a journal", async () => {
    for (const damage of [(b: Buffer) => Buffer.from(b.map((x, i) => (x * 7 + i) & 0xff)), (b: Buffer) => b.subarray(0, 12)]) {
      const p = copyOf(completed);
      writeFileSync(state(p), damage(readFileSync(state(p))));
      await recovers(p, /Ignoring unreadable saved workflow/);
      assert.equal(badCopies(p, "workflow.mpk.xz").length, 1);
    }
  });
});
