import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { crc32 } from "node:zlib";
import type { TsupEvent } from "../../src/events.js";
import { openState, StepJournal } from "../../src/director/persistence.js";
import {
  applyInGeneral,
  applyJournal,
  encodeEntry,
  JOURNAL_FILE,
  JournalWriter,
  newGeneration,
  parseJournal,
  readJournal,
  type JournalEntry,
} from "../../src/state/journal.js";
import { FileHashes } from "../../src/state/filehashes.js";
import { loadState, saveState, STATE_FILE } from "../../src/state/store.js";
import type { FileHash, Fingerprint, SavedState, SavedStep } from "../../src/state/types.js";
import type { StepDefinition } from "../../src/workflow/definition.js";
import { stepKey } from "../../src/workflow/graph.js";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempStepup(): string {
  const root = mkdtempSync(join(tmpdir(), "tsup-journal-"));
  dirs.push(root);
  const dir = join(root, ".stepup");
  mkdirSync(dir);
  return dir;
}

function digest(seed: number, len = 32): Uint8Array {
  const d = new Uint8Array(len);
  for (let i = 0; i < len; i++) d[i] = (seed * 31 + i * 7) & 0xff;
  return d;
}

function fingerprint(seed: number): Fingerprint {
  return {
    // Digest, input digest, then the short hashes of the input and of the output.
    bytes: new Uint8Array(Buffer.concat([digest(seed), digest(seed + 1), digest(seed + 2, 8), digest(seed + 3, 8)])),
    inputs: ["in.txt"],
    env: [
      ["HOME", "/home/me"],
      ["UNSET", null],
    ],
    outputs: ["out.txt"],
  };
}

function def(command: string, extra: Partial<StepDefinition> = {}): StepDefinition {
  return { command, workdir: "./", inp: [], out: [], vol: [], env: [], pool: null, optional: false, block: false, ...extra };
}

function fileHash(seed: number): FileHash {
  // A view into a larger buffer, as loaded digests are: only its own bytes may be written.
  const big = Buffer.alloc(100, 0xee);
  const view = new Uint8Array(big.buffer, big.byteOffset + 10, 32);
  view.set(digest(seed));
  return { digest: view, mode: 0o100644, size: 100 + seed, mtimeMs: 1_700_000_000_000.25 + seed, ino: 4242 + seed };
}

function entry(command: string, creator: string | null, opts: Partial<JournalEntry> & { fp?: number | null; d?: Partial<StepDefinition> } = {}): JournalEntry {
  const seed = command.length;
  return {
    step: {
      ...def(command, opts.d),
      statics: [],
      pools: [],
      globs: [],
      amended: null,
      fingerprint: opts.fp === null ? null : fingerprint(opts.fp ?? seed),
    },
    creator,
    children: opts.children ?? [],
    files: opts.files ?? [],
  };
}

function rec(command: string, creator: number, extra: Partial<SavedStep> = {}): SavedStep {
  return {
    ...def(command),
    creator,
    orphan: false,
    statics: [],
    pools: [],
    globs: [],
    amended: null,
    fingerprint: fingerprint(command.length),
    ...extra,
  };
}

/** A rich entry exercising every field. */
function fullEntry(): JournalEntry {
  return {
    step: {
      ...def("./plan.ts", { workdir: "sub/", inp: ["sub/plan.ts"], out: ["sub/o"], vol: ["sub/v"], env: ["A"], pool: "p", optional: true, block: true }),
      statics: ["sub/data.txt", "sub/dir/"],
      pools: [["p", 2], ["q", 3.5]],
      globs: [
        {
          patterns: ["*.txt", "${x}/*.md"],
          subs: Object.fromEntries([["x", "d"], ["__proto__", "p"]]) as Record<string, string>,
          workdir: "sub/",
          matches: ["sub/a.txt"],
          deferred: true,
        },
      ],
      amended: { inp: ["gen.txt"], out: ["more.txt"], vol: [], env: ["B"] },
      fingerprint: fingerprint(9),
    },
    creator: "./plan.ts",
    children: [def("cp a b", { inp: ["sub/a"], out: ["sub/b"], pool: "p" }), def("echo x > y", { workdir: "sub/x/", out: ["sub/x/y"] })],
    files: [
      ["sub/plan.ts", fileHash(1)],
      ["sub/o", fileHash(2)],
    ],
  };
}

/** Byte arrays compare by content (a view, a copy or a Buffer alike); maps as entry lists. */
function plain(x: unknown): unknown {
  if (x instanceof Uint8Array) return `bytes:${Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("hex")}`;
  if (x instanceof Map || x instanceof FileHashes) return [...x].map(plain);
  if (Array.isArray(x)) return x.map(plain);
  if (x !== null && typeof x === "object") {
    return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, plain(v)]));
  }
  return x;
}

/** fullEntry() with a fingerprint of two inputs, two env vars and two outputs. */
function wideEntry(): JournalEntry {
  const e = fullEntry();
  e.step.fingerprint = {
    bytes: new Uint8Array(Buffer.concat([digest(20), digest(21), digest(22, 8), digest(23, 8), digest(24, 8), digest(25, 8)])),
    inputs: ["sub/a", "sub/plan.ts"],
    env: [
      ["A", "1"],
      ["B", null],
    ],
    outputs: ["sub/b", "sub/o"],
  };
  return e;
}

function writeJournal(dir: string, generation: string, entries: JournalEntry[]): string {
  const file = join(dir, JOURNAL_FILE);
  const w = new JournalWriter(file, generation);
  for (const e of entries) w.append(e);
  w.close();
  return file;
}

describe("journal format", () => {
  test("round trip of every field", () => {
    const dir = tempStepup();
    const gen = newGeneration();
    const entries = [fullEntry(), entry("true", "./plan.ts"), entry("./plan.ts", null, { children: [def("true")] })];
    const file = writeJournal(dir, gen, entries);
    const read = readJournal(file);
    assert.equal(read.problem, undefined);
    assert.equal(read.generation, gen);
    assert.equal(read.validBytes, readFileSync(file).length);
    assert.deepEqual(plain(read.entries), plain(entries));
    assert.equal(Object.getPrototypeOf(read.entries[0]!.step.globs[0]!.subs), Object.prototype);
    assert.equal(Object.keys(read.entries[0]!.step.globs[0]!.subs).length, 2);
  });

  test("no file: nothing to read, no problem", () => {
    const r = readJournal(join(tempStepup(), JOURNAL_FILE));
    assert.deepEqual(r, { exists: false, generation: null, entries: [], validBytes: 0 });
  });

  test("the first append creates the file; a run without successes writes nothing", () => {
    const dir = tempStepup();
    const w = new JournalWriter(join(dir, JOURNAL_FILE), newGeneration());
    w.close();
    assert.equal(existsSync(join(dir, JOURNAL_FILE)), false);
  });

  test("a torn last entry: the entries before it are kept", () => {
    const dir = tempStepup();
    const file = writeJournal(dir, newGeneration(), [entry("a", null), entry("bb", null), entry("ccc", null)]);
    const whole = readFileSync(file);
    for (const cut of [1, 5, 9, 20]) {
      const r = parseJournal(whole.subarray(0, whole.length - cut));
      assert.deepEqual(
        r.entries.map((e) => e.step.command),
        ["a", "bb"],
      );
      assert.match(r.problem ?? "", /entry 3 .* is incomplete/);
    }
  });

  test("garbage in the middle: reading stops there, with the reason", () => {
    const dir = tempStepup();
    const entries = [entry("a", null), entry("bb", null), entry("ccc", null), entry("dddd", null)];
    const file = writeJournal(dir, newGeneration(), entries);
    const whole = readFileSync(file);
    const clean = parseJournal(whole);
    assert.equal(clean.entries.length, 4);
    let seed = 12345;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let trial = 0; trial < 200; trial++) {
      const damaged = Buffer.from(whole);
      const at = 28 + (rand() % (whole.length - 28));
      const len = 1 + (rand() % 16);
      for (let k = at; k < Math.min(at + len, damaged.length); k++) damaged[k] = rand() & 0xff;
      if (damaged.equals(whole)) continue;
      const r = parseJournal(damaged);
      assert.ok(r.problem, `trial ${trial}: damage at ${at} not detected`);
      assert.ok(r.entries.length < 4);
      // What was kept is exactly a prefix of the good entries.
      assert.deepEqual(plain(r.entries), plain(clean.entries.slice(0, r.entries.length)));
    }
    // Trailing garbage after good entries.
    const r = parseJournal(Buffer.concat([whole, Buffer.from("garbage that is not an entry")]));
    assert.equal(r.entries.length, 4);
    assert.match(r.problem ?? "", /entry 5/);
  });

  test("a valid checksum over content that does not decode exactly is still refused", () => {
    const dir = tempStepup();
    const file = writeJournal(dir, newGeneration(), [entry("a", null)]);
    const whole = readFileSync(file);
    const good = encodeEntry(entry("bb", null));
    const frame = (payload: Buffer): Buffer => {
      const f = Buffer.alloc(8);
      f.writeUInt32LE(payload.length, 4);
      f.writeUInt32LE(crc32(Buffer.concat([f.subarray(4), payload])), 0);
      return Buffer.concat([f, payload]);
    };
    const cases: Array<[Buffer, RegExp]> = [
      [Buffer.from([2, 0, 0]), /tag: unknown entry type 2/],
      [Buffer.from([1, 5, 65]), /step: bad count 5/],
      [Buffer.concat([good.subarray(8), Buffer.of(0)]), /entry: unused data at the end/],
      [Buffer.from([1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]), /step: bad count 4294967295/],
    ];
    for (const [payload, why] of cases) {
      const r = parseJournal(Buffer.concat([whole, frame(payload)]));
      assert.equal(r.entries.length, 1);
      assert.match(r.problem ?? "", new RegExp(`entry 2 \\(byte ${whole.length}\\) is invalid: ${why.source}`));
    }
    // The same bytes framed properly are an entry like any other.
    assert.equal(parseJournal(Buffer.concat([whole, good])).entries.length, 2);
  });

  test("entries keep the layout of earlier journals", () => {
    // wideEntry() as the tsup before compact fingerprints (commit ef3532b) encoded it, each
    // short hash after its path: a journal left by that tsup must still be read.
    const earlier = [
      "cd9e4d430902000001092e2f706c616e2e7473047375622f010b7375622f706c616e2e747301057375622f6f01057375",
      "622f760101410101700301092e2f706c616e2e7473020c7375622f646174612e747874087375622f6469722f02017000",
      "0000000000004001710000000000000c400102052a2e74787409247b787d2f2a2e6d640201780164095f5f70726f746f",
      "5f5f0170047375622f01097375622f612e7478740101010767656e2e74787401086d6f72652e74787400010142016c73",
      "7a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e458b9299a0a7aeb5bcc3cad1d8dfe6edf4fb02",
      "0910171e252c333a41484f565d6402057375622f61aab1b8bfc6cdd4db0b7375622f706c616e2e7473c9d0d7dee5ecf3",
      "fa02014101013101420002057375622f62e8eff6fd040b1219057375622f6f070e151c232a3138020663702061206202",
      "2e2f01057375622f6101057375622f620000010170000a6563686f2078203e2079067375622f782f0001077375622f78",
      "2f7900000000020b7375622f706c616e2e7473201f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dc",
      "e3eaf1f8a48302000000000040594000148056febc7842000000000093b040057375622f6f203e454c535a61686f767d",
      "848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb02091017a48302000000000080594000248056febc7842000000000094b0",
      "40",
    ].join("");
    assert.equal(encodeEntry(wideEntry()).toString("hex"), earlier);
    const dir = tempStepup();
    const header = readFileSync(writeJournal(dir, newGeneration(), [entry("x", null)])).subarray(0, 28);
    const journal = Buffer.concat([header, Buffer.from(earlier, "hex")]);
    const read = parseJournal(journal);
    assert.equal(read.problem, undefined);
    assert.equal(read.entries.length, 1);
    assert.deepEqual(plain(read.entries[0]), plain(wideEntry()));
    const fp = read.entries[0]!.step.fingerprint!;
    assert.equal(fp.bytes.length, 64 + 8 * 4);
    assert.notEqual(fp.bytes.buffer, journal.buffer, "the fingerprint keeps no view into the journal");
  });

  test("values the reader would refuse are not written", () => {
    const dir = tempStepup();
    const w = new JournalWriter(join(dir, JOURNAL_FILE), newGeneration());
    const bad = entry("a", null);
    bad.step.pools = [["p", Number.NaN]];
    assert.throws(() => w.append(bad), /finite/);
    const short = entry("b", null);
    short.step.fingerprint!.bytes = new Uint8Array(5);
    assert.throws(() => w.append(short), /expected 80 fingerprint bytes, got 5/);
    // One short hash per input and output: an extra path without one is refused.
    const unhashed = entry("b", null);
    unhashed.step.fingerprint!.outputs = ["out.txt", "more.txt"];
    assert.throws(() => w.append(unhashed), /expected 88 fingerprint bytes, got 80/);
    w.append(entry("c", null));
    w.close();
    assert.deepEqual(readJournal(join(dir, JOURNAL_FILE)).entries.map((e) => e.step.command), ["c"]);
  });

  test("cut at every byte offset: never throws, always a prefix", () => {
    const dir = tempStepup();
    const gen = newGeneration();
    const entries = [entry("a", null), fullEntry(), entry("ccc", "x")];
    const file = writeJournal(dir, gen, entries);
    const whole = readFileSync(file);
    const ends: number[] = [];
    for (let n = 1; n <= entries.length; n++) {
      const w = join(dir, `j${n}`);
      writeJournal(dir, gen, entries.slice(0, n));
      writeFileSync(w, readFileSync(join(dir, JOURNAL_FILE)));
      ends.push(readFileSync(w).length);
    }
    for (let len = 0; len <= whole.length; len++) {
      const r = parseJournal(whole.subarray(0, len));
      const complete = ends.filter((e) => e <= len).length;
      assert.equal(r.entries.length, complete, `cut at ${len}`);
      assert.deepEqual(plain(r.entries), plain(entries.slice(0, complete)));
      assert.equal(r.generation, len >= 28 ? gen : null);
      const atBoundary = len === 28 || ends.includes(len);
      // A prefix of the header is what a kill while creating the file leaves: not a problem.
      assert.equal(r.problem === undefined, atBoundary || len < 28, `cut at ${len}: ${r.problem}`);
    }
  });

  test("a damaged header or another file: no generation, no entries", () => {
    const dir = tempStepup();
    const file = writeJournal(dir, newGeneration(), [entry("a", null)]);
    const whole = readFileSync(file);
    const flipped = Buffer.from(whole);
    flipped[10]! ^= 1;
    assert.match(parseJournal(flipped).problem ?? "", /header is damaged/);
    assert.equal(parseJournal(flipped).entries.length, 0);
    assert.match(parseJournal(Buffer.from("#!/bin/sh\necho hello world, long enough\n")).problem ?? "", /not a tsup journal/);
    assert.match(parseJournal(Buffer.from("xy")).problem ?? "", /not a tsup journal/);
  });
});

describe("applying a journal", () => {
  const base = (): SavedState => ({
    files: FileHashes.from([["in.txt", fileHash(1)]]),
    steps: [
      rec("./plan.ts", -1),
      rec("cp a b", 0),
      rec("sub", 0),
      rec("sub-child", 2),
      rec("cp c d", 0),
    ],
  });
  const keys = (s: SavedState): string[] =>
    s.steps.map((r) => `${r.command}<${r.creator >= 0 ? s.steps[r.creator]!.command : r.orphan ? "orphan" : "root"}${r.fingerprint ? "" : " nofp"}`);

  test("an entry replaces the record, adds the file hashes, and leaves the input alone", () => {
    const s = base();
    const before = plain(s);
    const out = applyJournal(s, [entry("cp a b", "./plan.ts", { fp: 77, files: [["b", fileHash(5)]] })]);
    assert.deepEqual(plain(s), before);
    assert.deepEqual(plain(out.steps[1]!.fingerprint), plain(fingerprint(77)));
    assert.deepEqual(plain(out.files.get("b")), plain(fileHash(5)));
    assert.deepEqual(keys(out), keys(s));
  });

  test("a plan's entry orphans the children it no longer defines and adds new ones", () => {
    const out = applyJournal(base(), [
      entry("./plan.ts", null, { children: [def("cp c d"), def("new step"), def("cp a b")] }),
    ]);
    assert.deepEqual(keys(out), ["./plan.ts<root", "cp c d<./plan.ts", "new step<./plan.ts nofp", "cp a b<./plan.ts", "sub<orphan", "sub-child<sub"]);
    // The orphaned sub-plan keeps what it defined: if it is defined again and skipped, it
    // replays exactly what its fingerprint stands for.
    assert.ok(out.steps.find((r) => r.command === "sub")!.fingerprint);
  });

  test("a changed child definition drops the child's record and its creator's fingerprint", () => {
    const out = applyJournal(base(), [entry("sub-child", "sub", { d: { inp: ["x"] } })]);
    assert.deepEqual(keys(out), ["./plan.ts<root", "cp a b<./plan.ts", "sub<./plan.ts nofp", "sub-child<sub", "cp c d<./plan.ts"]);
    // Listed by its plan with another definition: the old record's results do not carry over.
    const out2 = applyJournal(base(), [entry("sub", "./plan.ts", { children: [def("sub-child", { out: ["y"] })] })]);
    const child = out2.steps.find((r) => r.command === "sub-child")!;
    assert.equal(child.fingerprint, null);
    assert.deepEqual(child.out, ["y"]);
    assert.ok(out2.steps.find((r) => r.command === "sub")!.fingerprint);
  });

  test("a child that finished before its plan drops the plan's fingerprint until the plan's own entry", () => {
    const j1 = [entry("late child", "sub")];
    const out1 = applyJournal(base(), j1);
    assert.deepEqual(keys(out1), ["./plan.ts<root", "cp a b<./plan.ts", "sub<./plan.ts nofp", "sub-child<sub", "late child<sub", "cp c d<./plan.ts"]);
    const out2 = applyJournal(base(), [...j1, entry("sub", "./plan.ts", { children: [def("late child")] })]);
    assert.deepEqual(keys(out2), ["./plan.ts<root", "cp a b<./plan.ts", "sub<./plan.ts", "late child<sub", "cp c d<./plan.ts", "sub-child<orphan"]);
  });

  test("a child of a skipped plan, rerun with the recorded definition, leaves the plan alone", () => {
    const out = applyJournal(base(), [entry("sub-child", "sub", { fp: 99 })]);
    assert.deepEqual(keys(out), keys(base()));
    assert.deepEqual(plain(out.steps[3]!.fingerprint), plain(fingerprint(99)));
  });

  test("a step moving to another plan drops the fingerprints of both plans", () => {
    const out = applyJournal(base(), [entry("sub-child", "./plan.ts")]);
    assert.deepEqual(keys(out), ["./plan.ts<root nofp", "cp a b<./plan.ts", "sub<./plan.ts nofp", "sub-child<./plan.ts", "cp c d<./plan.ts"]);
  });

  test("the first run: children before plans, creators unknown at first", () => {
    const journal = [
      entry("c1", "./plan.ts"),
      entry("g1", "sub"),
      entry("sub", "./plan.ts", { children: [def("g1"), def("g2")] }),
      entry("./plan.ts", null, { children: [def("c1"), def("sub"), def("c2")] }),
    ];
    const out = applyJournal({ files: new FileHashes(), steps: [] }, journal);
    assert.deepEqual(keys(out), ["./plan.ts<root", "c1<./plan.ts", "sub<./plan.ts", "g1<sub", "g2<sub nofp", "c2<./plan.ts nofp"]);
    // Killed before the boot plan finished: its children are orphans that still skip when defined.
    const partial = applyJournal({ files: new FileHashes(), steps: [] }, journal.slice(0, 2));
    assert.deepEqual(keys(partial), ["c1<orphan", "g1<orphan"]);
  });

  test("plans that swapped roles: no cycle of creators survives", () => {
    const s: SavedState = { files: new FileHashes(), steps: [rec("./plan.ts", -1), rec("x", 0), rec("y", 1)] };
    // Now y defines x, and y's own entry never came: y claimed x as its creator, but x's entry
    // says x defines nothing, so y becomes an orphan.
    assert.deepEqual(keys(applyJournal(s, [entry("x", "y")])), ["./plan.ts<root nofp", "y<orphan nofp", "x<y"]);
    // A longer cycle: c now defines a, which defined b, which defined c.
    const s3: SavedState = { files: new FileHashes(), steps: [rec("./plan.ts", -1), rec("a", 0), rec("b", 1), rec("c", 2)] };
    const out = applyJournal(s3, [entry("c", "b", { children: [def("a")] })]);
    assert.deepEqual(keys(out), ["./plan.ts<root nofp", "a<orphan nofp", "b<orphan nofp", "c<orphan nofp"]);
  });

  test("idempotent: twice, or onto the state it was folded into, gives the same state", () => {
    const journals: JournalEntry[][] = [
      [entry("late child", "sub"), entry("sub", "./plan.ts", { children: [def("late child")] })],
      [entry("./plan.ts", null, { children: [def("cp c d"), def("new step"), def("cp a b")] }), entry("new step", "./plan.ts", { files: [["n", fileHash(3)]] })],
      [entry("sub-child", "./plan.ts"), entry("x", "nobody"), entry("./plan.ts", null, { children: [def("sub-child"), def("sub")] })],
      [entry("c1", "./plan.ts"), entry("g1", "sub"), entry("sub", "./plan.ts", { children: [def("g1"), def("g2")] })],
    ];
    for (const j of journals) {
      const once = applyJournal(base(), j);
      assert.deepEqual(plain(applyJournal(once, j)), plain(once));
      // Any prefix of it, too (these journals name each step once; a step that ran twice would
      // get its older record back, which only makes it run again).
      for (let n = 0; n <= j.length; n++) assert.deepEqual(plain(applyJournal(once, j.slice(0, n))), plain(once), `prefix ${n}`);
    }
  });

  test("reruns of recorded steps take the short path, with the result of the general one", () => {
    const s = base();
    const j = [
      entry("cp a b", "./plan.ts", { fp: 70, files: [["b", fileHash(5)]] }),
      entry("sub-child", "sub", { fp: 71, files: [["in.txt", fileHash(6)]] }),
      entry("cp a b", "./plan.ts", { fp: 72 }),
    ];
    const fast = applyJournal(s, j);
    assert.deepEqual(plain(fast), plain(applyInGeneral(s, j)));
    // Short path: the records no entry names are the very objects of the input.
    assert.equal(fast.steps[0], s.steps[0]);
    assert.equal(fast.steps[4], s.steps[4]);
    assert.deepEqual(plain(fast.steps[1]!.fingerprint), plain(fingerprint(72)));
    // Entries the short path must refuse (a plan with children, a moved step, a new step, another
    // definition): had it taken one, its result would differ from the general one.
    for (const other of [
      entry("sub", "./plan.ts", { children: [def("sub-child")] }),
      entry("cp c d", "sub"),
      entry("brand new", "./plan.ts"),
      entry("cp a b", "./plan.ts", { d: { inp: ["a2"] } }),
    ]) {
      const mixed = [j[0]!, other];
      assert.deepEqual(plain(applyJournal(s, mixed)), plain(applyInGeneral(s, mixed)));
    }
  });

  test("consume: the same result, with the input's file table updated in place; refused, the input is untouched", () => {
    const j = [entry("cp a b", "./plan.ts", { fp: 70, files: [["b", fileHash(5)]] }), entry("cp a b", "./plan.ts", { fp: 72, files: [["b", fileHash(8)]] })];
    const expected = plain(applyJournal(base(), j));
    const s = base();
    const out = applyJournal(s, j, { consume: true });
    assert.deepEqual(plain(out), expected);
    assert.equal(out.files, s.files);
    // The second entry checked against the record, the last one's files win.
    assert.deepEqual(plain(out.files.get("b")), plain(fileHash(8)));
    // An entry the short path refuses after one it takes: the general merge gets the input as it was.
    const refused = base();
    const before = plain(refused);
    const mixed = [j[0]!, entry("brand new", "./plan.ts", { files: [["n", fileHash(9)]] })];
    const merged = applyJournal(refused, mixed, { consume: true });
    assert.deepEqual(plain(refused), before);
    assert.deepEqual(plain(merged), plain(applyInGeneral(base(), mixed)));
  });

  test("the merged state can be saved and loaded", async () => {
    const dir = tempStepup();
    const out = applyJournal(base(), [fullEntry(), entry("./plan.ts", null, { children: [def("sub")] })]);
    await saveState(dir, out, newGeneration());
    const back = await loadState(dir);
    assert.equal(back.warning, undefined);
    assert.deepEqual(plain(back.state), plain(out));
    const key = stepKey("./plan.ts", "sub/");
    assert.ok(back.state.steps.some((r) => stepKey(r.command, r.workdir) === key));
  });
});

describe("openState", () => {
  function sink(): { events: TsupEvent[]; emit(e: TsupEvent): void } {
    const events: TsupEvent[] = [];
    return { events, emit: (e) => events.push(e) };
  }
  const state = (): SavedState => ({ files: new FileHashes(), steps: [rec("./plan.ts", -1), rec("cp a b", 0, { fingerprint: null })] });

  test("a journal of the state file is folded in and the state is saved as a new generation", async () => {
    const dir = tempStepup();
    const gen = newGeneration();
    await saveState(dir, state(), gen);
    writeJournal(dir, gen, [entry("cp a b", "./plan.ts", { fp: 5 })]);
    const s = sink();
    const opened = await openState(dir, s);
    assert.equal(opened.warning, undefined);
    assert.deepEqual(plain(opened.state.steps[1]!.fingerprint), plain(fingerprint(5)));
    assert.match(JSON.stringify(s.events), /Recovered 1 finished step from/);
    assert.deepEqual(readdirSync(dir), [STATE_FILE]);
    const after = await loadState(dir);
    assert.notEqual(after.generation, gen);
    assert.deepEqual(plain(after.state), plain(opened.state));
  });

  test("a journal of another generation is ignored and removed without a word", async () => {
    const dir = tempStepup();
    await saveState(dir, state(), newGeneration());
    const before = readFileSync(join(dir, STATE_FILE));
    writeJournal(dir, newGeneration(), [entry("cp a b", "./plan.ts", { fp: 5 })]);
    const s = sink();
    const opened = await openState(dir, s);
    assert.equal(opened.warning, undefined);
    assert.equal(opened.state.steps[1]!.fingerprint, null);
    assert.deepEqual(s.events, []);
    assert.deepEqual(readdirSync(dir), [STATE_FILE]);
    assert.deepEqual(readFileSync(join(dir, STATE_FILE)), before);
  });

  test("without a state file, a journal is ignored (deleting the state file forgets everything)", async () => {
    const dir = tempStepup();
    writeJournal(dir, newGeneration(), [entry("cp a b", "./plan.ts", { fp: 5 })]);
    const opened = await openState(dir, sink());
    assert.deepEqual(opened.state.steps, []);
    assert.equal(opened.loaded, false);
    // The journal of this run extends the empty state written now, in the background: nothing
    // may be journaled before it is done.
    const ready = opened.journal.ready();
    assert.ok(ready !== null, "the empty state is still being written");
    await ready;
    assert.equal(opened.journal.ready(), null);
    assert.deepEqual(readdirSync(dir), [STATE_FILE]);
    assert.ok((await loadState(dir)).generation);
  });

  test("a damaged journal: a warning, a copy, and the good prefix kept", async () => {
    const dir = tempStepup();
    const gen = newGeneration();
    await saveState(dir, state(), gen);
    const file = writeJournal(dir, gen, [entry("cp a b", "./plan.ts", { fp: 5 }), entry("other", "./plan.ts")]);
    const b = readFileSync(file);
    b[b.length - 3]! ^= 0xff;
    writeFileSync(file, b);
    const opened = await openState(dir, sink());
    assert.match(opened.warning?.message ?? "", /Ignoring the unreadable part of .*workflow\.journal: entry 2 .*checksum/);
    assert.match(opened.warning?.details ?? "", /The 1 finished step recorded before that point is kept/);
    assert.ok(opened.warning?.keptCopy && existsSync(opened.warning.keptCopy));
    assert.deepEqual(plain(opened.state.steps[1]!.fingerprint), plain(fingerprint(5)));
    assert.ok(!existsSync(file));
  });

  test("an unreadable state file: the journal cannot be trusted either", async () => {
    const dir = tempStepup();
    const gen = newGeneration();
    await saveState(dir, state(), gen);
    writeJournal(dir, gen, [entry("cp a b", "./plan.ts", { fp: 5 })]);
    writeFileSync(join(dir, STATE_FILE), "garbage");
    const opened = await openState(dir, sink());
    await opened.journal.ready();
    assert.deepEqual(opened.state.steps, []);
    assert.match(opened.warning?.details ?? "", /journal .* was ignored too \(kept as .*workflow\.journal\.bad-/);
    // The bad file was replaced by an empty state of a new generation, and the copies kept.
    assert.equal((await loadState(dir)).warning, undefined);
    assert.equal(readdirSync(dir).filter((f) => f.includes(".bad-")).length, 2);
  });

  test("a journal left on purpose is applied silently and continued; a crash after it recovers only what is newer", async () => {
    const dir = tempStepup();
    const gen = newGeneration();
    await saveState(dir, state(), gen);
    const saved = readFileSync(join(dir, STATE_FILE));
    assert.equal(new StepJournal(dir, sink(), gen).endWithoutSaving(), false, "no journal yet: nothing to leave");
    // A run recorded one step and ended without saving: journal plus end marker.
    const file = writeJournal(dir, gen, [entry("cp a b", "./plan.ts", { fp: 6 })]);
    assert.equal(new StepJournal(dir, sink(), gen, { entries: 1 }).endWithoutSaving(), true);
    assert.ok(existsSync(join(dir, `${JOURNAL_FILE}.end`)));

    const s1 = sink();
    const second = await openState(dir, s1);
    assert.deepEqual(s1.events, [], "no recovery message for a journal left on purpose");
    assert.equal(second.warning, undefined);
    assert.deepEqual(plain(second.state.steps[1]!.fingerprint), plain(fingerprint(6)));
    assert.deepEqual(readFileSync(join(dir, STATE_FILE)), saved, "the state file is not rewritten");
    assert.equal(second.journal.entries, 1);

    // The next run appends to the same journal and is killed before it ends (no new marker).
    const w = new JournalWriter(file, gen, true);
    w.append(entry("cp a b", "./plan.ts", { fp: 7 }));
    w.close();
    assert.equal(readJournal(file).entries.length, 2);
    const s2 = sink();
    const third = await openState(dir, s2);
    assert.match(JSON.stringify(s2.events), /Recovered 1 finished step from/);
    assert.deepEqual(plain(third.state.steps[1]!.fingerprint), plain(fingerprint(7)));
    // Recovered means compacted: a new generation, no journal, no marker.
    assert.deepEqual(readdirSync(dir), [STATE_FILE]);
    assert.deepEqual(plain((await loadState(dir)).state), plain(third.state));
  });

  test("a journal whose end marker does not match it counts as left by a crash", async () => {
    const dir = tempStepup();
    const gen = newGeneration();
    await saveState(dir, state(), gen);
    writeJournal(dir, gen, [entry("cp a b", "./plan.ts", { fp: 6 })]);
    writeFileSync(join(dir, `${JOURNAL_FILE}.end`), JSON.stringify({ generation: newGeneration(), entries: 1, bytes: 1 }));
    const s = sink();
    const opened = await openState(dir, s);
    assert.match(JSON.stringify(s.events), /Recovered 1 finished step from/);
    assert.deepEqual(plain(opened.state.steps[1]!.fingerprint), plain(fingerprint(6)));
    assert.deepEqual(readdirSync(dir), [STATE_FILE]);
  });

  test("a state file without a generation (older tsup) gets one before anything is journaled", async () => {
    const dir = tempStepup();
    await saveState(dir, state());
    assert.equal((await loadState(dir)).generation, undefined);
    const opened = await openState(dir, sink());
    assert.equal(opened.loaded, true);
    const ready = opened.journal.ready();
    assert.ok(ready !== null, "journaling waits for the new generation");
    await ready;
    assert.ok((await loadState(dir)).generation);
  });
});

describe("cost", () => {
  test("100,000 entries: appending, reading and applying", () => {
    const dir = tempStepup();
    const gen = newGeneration();
    const file = join(dir, JOURNAL_FILE);
    const w = new JournalWriter(file, gen);
    const n = 100_000;
    const entries: JournalEntry[] = [];
    for (let i = 0; i < n; i++) {
      entries.push({
        ...entry(`cp in/${i}.txt out/${i}.txt`, "./plan.ts", { fp: i, d: { inp: [`in/${i}.txt`], out: [`out/${i}.txt`] } }),
        files: [
          [`in/${i}.txt`, fileHash(i)],
          [`out/${i}.txt`, fileHash(i + 1)],
        ],
      });
    }
    let t = performance.now();
    for (const e of entries) w.append(e);
    w.close();
    const appendMs = performance.now() - t;
    t = performance.now();
    const read = readJournal(file);
    const readMs = performance.now() - t;
    t = performance.now();
    const out = applyJournal({ files: new FileHashes(), steps: [rec("./plan.ts", -1)] }, read.entries);
    const applyMs = performance.now() - t;
    assert.equal(read.entries.length, n);
    assert.equal(out.steps.length, n + 1);
    const size = readFileSync(file).length;
    console.log(
      `100k entries: append ${appendMs.toFixed(0)} ms (${((1000 * appendMs) / n).toFixed(2)} µs each), ` +
        `read ${readMs.toFixed(0)} ms, apply ${applyMs.toFixed(0)} ms, ${(size / n).toFixed(0)} bytes each`,
    );
    // No timing assertions (a loaded machine makes them flaky): speed is measured in bench/.
  });
});
