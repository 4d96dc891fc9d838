// Pattern → match tables for src/glob/pattern.ts, plus path-list (no file system) multi-pattern
// consistency from src/glob/multi.ts. Every case states the exact expected values, so a matcher
// that is too loose or too strict fails.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { compilePattern } from "../../src/glob/pattern.js";
import { globPaths, matchPath, type GlobMatch, type NamedWildcards } from "../../src/glob/multi.js";

type Case = [pattern: string, path: string, expected: Record<string, string> | undefined];

function checkTable(cases: readonly Case[], subs?: Record<string, string>): void {
  for (const [pattern, path, expected] of cases) {
    assert.deepEqual(
      compilePattern(pattern, subs).match(path),
      expected,
      `pattern ${JSON.stringify(pattern)} vs path ${JSON.stringify(path)}`,
    );
  }
}

const NO = undefined;
const YES = {};

describe("compilePattern: plain wildcards", () => {
  it("matches literal paths exactly", () => {
    checkTable([
      ["data.txt", "data.txt", YES],
      ["data.txt", "data.txt/", NO],
      ["data.txt", "xdata.txt", NO],
      ["a/b.c", "a/b.c", YES],
      ["a/b.c", "a/bxc", NO], // "." is not a regex wildcard
      ["a+(b)", "a+(b)", YES],
      ["a+(b)", "aa(b)", NO],
      ["x-y", "x-y", YES],
      ["a\\b", "a\\b", YES], // no backslash escapes
      ["./", "./", YES],
      ["../up.txt", "../up.txt", YES],
      ["/abs/file", "/abs/file", YES],
      ["/abs/file", "abs/file", NO],
    ]);
  });

  it("* matches any run of non-slash characters, never crossing /", () => {
    checkTable([
      ["*.txt", "a.txt", YES],
      ["*.txt", ".txt", YES],
      ["*.txt", ".hidden.txt", YES],
      ["*.txt", "a.csv", NO],
      ["*.txt", "sub/a.txt", NO],
      ["*", "a", YES],
      ["*", "a/", NO], // files only without a trailing slash
      ["*", "a/b", NO],
      ["a*b", "ab", YES],
      ["a*b", "axyzb", YES],
      ["a*b", "ax/yb", NO],
      ["*/x", "a/x", YES],
      ["*/x", "a/b/x", NO],
      ["*/x", "../x", NO], // wildcards never produce "." or ".."
      ["*/x", "./x", NO],
      ["*", "..", NO],
      ["../*.txt", "../a.txt", YES],
      ["/tmp/*.txt", "/tmp/a.txt", YES],
      ["/tmp/*.txt", "tmp/a.txt", NO],
    ]);
  });

  it("? matches exactly one non-slash character", () => {
    checkTable([
      ["?.txt", "a.txt", YES],
      ["?.txt", "ab.txt", NO],
      ["?.txt", ".txt", NO],
      ["a?b", "a/b", NO],
      ["??", "ab", YES],
      ["??", "a", NO],
      ["?", "é", YES], // one code point, not one UTF-16 unit
      ["?", "😀", YES],
    ]);
  });

  it("supports classes, ranges and negated classes", () => {
    checkTable([
      ["[abc].txt", "b.txt", YES],
      ["[abc].txt", "d.txt", NO],
      ["[a-c]x", "cx", YES],
      ["[a-c]x", "dx", NO],
      ["[!abc].txt", "d.txt", YES],
      ["[!abc].txt", "a.txt", NO],
      ["[^abc].txt", "d.txt", YES],
      ["[^abc].txt", "c.txt", NO],
      ["a[!x]b", "a/b", NO], // a negated class still never matches "/"
      ["[]]", "]", YES],
      ["[]a]", "a", YES],
      ["[!]]", "]", NO],
      ["[!]]", "x", YES],
      ["[a-]", "-", YES],
      ["[*?]", "*", YES],
      ["[*?]", "x", NO],
      ["[[]", "[", YES],
      ["[\\]", "\\", YES],
      ["file[0-9][0-9].dat", "file42.dat", YES],
      ["file[0-9][0-9].dat", "file4x.dat", NO],
    ]);
  });
});

describe("compilePattern: ** components", () => {
  it("leading **/ matches zero or more directories", () => {
    checkTable([
      ["**/x.txt", "x.txt", YES],
      ["**/x.txt", "a/x.txt", YES],
      ["**/x.txt", "a/b/c/x.txt", YES],
      ["**/x.txt", ".git/x.txt", YES],
      ["**/x.txt", "a/y.txt", NO],
      ["**/x.txt", "a/x.txt/", NO],
      ["**/x.txt", "../x.txt", NO],
      ["**/x.txt", "/abs/x.txt", NO],
      ["**/*.txt", "a/b/c.txt", YES],
    ]);
  });

  it("middle /**/ matches zero or more directories", () => {
    checkTable([
      ["a/**/b", "a/b", YES],
      ["a/**/b", "a/x/b", YES],
      ["a/**/b", "a/x/y/b", YES],
      ["a/**/b", "a/b/", NO],
      ["a/**/b", "ab", NO],
      ["a/**/b", "b", NO],
      ["a/**/b", "a/x/y/c", NO],
      ["a/**/**/b", "a/b", YES], // repeated ** merge
      ["a/**/b/", "a/x/b/", YES],
      ["a/**/b/", "a/x/b", NO],
    ]);
  });

  it("trailing /** matches the directory itself and everything below", () => {
    checkTable([
      ["data/**", "data/", YES],
      ["data/**", "data/a.txt", YES],
      ["data/**", "data/sub/", YES],
      ["data/**", "data/sub/deep/f", YES],
      ["data/**", "data", NO],
      ["data/**", "database/x", NO],
      ["data/**", "other/a.txt", NO],
      ["data/**/", "data/", YES],
      ["data/**/", "data/sub/deep/", YES],
      ["data/**/", "data/sub/file", NO],
    ]);
  });

  it("a whole-pattern ** matches every relative path below the root", () => {
    checkTable([
      ["**", "a", YES],
      ["**", "a/", YES],
      ["**", "a/b/c", YES],
      ["**", ".hidden/x", YES],
      ["**", "./", NO],
      ["**", "../a", NO],
      ["**", "/a", NO],
      ["**/", "a/b/", YES],
      ["**/", "a/b", NO],
      ["/**", "/", YES],
      ["/**", "/usr/bin/env", YES],
    ]);
  });

  it("** glued to other text acts as a single *", () => {
    checkTable([
      ["a**b", "axyb", YES],
      ["a**b", "ab", YES],
      ["a**b", "ax/yb", NO],
      ["data**", "data1", YES],
      ["data**", "data/x", NO],
      ["**.txt", "a.txt", YES],
      ["**.txt", "a/b.txt", NO],
    ]);
  });
});

describe("compilePattern: named wildcards", () => {
  it("match at least one non-slash character and report their values", () => {
    checkTable([
      ["data/${*name}.csv", "data/a.csv", { name: "a" }],
      ["data/${*name}.csv", "data/long-name.csv", { name: "long-name" }],
      ["data/${*name}.csv", "data/.csv", NO], // never empty (StepUp bug 10 fixed)
      ["data/${*name}.csv", "data/x/y.csv", NO],
      ["prefix_${*f}.txt", "prefix_.txt", NO],
      ["${*a}-${*b}", "x-y-z", { a: "x-y", b: "z" }], // ambiguous: the earlier name is greedy
      ["ch-${*ch}/sec-${*sec}.md", "ch-1/sec-2.md", { ch: "1", sec: "2" }],
      ["${*d}/", "sub/", { d: "sub" }],
      ["${*d}/", "sub", NO],
      ["${*d}/x", "../x", NO],
    ]);
  });

  it("repeated names are back-references", () => {
    checkTable([
      ["prefix_${*name}_something_${*name}.txt", "prefix_aaa_something_aaa.txt", { name: "aaa" }],
      ["prefix_${*name}_something_${*name}.txt", "prefix_aaa_something_bbb.txt", NO],
      ["${*x}/${*x}.txt", "ab/ab.txt", { x: "ab" }],
      ["${*x}/${*x}.txt", "ab/a.txt", NO],
      ["${*x}${*x}", "abab", { x: "ab" }],
      ["${*x}${*x}", "aba", NO],
    ]);
  });

  it("subs replace the default with a glob fragment", () => {
    const subs = { n: "[0-9]", two: "??", lit: "01", star: "*" };
    checkTable(
      [
        ["f${*n}.txt", "f7.txt", { n: "7" }],
        ["f${*n}.txt", "f77.txt", NO],
        ["f${*n}.txt", "fa.txt", NO],
        ["${*two}.x", "ab.x", { two: "ab" }],
        ["${*two}.x", "abc.x", NO],
        ["ch-${*lit}/", "ch-01/", { lit: "01" }],
        ["ch-${*lit}/", "ch-02/", NO],
        ["a${*star}b", "ab", NO], // an all-* fragment still needs one character
        ["a${*star}b", "axb", { star: "x" }],
      ],
      subs,
    );
    // A substitution is a glob fragment, so its regex specials are literal text.
    checkTable([["v${*v}", "v1.2", { v: "1.2" }], ["v${*v}", "v1x2", NO]], { v: "1.2" });
  });

  it("lists names sorted and unique", () => {
    assert.deepEqual(compilePattern("${*z}/${*a}_${*z}").names, ["a", "z"]);
    assert.deepEqual(compilePattern("*.txt").names, []);
  });
});

describe("compilePattern: directory patterns", () => {
  it("a trailing / matches directories only, otherwise files only", () => {
    checkTable([
      ["ch*/", "ch1/", YES],
      ["ch*/", "ch1", NO],
      ["ch*", "ch1", YES],
      ["ch*", "ch1/", NO],
      ["sub/", "sub/", YES],
      ["sub/", "sub", NO],
      ["/", "/", YES],
    ]);
  });
});

describe("compilePattern: static prefix and flags", () => {
  it("computes the longest wildcard-free leading directory", () => {
    const table: [string, string, boolean][] = [
      ["data/raw/*.csv", "data/raw/", true],
      ["*.csv", "./", true],
      ["data/*/x.csv", "data/", true],
      ["data/**", "data/", true],
      ["**/x", "./", true],
      ["a/${*n}/b", "a/", true],
      ["data/raw/file.csv", "data/raw/", false],
      ["file.csv", "./", false],
      ["sub/", "./", false],
      ["/usr/lib/*.so", "/usr/lib/", true],
      ["/*", "/", true],
      ["../x/*.txt", "../x/", true],
      ["./data/*.txt", "data/", true], // normalized first
    ];
    for (const [pattern, prefix, wild] of table) {
      const c = compilePattern(pattern);
      assert.equal(c.staticPrefix, prefix, pattern);
      assert.equal(c.hasWildcards, wild, pattern);
    }
    assert.equal(compilePattern("d/").dirOnly, true);
    assert.equal(compilePattern("d").dirOnly, false);
  });
});

describe("compilePattern: errors", () => {
  it("rejects invalid patterns with a message naming the pattern", () => {
    const bad: [string, RegExp][] = [
      ["", /empty/],
      ["a[bc", /"a\[bc".*unclosed "\["/],
      ["a[b/c]", /"a\[b\/c\]".*unclosed "\["/],
      ["x${*1bad}", /"x\$\{\*1bad\}".*bad wildcard name "1bad"/],
      ["x${*}", /bad wildcard name ""/],
      ["x${*a b}", /bad wildcard name "a b"/],
      ["x${*open", /unclosed "\$\{\*"/],
      ["[z-a]", /invalid range "z-a"/],
    ];
    for (const [pattern, message] of bad) {
      assert.throws(() => compilePattern(pattern), message, pattern);
    }
  });

  it("rejects bad substitutions", () => {
    assert.throws(() => compilePattern("${*a}", { a: "" }), /"\$\{\*a\}".*substitution for "a" is empty/);
    assert.throws(() => compilePattern("${*a}", { a: "x/y" }), /contains "\/"/);
    assert.throws(() => compilePattern("${*a}", { a: "${*b}" }), /cannot contain a named wildcard/);
    assert.throws(() => compilePattern("${*a}", { a: "[ab" }), /unclosed "\["/);
  });
});

describe("globPaths: multi-pattern consistency without the file system", () => {
  const paths = ["head_a.txt", "tail_a.txt", "head_b.txt", "tail_c.txt", "head_d.txt", "tail_d.txt", "other.txt"];

  it("keeps only combinations every pattern matches", () => {
    const r = globPaths(["head_${*c}.txt", "tail_${*c}.txt"], paths);
    assert.deepEqual(
      r.matches().map((m) => [m.values.c, m.files]),
      [
        ["a", [["head_a.txt"], ["tail_a.txt"]]],
        ["d", [["head_d.txt"], ["tail_d.txt"]]],
      ],
    );
    assert.deepEqual(r.files(), ["head_a.txt", "head_b.txt", "head_d.txt", "tail_a.txt", "tail_c.txt", "tail_d.txt"]);
    assert.deepEqual(r.consistentFiles(), ["head_a.txt", "head_d.txt", "tail_a.txt", "tail_d.txt"]);
    assert.equal(r.length, 2);
    assert.equal(r.isEmpty(), false);
    assert.deepEqual(r.filesOf(1), ["tail_a.txt", "tail_c.txt", "tail_d.txt"]);
    const items = [...r] as GlobMatch<"c">[];
    assert.deepEqual(items.map((m) => m.file(1)), ["tail_a.txt", "tail_d.txt"]);
  });

  it("joins on shared names and multiplies independent ones", () => {
    const r = globPaths(
      ["${*x}-${*y}.a", "${*y}.b", "${*z}.c"],
      ["1-p.a", "1-q.a", "2-p.a", "p.b", "u.c", "v.c"],
    );
    assert.deepEqual(
      r.matches().map((m) => m.values),
      [
        { x: "1", y: "p", z: "u" },
        { x: "1", y: "p", z: "v" },
        { x: "2", y: "p", z: "u" },
        { x: "2", y: "p", z: "v" },
      ],
    );
    assert.deepEqual(r.names, ["x", "y", "z"]);
  });

  it("groups several files per pattern under one combination", () => {
    const r = globPaths(["${*n}/*.txt", "${*n}.md"], ["a/2.txt", "a/1.txt", "a.md", "b/1.txt", "c.md"]);
    const [m, ...rest] = r.matches();
    assert.equal(rest.length, 0);
    assert.deepEqual(m?.files, [["a/1.txt", "a/2.txt"], ["a.md"]]);
    assert.equal(m?.file(1), "a.md");
    assert.throws(() => m?.file(0), /exactly one file for pattern "\$\{\*n\}\/\*\.txt".*found 2/);
    assert.throws(() => m?.file(2), /no pattern 2/);
  });

  it("patterns without names form one combination that needs every pattern", () => {
    const both = globPaths(["a*.txt", "b*.txt"], ["a1.txt", "a2.txt", "b1.txt"]);
    assert.deepEqual([...both], ["a1.txt", "a2.txt", "b1.txt"]);
    assert.equal(both.length, 3);
    assert.equal(both.matches().length, 1);
    assert.deepEqual(both.matches()[0]?.values, {});

    const half = globPaths(["a*.txt", "c*.txt"], ["a1.txt", "b1.txt"]);
    assert.equal(half.isEmpty(), true);
    assert.equal(half.length, 0);
    assert.deepEqual([...half], []);
    assert.deepEqual(half.files(), ["a1.txt"]); // still declared static
    assert.deepEqual(half.consistentFiles(), []);
  });

  it("single() demands exactly one consistent file", () => {
    assert.equal(globPaths(["sub/*"], ["sub/x", "other/y"]).single(), "sub/x");
    assert.throws(() => globPaths(["sub/*"], ["sub/x", "sub/y"]).single(), /exactly one file matching glob "sub\/\*", found 2/);
    assert.throws(() => globPaths(["sub/*"], []).single(), /found 0/);
  });

  it("applies shared subs and rejects unused ones", () => {
    const r = globPaths(["x${*n}.a", "y${*n}.b"], ["x1.a", "x2.a", "x22.a", "y1.b", "y22.b"], { n: "?" });
    assert.deepEqual(r.matches().map((m) => m.values.n), ["1"]);
    assert.throws(() => globPaths(["x${*n}.a"], [], { m: "?" }), /Substitution for "m" does not match a named wildcard/);
    assert.throws(() => globPaths([], []), /At least one pattern/);
  });

  it("matchPath and mayMatch test single paths against any pattern", () => {
    assert.equal(matchPath(["data/${*n}.csv", "plots/${*n}.png"], "plots/x.png"), true);
    assert.equal(matchPath(["data/${*n}.csv", "plots/${*n}.png"], "plots/x.jpg"), false);
    assert.equal(matchPath([compilePattern("f${*n}")], "f7", {}), true);
    assert.equal(matchPath(["f${*n}"], "fx", { n: "[0-9]" }), false);
    const r = globPaths(["head_${*c}.txt", "tail_${*c}.txt"], []);
    assert.equal(r.mayMatch("tail_q.txt"), true);
    assert.equal(r.mayMatch("tail_.txt"), false);
  });

  it("infers named wildcard types from literal patterns", () => {
    // Compile-time checks: these assignments only type-check if the inference is right.
    const names: NamedWildcards<"a/${*first}/${*second}.txt"> = "second";
    const none: [NamedWildcards<"*.txt">] extends [never] ? true : false = true;
    const loose: NamedWildcards<string> = "anything";
    assert.deepEqual([names, none, loose], ["second", true, "anything"]);
    const r = globPaths(["data/${*name}.csv"] as const, ["data/q.csv"]);
    for (const m of r) {
      const name: string = m.values.name; // typed as string, not string | undefined
      assert.equal(name, "q");
    }
  });
});
