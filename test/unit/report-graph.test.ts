import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { dotLabel, graphDot, graphText, wrapLabel } from "../../src/report/graph.js";
import { Graph, type StepDefinition } from "../../src/workflow/graph.js";

function def(command: string, parts: Partial<StepDefinition> = {}): StepDefinition {
  return { command, workdir: "./", inp: [], out: [], vol: [], env: [], pool: null, optional: false, block: false, ...parts };
}

function ok<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) assert.fail(r.error);
  return r.value;
}

/**
 * The boot plan declares a pool, a static file and two steps chained through mid.txt. The
 * consumer is declared before its supplier, so insertion order and sorted order differ.
 */
function limerick(): Graph {
  const g = new Graph();
  ok(g.declareStatic(null, ["plan.ts"]));
  const plan = ok(g.defineStep(null, def("./plan.ts", { inp: ["plan.ts"] })));
  plan.isBootPlan = true;
  g.markSucceeded(plan);
  ok(g.definePool(plan, "cpu", 2));
  ok(g.declareStatic(plan, ["data/in.txt"]));
  ok(g.defineStep(plan, def("cat mid.txt > out.txt", { inp: ["mid.txt"], out: ["out.txt"] })));
  const cp = ok(
    g.defineStep(plan, def("cp data/in.txt mid.txt", { inp: ["data/in.txt"], out: ["mid.txt"], pool: "cpu", env: ["HOME"] })),
  );
  g.markSucceeded(cp);
  return g;
}

const LIMERICK_TEXT = `root:
             creates   file:./
             creates   file:plan.ts
             creates   step:./plan.ts

file:./
                path = ./
               state = static
          created by   root:
            supplies   step:./plan.ts
            supplies   step:cat mid.txt > out.txt
            supplies   step:cp data/in.txt mid.txt

file:plan.ts
                path = plan.ts
               state = static
          created by   root:
            supplies   step:./plan.ts

file:data/
                path = data/
               state = static
          created by   step:./plan.ts

file:data/in.txt
                path = data/in.txt
               state = static
          created by   step:./plan.ts
            supplies   step:cp data/in.txt mid.txt

file:mid.txt
                path = mid.txt
               state = built
         produced by   step:cp data/in.txt mid.txt
            supplies   step:cat mid.txt > out.txt

file:out.txt
                path = out.txt
               state = pending
         produced by   step:cat mid.txt > out.txt

step:./plan.ts
             workdir = ./
             command = ./plan.ts
               state = succeeded
                plan = yes (boot plan)
         fingerprint = no
          created by   root:
            consumes   file:./
            consumes   file:plan.ts
             creates   file:data/
             creates   file:data/in.txt
             creates   pool:cpu
             creates   step:cat mid.txt > out.txt
             creates   step:cp data/in.txt mid.txt

step:cat mid.txt > out.txt
             workdir = ./
             command = cat mid.txt > out.txt
               state = pending
         fingerprint = no
          created by   step:./plan.ts
            consumes   file:./
            consumes   file:mid.txt
            supplies   file:out.txt

step:cp data/in.txt mid.txt
             workdir = ./
             command = cp data/in.txt mid.txt
               state = succeeded
                pool = cpu
             env var = HOME
         fingerprint = no
          created by   step:./plan.ts
            consumes   file:./
            consumes   file:data/in.txt
            supplies   file:mid.txt

pool:cpu
                name = cpu
                size = 2
          created by   step:./plan.ts
             used by   step:cp data/in.txt mid.txt
`;

/** Node ids by label, and edges as `label -> label`, read back from our own dot output. */
function parseDot(dot: string): { nodes: Map<string, string>; edges: Set<string>; attrs: Map<string, string> } {
  const ids = new Map<string, string>();
  const attrs = new Map<string, string>();
  const edges = new Set<string>();
  for (const line of dot.split("\n")) {
    const node = /^ {2}(\w+) \[(.*label="((?:[^"\\]|\\.)*)".*)\];$/.exec(line);
    if (node) {
      const label = node[3]!.replace(/\\n/g, "").replace(/\\(.)/g, "$1");
      ids.set(node[1]!, label);
      attrs.set(label, node[2]!);
    }
  }
  for (const line of dot.split("\n")) {
    const edge = /^ {2}(\w+) -> (\w+);$/.exec(line);
    if (edge) edges.add(`${ids.get(edge[1]!)} -> ${ids.get(edge[2]!)}`);
  }
  return { nodes: new Map([...ids].map(([id, label]) => [label, id])), edges, attrs };
}

/** Without splitting: a split of the 100,000-step dump would cost more than writing it. */
function lineCount(text: string): number {
  let count = 1;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) count++;
  return count;
}

describe("graph report", () => {
  test("text: every node with aligned properties and sorted relations", () => {
    assert.equal(graphText(limerick()), LIMERICK_TEXT);
  });

  test("text: relations are sorted, optional steps, amended information and multi-line commands", () => {
    const g = new Graph();
    ok(g.declareStatic(null, ["z.txt", "a.txt", "m.txt"]));
    const s = ok(g.defineStep(null, def("echo 1\necho 2", { inp: ["z.txt", "m.txt", "a.txt"], out: ["o2", "o1"], env: ["B", "A"], optional: true, block: true })));
    ok(g.amendStep(s, ["later.txt"], ["o3"], []));
    g.addEnv(s, ["Z", "C"]);
    const text = graphText(g);
    const block = text.split("\n\n").find((b) => b.startsWith("step:"))!.trimEnd();
    assert.equal(
      block,
      [
        "step:echo 1\\necho 2",
        "             workdir = ./",
        "             command = echo 1",
        "                       echo 2",
        "               state = pending (waiting for 1 input)",
        "            optional = yes (not needed)",
        "               block = yes",
        "             env var = B",
        "                     = A",
        "   env var (amended) = C",
        "                     = Z",
        "       inp (amended) = later.txt",
        "       out (amended) = o3",
        "         fingerprint = no",
        "          created by   root:",
        "            consumes   file:./",
        "            consumes   file:a.txt",
        "            consumes   file:later.txt",
        "            consumes   file:m.txt",
        "            consumes   file:z.txt",
        "            supplies   file:o1",
        "            supplies   file:o2",
        "            supplies   file:o3",
      ].join("\n"),
    );
    assert.match(text, /file:later.txt\n {16}path = later.txt\n {15}state = missing\n/);
    g.files.get("m.txt")!.absent = true;
    assert.match(graphText(g), /file:m.txt\n {16}path = m.txt\n {15}state = static \(absent\)\n/);
  });

  test("dot: header, shapes, and plans told apart", () => {
    const g = limerick();
    for (const kind of ["supplier", "creator"] as const) {
      const dot = graphDot(g, kind);
      assert.ok(dot.startsWith(`strict digraph ${kind} {\n  rankdir=BT;\n`), dot);
      assert.ok(dot.endsWith("}\n"));
      const { attrs } = parseDot(dot);
      assert.match(attrs.get("./plan.ts")!, /shape=ellipse.*peripheries=2/);
      assert.match(attrs.get("cp data/in.txt mid.txt")!, /shape=ellipse/);
      assert.doesNotMatch(attrs.get("cp data/in.txt mid.txt")!, /peripheries/);
      assert.match(attrs.get("data/in.txt")!, /shape=box/);
    }
  });

  test("dot supplier: file -> consumer and step -> output, unproduced directories left out", () => {
    const { nodes, edges } = parseDot(graphDot(limerick(), "supplier"));
    assert.deepEqual(
      [...nodes.keys()].sort(),
      ["./plan.ts", "cat mid.txt > out.txt", "cp data/in.txt mid.txt", "data/in.txt", "mid.txt", "out.txt", "plan.ts"],
    );
    assert.deepEqual(
      [...edges].sort(),
      [
        "cat mid.txt > out.txt -> out.txt",
        "cp data/in.txt mid.txt -> mid.txt",
        "data/in.txt -> cp data/in.txt mid.txt",
        "mid.txt -> cat mid.txt > out.txt",
        "plan.ts -> ./plan.ts",
      ],
    );
  });

  test("dot supplier: a produced directory stays, with its edges", () => {
    const g = new Graph();
    ok(g.defineStep(null, def("mkdir sub", { out: ["sub/"] })));
    ok(g.defineStep(null, def("touch sub/x", { out: ["sub/x"] })));
    const { edges } = parseDot(graphDot(g, "supplier"));
    assert.deepEqual([...edges].sort(), ["mkdir sub -> sub/", "sub/ -> touch sub/x", "touch sub/x -> sub/x"]);
  });

  test("dot creator: root and steps -> the steps, static files (directories too) and pools they declared", () => {
    const { nodes, edges } = parseDot(graphDot(limerick(), "creator"));
    assert.deepEqual(
      [...nodes.keys()].sort(),
      ["./", "./plan.ts", "cat mid.txt > out.txt", "cp data/in.txt mid.txt", "data/", "data/in.txt", "plan.ts", "pool cpu (2)", "root"],
    );
    assert.deepEqual(
      [...edges].sort(),
      [
        "./plan.ts -> cat mid.txt > out.txt",
        "./plan.ts -> cp data/in.txt mid.txt",
        "./plan.ts -> data/",
        "./plan.ts -> data/in.txt",
        "./plan.ts -> pool cpu (2)",
        "root -> ./",
        "root -> ./plan.ts",
        "root -> plan.ts",
      ],
    );
  });

  test("dot: quotes, backslashes and newlines in labels are escaped", () => {
    assert.equal(dotLabel(`echo "a\\b"`), `"echo \\"a\\\\b\\""`);
    assert.equal(dotLabel("echo 1\necho 2"), `"echo 1\\necho 2"`);
    assert.equal(dotLabel("a\\"), `"a\\\\"`);
    const g = new Graph();
    ok(g.declareStatic(null, ["sub/"]));
    ok(g.defineStep(null, def('printf "%s\\n" x\n  > "out put.txt"', { workdir: "sub/", out: ["sub/out put.txt"] })));
    const dot = graphDot(g, "supplier");
    const line = dot.split("\n").find((l) => l.startsWith("  s0 "))!;
    assert.equal(line, `  s0 [shape=ellipse, label="printf \\"%s\\\\n\\" x\\n  > \\"out put.txt\\"\\n(wd=sub/)"];`);
    // Every quote inside a label is escaped: unescaped quotes only delimit the label.
    for (const l of dot.split("\n")) {
      const bare = l.replace(/\\\\/g, "").replace(/\\"/g, "");
      assert.equal((bare.match(/"/g) ?? []).length % 2, 0, l);
    }
  });

  test("dot: labels are wrapped at spaces or slashes, long words split", () => {
    assert.deepEqual(wrapLabel("python scripts/convert.py data/raw/input.csv --out x"), [
      "python scripts/",
      "convert.py data/raw/",
      "input.csv --out x",
    ]);
    assert.deepEqual(wrapLabel("x".repeat(50)), ["x".repeat(24), "x".repeat(24), "xx"]);
    assert.deepEqual(wrapLabel("short"), ["short"]);
    for (const l of wrapLabel("a ".repeat(100) + "b/".repeat(100))) assert.ok(l.length <= 24, l);
  });

  test("a chain of 100,000 steps is written quickly", () => {
    const n = 100_000;
    const g = new Graph();
    ok(g.declareStatic(null, ["f0"]));
    for (let i = 0; i < n; i++) ok(g.defineStep(null, def(`cp f${i} f${i + 1}`, { inp: [`f${i}`], out: [`f${i + 1}`] })));
    // Only the report is timed; the bound is loose because test machines are busy, while
    // quadratic behaviour at this size would take minutes.
    const start = performance.now();
    const text = graphText(g);
    const supplier = graphDot(g, "supplier");
    const creator = graphDot(g, "creator");
    const elapsed = performance.now() - start;
    // root: header, n+1 `creates` (./, f0, and n steps is n+2), blank.
    const rootLines = 1 + (n + 2) + 1;
    // ./: key, path, state, created by, n supplies, blank. f0: the same with one consumer.
    // f1..fn: key, path, state, produced by, supplies (none for fn), blank.
    const fileLines = 4 + n + 1 + (4 + 1 + 1) + n * 5 + (n - 1);
    // Steps: key, workdir, command, state, fingerprint, created by, 2 consumes, 1 supplies, blank.
    const stepLines = n * 10;
    assert.equal(lineCount(text), rootLines + fileLines + stepLines);
    // Header 3 + closing 2; supplier: n+1 files, n steps, 2n edges.
    assert.equal(lineCount(supplier), 5 + (n + 1) + n + 2 * n);
    // Creator: root, ./ and f0, n steps, and one edge for each of them but root.
    assert.equal(lineCount(creator), 5 + 1 + 2 + n + 2 + n);
    assert.ok(elapsed < 20_000, `took ${elapsed} ms`);
  });
});
