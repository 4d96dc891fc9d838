// File-system globbing (src/glob/walk.ts) and multi-pattern globs on a real temp tree
// (src/glob/multi.ts). Expected results are exact sorted arrays.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compilePattern } from "../../src/glob/pattern.js";
import { globFiles } from "../../src/glob/walk.js";
import { globMulti } from "../../src/glob/multi.js";

let base = "";
let root = "";

function touch(rel: string): void {
  const abs = join(root, rel);
  mkdirSync(join(abs, ".."), { recursive: true });
  writeFileSync(abs, rel);
}

function glob(pattern: string, subs?: Record<string, string>): string[] {
  return globFiles(root, compilePattern(pattern, subs));
}

before(() => {
  // realpath: on some systems tmpdir() itself is a symlink, and absolute results must be exact.
  base = realpathSync(mkdtempSync(join(tmpdir(), "tsup-glob-")));
  root = join(base, "proj");
  for (const f of [
    "plan.ts",
    ".hidden",
    ".git/config",
    "data/a.csv",
    "data/b.csv",
    "data/.c.csv",
    "data/notes.txt",
    "data/raw/x.csv",
    "data/raw/deep/y.csv",
    "data/raw/deep/z.txt",
    "ch1/sec.md",
    "chx",
    "loop/f.txt",
    "pairs/ab/ab.txt",
    "pairs/ab/a.txt",
    "pairs/cd/cd.txt",
  ]) {
    touch(f);
  }
  mkdirSync(join(root, "ch2"));
  mkdirSync(join(root, "empty"));
  // A link back to its own directory: "**" must not loop, but the link is still listed.
  symlinkSync(".", join(root, "loop/self"));
  // A link to a sibling directory behaves like a directory.
  symlinkSync("data", join(root, "link-to-data"));
  symlinkSync("does-not-exist", join(root, "dangling"));
  mkdirSync(join(base, "outside"));
  writeFileSync(join(base, "outside/o.txt"), "o");
  writeFileSync(join(base, "outside/p.dat"), "p");
});

after(() => {
  rmSync(base, { recursive: true, force: true });
});

describe("globFiles", () => {
  it("matches one directory level with * (hidden files included)", () => {
    assert.deepEqual(glob("data/*.csv"), ["data/.c.csv", "data/a.csv", "data/b.csv"]);
    assert.deepEqual(glob("data/?.csv"), ["data/a.csv", "data/b.csv"]);
    assert.deepEqual(glob("data/[!a].csv"), ["data/b.csv"]);
    assert.deepEqual(glob(".*"), [".hidden"]);
    assert.deepEqual(glob(".*/"), [".git/"]);
  });

  it("separates files and directories by the trailing slash", () => {
    assert.deepEqual(glob("ch*/"), ["ch1/", "ch2/"]);
    assert.deepEqual(glob("ch*"), ["chx"]);
    assert.deepEqual(glob("*/"), [".git/", "ch1/", "ch2/", "data/", "empty/", "link-to-data/", "loop/", "pairs/"]);
    assert.deepEqual(glob("*"), [".hidden", "chx", "dangling", "plan.ts"]);
  });

  it("recurses with ** at the start, in the middle and at the end", () => {
    assert.deepEqual(glob("**/config"), [".git/config"]);
    assert.deepEqual(glob("data/**/*.csv"), [
      "data/.c.csv",
      "data/a.csv",
      "data/b.csv",
      "data/raw/deep/y.csv",
      "data/raw/x.csv",
    ]);
    assert.deepEqual(glob("data/**"), [
      "data/",
      "data/.c.csv",
      "data/a.csv",
      "data/b.csv",
      "data/notes.txt",
      "data/raw/",
      "data/raw/deep/",
      "data/raw/deep/y.csv",
      "data/raw/deep/z.txt",
      "data/raw/x.csv",
    ]);
    assert.deepEqual(glob("data/**/"), ["data/", "data/raw/", "data/raw/deep/"]);
    assert.deepEqual(glob("**/*.txt"), [
      "data/notes.txt",
      "data/raw/deep/z.txt",
      "link-to-data/notes.txt",
      "link-to-data/raw/deep/z.txt",
      "loop/f.txt",
      "pairs/ab/a.txt",
      "pairs/ab/ab.txt",
      "pairs/cd/cd.txt",
    ]);
  });

  it("does not follow a symlink loop but lists the link", () => {
    assert.deepEqual(glob("loop/**"), ["loop/", "loop/f.txt", "loop/self/"]);
    // Without "**" the depth is bounded, so the link is followed as often as the pattern says.
    assert.deepEqual(glob("loop/*/f.txt"), ["loop/self/f.txt"]);
    assert.deepEqual(glob("loop/*/*/f.txt"), ["loop/self/self/f.txt"]);
    assert.deepEqual(glob("link-to-data/*.csv"), ["link-to-data/.c.csv", "link-to-data/a.csv", "link-to-data/b.csv"]);
  });

  it("checks literal patterns with a single lookup", () => {
    assert.deepEqual(glob("data/a.csv"), ["data/a.csv"]);
    assert.deepEqual(glob("data/missing.csv"), []);
    assert.deepEqual(glob("data/"), ["data/"]);
    assert.deepEqual(glob("data"), []); // a directory needs the trailing slash
    assert.deepEqual(glob("data/a.csv/"), []);
    assert.deepEqual(glob("./"), ["./"]);
    assert.deepEqual(glob("nowhere/*.csv"), []);
    assert.deepEqual(glob("chx/*"), []); // prefix is a file
  });

  it("enforces named values and back-references on disk", () => {
    assert.deepEqual(glob("pairs/${*d}/${*d}.txt"), ["pairs/ab/ab.txt", "pairs/cd/cd.txt"]);
    assert.deepEqual(glob("data/${*n}.csv", { n: "[ab]" }), ["data/a.csv", "data/b.csv"]);
    assert.deepEqual(glob("ch${*n}/"), ["ch1/", "ch2/"]);
  });

  it("walks outside the root with ../ and absolute patterns, keeping their form", () => {
    assert.deepEqual(glob("../outside/*.txt"), ["../outside/o.txt"]);
    assert.deepEqual(glob("../outside/"), ["../outside/"]);
    assert.deepEqual(glob(`${base}/outside/*`), [`${base}/outside/o.txt`, `${base}/outside/p.dat`]);
    assert.deepEqual(glob(`${base}/out*/`), [`${base}/outside/`]);
    assert.deepEqual(glob(`${base}/outside/**`), [`${base}/outside/`, `${base}/outside/o.txt`, `${base}/outside/p.dat`]);
  });

  it("matches the whole tree with a bare **, but never ./", () => {
    const data = ["", ".c.csv", "a.csv", "b.csv", "notes.txt", "raw/", "raw/deep/", "raw/deep/y.csv", "raw/deep/z.txt", "raw/x.csv"];
    assert.deepEqual(glob("**"), [
      ".git/",
      ".git/config",
      ".hidden",
      "ch1/",
      "ch1/sec.md",
      "ch2/",
      "chx",
      "dangling",
      ...data.map((p) => `data/${p}`),
      "empty/",
      ...data.map((p) => `link-to-data/${p}`),
      "loop/",
      "loop/f.txt",
      "loop/self/",
      "pairs/",
      "pairs/ab/",
      "pairs/ab/a.txt",
      "pairs/ab/ab.txt",
      "pairs/cd/",
      "pairs/cd/cd.txt",
      "plan.ts",
    ]);
  });
});

describe("globMulti on disk", () => {
  it("pairs heads and tails like scenario static_nglob_partial", () => {
    // A root of its own, so that these files do not show up in the other tests.
    const proj = join(base, "partial");
    mkdirSync(proj);
    const touch = (rel: string): void => writeFileSync(join(proj, rel), rel);
    const pair = (): string[][] =>
      globMulti(proj, ["head_${*char}.txt", "tail_${*char}.txt"], { char: "?" })
        .matches()
        .map((m) => [m.values.char, m.file(0), m.file(1)]);
    touch("head_ignored.txt");
    touch("tail_ignored.txt");
    touch("head_x.txt");
    touch("tail_x.txt");
    touch("head_y.txt");
    assert.deepEqual(pair(), [["x", "head_x.txt", "tail_x.txt"]]);
    const r = globMulti(proj, ["head_${*char}.txt", "tail_${*char}.txt"], { char: "?" });
    assert.deepEqual(r.files(), ["head_x.txt", "head_y.txt", "tail_x.txt"]);
    assert.deepEqual(r.consistentFiles(), ["head_x.txt", "tail_x.txt"]);

    touch("tail_y.txt");
    touch("head_z.txt");
    assert.deepEqual(pair(), [
      ["x", "head_x.txt", "tail_x.txt"],
      ["y", "head_y.txt", "tail_y.txt"],
    ]);

    unlinkSync(join(proj, "tail_y.txt"));
    assert.deepEqual(pair(), [["x", "head_x.txt", "tail_x.txt"]]);

    touch("tail_y.txt");
    touch("tail_z.txt");
    assert.deepEqual(pair(), [
      ["x", "head_x.txt", "tail_x.txt"],
      ["y", "head_y.txt", "tail_y.txt"],
      ["z", "head_z.txt", "tail_z.txt"],
    ]);
    // Without the "?" substitution the long names pair up as well.
    assert.deepEqual(
      globMulti(proj, ["head_${*char}.txt", "tail_${*char}.txt"]).matches().map((m) => m.values.char),
      ["ignored", "x", "y", "z"],
    );
  });

  it("works as a condition and iterates plain paths without names", () => {
    const present = globMulti(root, ["plan.ts"]);
    assert.equal(present.isEmpty(), false);
    assert.deepEqual([...present], ["plan.ts"]);
    assert.equal(present.single(), "plan.ts");
    const absent = globMulti(root, ["data.txt"]);
    assert.equal(absent.isEmpty(), true);
    assert.throws(() => absent.single(), /exactly one file matching glob "data.txt", found 0/);
  });

  it("combines directories and the files inside them", () => {
    const r = globMulti(root, ["ch${*n}/", "ch${*n}/*.md"]);
    assert.deepEqual(
      r.matches().map((m) => [m.values.n, m.files]),
      [["1", [["ch1/"], ["ch1/sec.md"]]]],
    );
    assert.deepEqual(r.files(), ["ch1/", "ch1/sec.md", "ch2/"]);
  });
});
