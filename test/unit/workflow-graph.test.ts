import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Graph, type StepDefinition, type StepNode } from "../../src/workflow/graph.js";

function def(command: string, parts: Partial<StepDefinition> = {}): StepDefinition {
  return { command, workdir: "./", inp: [], out: [], vol: [], env: [], pool: null, optional: false, block: false, ...parts };
}

function graph(): { g: Graph; runnable: string[] } {
  const g = new Graph();
  const runnable: string[] = [];
  g.onRunnable = (s: StepNode) => runnable.push(s.key);
  return { g, runnable };
}

function ok<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) assert.fail(r.error);
  return r.value;
}

describe("workflow graph", () => {
  test("a step is runnable once all its inputs are available", () => {
    const { g, runnable } = graph();
    ok(g.defineStep(null, def("b", { inp: ["x.txt"], out: ["y.txt"] })));
    assert.deepEqual(runnable, []);
    const a = ok(g.defineStep(null, def("a", { out: ["x.txt"] })));
    assert.deepEqual(runnable, ["a"]);
    g.markSucceeded(a);
    assert.deepEqual(runnable, ["a", "b"]);
  });

  test("static declarations release waiting steps and declare parent directories", () => {
    const { g, runnable } = graph();
    ok(g.defineStep(null, def("cat", { inp: ["data/raw/x.csv"] })));
    ok(g.declareStatic(null, ["data/raw/x.csv"]));
    assert.equal(g.files.get("data/")?.state, "static");
    assert.equal(g.files.get("data/raw/")?.state, "static");
    assert.deepEqual(runnable, ["cat"]);
  });

  test("declaring the same static file twice is fine", () => {
    const { g } = graph();
    ok(g.declareStatic(null, ["a.txt"]));
    ok(g.declareStatic(null, ["a.txt"]));
  });

  test("an output cannot be static, and two steps cannot share an output", () => {
    const { g } = graph();
    ok(g.declareStatic(null, ["a.txt"]));
    const r1 = g.defineStep(null, def("w", { out: ["a.txt"] }));
    assert.ok(!r1.ok && /declared static/.test(r1.error));
    ok(g.defineStep(null, def("p", { out: ["b.txt"] })));
    const r2 = g.defineStep(null, def("q", { out: ["b.txt"] }));
    assert.ok(!r2.ok && /already an output of step `p`/.test(r2.error), JSON.stringify(r2));
    const r3 = g.declareStatic(null, ["b.txt"]);
    assert.ok(!r3.ok && /output of step `p`/.test(r3.error));
  });

  test("a step defined twice differently, or by another creator, is rejected", () => {
    const { g } = graph();
    const a = ok(g.defineStep(null, def("a")));
    // The same creator declaring exactly the same step again (a plan rerun after RESCHEDULE)
    // gets the same step back.
    assert.equal(ok(g.defineStep(null, def("a"))), a);
    const r = g.defineStep(null, def("a", { out: ["x"] }));
    assert.ok(!r.ok && /defined twice/.test(r.error));
    const other = ok(g.defineStep(null, def("other plan")));
    const r2 = g.defineStep(other, def("a"));
    assert.ok(!r2.ok && /defined twice \(first by the root\)/.test(r2.error), JSON.stringify(r2));
    // The same command in another workdir is another step.
    ok(g.declareStatic(null, ["sub/"]));
    ok(g.defineStep(null, def("a", { workdir: "sub/" })));
  });

  test("a cycle is rejected with the cycle in the message, and the graph is unchanged", () => {
    const { g } = graph();
    ok(g.defineStep(null, def("cp a b", { inp: ["a.txt"], out: ["b.txt"] })));
    ok(g.defineStep(null, def("cp b c", { inp: ["b.txt"], out: ["c.txt"] })));
    const r = g.defineStep(null, def("cp c a", { inp: ["c.txt"], out: ["a.txt"] }));
    assert.ok(!r.ok);
    assert.match(r.error, /dependency cycle/);
    assert.match(r.error, /step `cp c a`\n\s+-> a\.txt\n\s+-> step `cp a b`\n\s+-> b\.txt\n\s+-> step `cp b c`\n\s+-> c\.txt\n\s+-> step `cp c a`/);
    assert.equal(g.steps.has("cp c a"), false);
    assert.equal(g.files.get("a.txt")?.producer, null);
  });

  test("a self-loop is rejected", () => {
    const { g } = graph();
    const r = g.defineStep(null, def("x", { inp: ["a"], out: ["a"] }));
    assert.ok(!r.ok && /both an input and an output/.test(r.error));
  });

  test("steps with many paths are checked like steps with few (long lists use a set)", () => {
    const { g } = graph();
    const many = Array.from({ length: 12 }, (_, i) => `d/in${i}.txt`);
    ok(g.declareStatic(null, many));
    // An input that is also an output, found deep in a long list.
    const undeclared = Array.from({ length: 12 }, (_, i) => `e/in${i}.txt`);
    const clash = g.defineStep(null, def("clash", { inp: undeclared, out: [...Array.from({ length: 11 }, (_, i) => `o/x${i}`), "e/in10.txt"] }));
    assert.ok(!clash.ok && /e\/in10.txt is both an input and an output/.test(clash.error), String(!clash.ok && clash.error));
    const volClash = g.defineStep(null, def("vol", { out: Array.from({ length: 10 }, (_, i) => `v/o${i}`), vol: ["v/o9"] }));
    assert.ok(!volClash.ok && /v\/o9 is both an output and a volatile output/.test(volClash.error));
    // The workdir, inputs and output directories are required once each, in that order.
    ok(g.declareStatic(null, ["o/", "p/"]));
    const outs = [...Array.from({ length: 9 }, (_, i) => `o/y${i}`), "p/z"];
    const step = ok(g.defineStep(null, def("wide", { inp: ["o/", ...many], out: outs })));
    assert.deepEqual(
      step.requires.map((f) => f.path),
      ["./", "o/", ...many, "p/"],
    );
    assert.equal(g.files.get("o/")!.consumers.filter((c) => c === step).length, 1);
  });

  test("cycle search does not recurse: a reverse-declared chain of 20000 steps", () => {
    const { g } = graph();
    const n = 20000;
    for (let i = n; i >= 1; i--) ok(g.defineStep(null, def(`s${i}`, { inp: [`f${i - 1}`], out: [`f${i}`] })));
    const r = g.defineStep(null, def("back", { inp: [`f${n}`], out: ["f0"] }));
    assert.ok(!r.ok && /cycle/.test(r.error));
  });

  test("outputs go only into known directories", () => {
    const { g, runnable } = graph();
    ok(g.defineStep(null, def("w", { out: ["sub/x.txt"] })));
    assert.deepEqual(runnable, [], "waits for sub/");
    const mk = ok(g.defineStep(null, def("mkdir sub", { out: ["sub/"] })));
    assert.deepEqual(runnable, ["mkdir sub"]);
    g.markSucceeded(mk);
    assert.deepEqual(runnable, ["mkdir sub", "w"]);
  });

  test("optional steps become runnable only when something mandatory needs them", () => {
    const { g, runnable } = graph();
    const opt = ok(g.defineStep(null, def("make x", { out: ["x"], optional: true })));
    ok(g.defineStep(null, def("make y", { out: ["y"], optional: true })));
    assert.deepEqual(runnable, []);
    assert.equal(opt.mandatory, "no");
    ok(g.defineStep(null, def("use x", { inp: ["x"] })));
    assert.equal(opt.mandatory, "implied");
    assert.deepEqual(runnable, ["make x"]);
  });

  test("implication reaches through chains of optional steps", () => {
    const { g, runnable } = graph();
    ok(g.defineStep(null, def("o1", { out: ["a"], optional: true })));
    ok(g.defineStep(null, def("o2", { inp: ["a"], out: ["b"], optional: true })));
    ok(g.defineStep(null, def("use", { inp: ["b"] })));
    assert.deepEqual(runnable, ["o1"]);
    assert.equal(g.steps.get("o2")?.mandatory, "implied");
  });

  test("blocked steps are never runnable", () => {
    const { g, runnable } = graph();
    ok(g.defineStep(null, def("b", { block: true })));
    assert.deepEqual(runnable, []);
  });

  test("volatile outputs cannot be inputs or directories", () => {
    const { g } = graph();
    ok(g.defineStep(null, def("log", { vol: ["log.txt"] })));
    const r = g.defineStep(null, def("read", { inp: ["log.txt"] }));
    assert.ok(!r.ok && /volatile/.test(r.error));
    const d = g.defineStep(null, def("v", { vol: ["d/"] }));
    assert.ok(!d.ok && /cannot be a directory/.test(d.error));
  });

  test("unknown pools and bad pool sizes are rejected", () => {
    const { g } = graph();
    const r = g.defineStep(null, def("x", { pool: "gpu" }));
    assert.ok(!r.ok && /unknown pool "gpu"/.test(r.error));
    const bad = g.definePool(null, "gpu", 0);
    assert.ok(!bad.ok && /at least 1/.test(bad.error));
    ok(g.definePool(null, "gpu", 1));
    ok(g.defineStep(null, def("x", { pool: "gpu" })));
  });
});
