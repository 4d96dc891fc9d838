import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ChangeRecorder, entriesBelow } from "../../src/director/changes.js";
import type { TsupEvent } from "../../src/events.js";
import { addGlob, Graph, type StepDefinition } from "../../src/workflow/graph.js";

function def(command: string, parts: Partial<StepDefinition> = {}): StepDefinition {
  return { command, workdir: "./", inp: [], out: [], vol: [], env: [], pool: null, optional: false, block: false, ...parts };
}

const root = mkdtempSync(join(tmpdir(), "tsup-changes-"));
after(() => rmSync(root, { recursive: true, force: true }));
for (const dir of ["data/a/raw", "data/b/raw", "data/b/other", "deep/x/y", ".stepup"]) mkdirSync(join(root, dir), { recursive: true });
writeFileSync(join(root, "data/a/raw/1.csv"), "");

/** plan.ts declares in.txt, a step reads it and writes out.txt, plus a volatile log; the plan globbed. */
function workflow(): Graph {
  const g = new Graph();
  const unwrap = <T>(r: { ok: true; value: T } | { ok: false; error: string }): T => {
    if (!r.ok) assert.fail(r.error);
    return r.value;
  };
  unwrap(g.declareStatic(null, ["plan.ts"]));
  const plan = unwrap(g.defineStep(null, def("./plan.ts", { inp: ["plan.ts"] })));
  plan.state = "running";
  unwrap(g.declareStatic(plan, ["src/in.txt"]));
  unwrap(g.defineStep(plan, def("cp src/in.txt out.txt", { inp: ["src/in.txt"], out: ["out.txt"], vol: ["log.txt"] })));
  addGlob(plan, { patterns: ["data/*/raw/*.csv"], subs: {}, workdir: "./", matches: ["data/a/raw/1.csv"], deferred: false });
  addGlob(plan, { patterns: ["**/*.md"], subs: {}, workdir: "deep/", matches: [], deferred: false });
  return g;
}

function recorder(): { rec: ChangeRecorder; events: TsupEvent[]; recorded: string[] } {
  const events: TsupEvent[] = [];
  const recorded: string[] = [];
  const rec = new ChangeRecorder({
    root,
    sink: { emit: (e) => events.push(e) },
    onRecorded: (path, change) => recorded.push(`${change} ${path}`),
  });
  return { rec, events, recorded };
}

describe("change recorder", () => {
  test("records known files and glob matches once per change; ignores the rest and volatile files", () => {
    const { rec, events, recorded } = recorder();
    rec.beginWatch(workflow());
    rec.event("src/in.txt", "updated");
    rec.event("src/in.txt", "updated");
    rec.event("out.txt", "deleted");
    rec.event("log.txt", "updated");
    rec.event("notes.txt", "updated");
    rec.event("data/c/raw/2.csv", "updated");
    rec.event("data/c/raw/2.txt", "updated");
    rec.event("deep/x/y/readme.md", "updated");
    rec.event("src/in.txt", "deleted");
    assert.deepEqual(recorded, [
      "updated src/in.txt",
      "deleted out.txt",
      "updated data/c/raw/2.csv",
      "updated deep/x/y/readme.md",
      "deleted src/in.txt",
    ]);
    assert.deepEqual(events.map((e) => e.kind), ["updated", "deleted", "updated", "updated", "deleted"]);
    assert.equal(rec.recorded.get("src/in.txt"), "deleted");
  });

  test("events during a run phase count for static files and glob matches, not for outputs", () => {
    const { rec, recorded } = recorder();
    rec.beginRun();
    rec.event("out.txt", "updated");
    rec.event("src/in.txt", "updated");
    rec.event("data/b/raw/new.csv", "updated");
    rec.event("elsewhere.txt", "updated");
    assert.deepEqual(recorded, []);
    rec.beginWatch(workflow());
    assert.deepEqual(recorded, ["updated src/in.txt", "updated data/b/raw/new.csv"]);
    rec.beginRun();
    assert.equal(rec.recorded.size, 0, "a run phase starts with nothing recorded");
  });

  test("a deleted directory reported without its slash is matched to the known directory", () => {
    const { rec, recorded } = recorder();
    const g = workflow();
    rec.beginWatch(g);
    rec.event("src", "deleted");
    assert.deepEqual(recorded, ["deleted src/"]);
  });

  test("watches the folders of known files and every folder a glob can match in, never .stepup", () => {
    const { rec } = recorder();
    rec.beginWatch(workflow());
    const dirs = [...rec.directoriesToWatch()].sort();
    assert.deepEqual(dirs, ["./", "data/", "data/a/", "data/a/raw/", "data/b/", "data/b/raw/", "deep/", "deep/x/", "deep/x/y/", "src/"]);
    assert.ok(rec.globsReachInto("data/new/"));
    assert.ok(!rec.globsReachInto("src/"));
  });

  test("entriesBelow lists a new folder's contents, skipping .stepup", () => {
    const entries = entriesBelow(root, "./").sort();
    assert.ok(entries.includes("data/a/raw/1.csv"));
    assert.ok(entries.includes("deep/x/y/"));
    assert.ok(!entries.some((e) => e.startsWith(".stepup")));
  });
});
