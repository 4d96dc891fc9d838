// End-to-end: deferred globs (static files declared only when used).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { freshProjects, show, tsup, withAction } from "./harness.js";

const fresh = freshProjects();

describe("deferred globs", () => {
  const plan = `import { glob, step } from "tsup-flow";
glob("data/**", { defer: true });
step("cat \${inp} > \${out}", { inp: ["data/a.txt", "data/sub/b.txt"], out: "ab.txt" });
`;

  test("only files that steps use become static; the plan is skipped on restart", async () => {
    const p = fresh({ "plan.ts": plan, "data/a.txt": "a\n", "data/sub/b.txt": "b\n", "data/unused.txt": "u\n" });
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("ab.txt"), "a\nb\n");
    p.write("data/unused.txt", "changed\n");
    const again = await tsup(p.dir);
    assert.deepEqual(withAction(again, "START"), [], show(again));
    assert.deepEqual(withAction(again, "SKIP").sort(), ["./plan.ts", "cat data/a.txt data/sub/b.txt > ab.txt"]);
    p.write("data/sub/b.txt", "B\n");
    const used = await tsup(p.dir);
    assert.deepEqual(withAction(used, "START"), ["cat data/a.txt data/sub/b.txt > ab.txt"], show(used));
    assert.equal(p.read("ab.txt"), "a\nB\n");
  });

  test("a used file that does not exist leaves its step pending", async () => {
    const p = fresh({ "plan.ts": plan, "data/a.txt": "a\n" });
    const r = await tsup(p.dir);
    assert.equal(r.code, 5, show(r));
    assert.match(r.stdout, /\(data\/sub\/b\.txt\)/);
  });

  test("an input matching two deferred globs is an error naming the line", async () => {
    const p = fresh({
      "plan.ts": `import { glob, step } from "tsup-flow";\nglob("data/*.txt", { defer: true });\nglob("data/a.*", { defer: true });\nstep("cat \${inp}", { inp: "data/a.txt" });\n`,
      "data/a.txt": "a\n",
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /plan\.ts:4:1: error: input data\/a\.txt matches more than one deferred glob/);
  });

  test("absolute deferred patterns and outputs matching a deferred glob are errors", async () => {
    const abs = fresh({ "plan.ts": `import { glob } from "tsup-flow";\nglob("/tmp/*.txt", { defer: true });\n` });
    const r = await tsup(abs.dir);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /plan\.ts:2:1: error: deferred glob patterns cannot be absolute: \/tmp\/\*\.txt/);
    const out = fresh({
      "plan.ts": `import { glob, step } from "tsup-flow";\nglob("gen/*", { defer: true });\nstep("true", { out: "gen/x" });\n`,
    });
    const r2 = await tsup(out.dir);
    assert.equal(r2.code, 3, show(r2));
    assert.match(r2.stdout, /plan\.ts:3:1: error: output gen\/x matches the deferred glob gen\/\*/);
  });
});
