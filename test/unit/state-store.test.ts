import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Packr, Unpackr } from "msgpackr";
import { computeFingerprint } from "../../src/state/fingerprint.js";
import { decodeState, encodeFile, encodeState, loadState, saveState, STATE_FILE } from "../../src/state/store.js";
import { emptyState, FileHashes } from "../../src/state/filehashes.js";
import { DIR_DIGEST, type FileHash, type SavedState, type SavedStep } from "../../src/state/types.js";

const lzma = createRequire(import.meta.url)("lzma-native") as {
  compress(data: Buffer, opts: { preset: number }): Promise<Buffer>;
  decompress(data: Buffer, opts?: { flags?: number }): Promise<Buffer>;
  CONCATENATED: number;
};

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempStepup(): string {
  const root = mkdtempSync(join(tmpdir(), "tsup-store-"));
  dirs.push(root);
  return join(root, ".stepup");
}

function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

function digest(seed: number): Uint8Array {
  const d = new Uint8Array(32);
  for (let i = 0; i < 32; i++) d[i] = (seed * 31 + i * 7) & 0xff;
  return d;
}

/** The parts of a version 2 or 3 document's `raw` (see encodeParts in store.ts). */
function split(top: Record<string, unknown>): {
  top: Record<string, unknown>;
  fileCount: number;
  digests: Buffer;
  paths: Buffer;
  modes: Buffer;
  lens: Buffer;
  tokens: Buffer;
} {
  const raw = Buffer.from(top["raw"] as Uint8Array);
  const n = top["fileCount"] as number;
  const tokensAt = raw.length - (top["stepBytes"] as number);
  const at = tokensAt - 12 * n;
  return {
    top,
    fileCount: n,
    digests: raw.subarray(0, at),
    paths: raw.subarray(at, at + 4 * n),
    modes: raw.subarray(at + 4 * n, at + 8 * n),
    lens: raw.subarray(at + 8 * n, tokensAt),
    tokens: raw.subarray(tokensAt),
  };
}

function step(overrides: Partial<SavedStep>): SavedStep {
  return {
    command: "true",
    workdir: "./",
    creator: 0,
    orphan: false,
    inp: [],
    out: [],
    vol: [],
    env: [],
    pool: null,
    optional: false,
    block: false,
    statics: [],
    pools: [],
    globs: [],
    amended: null,
    fingerprint: null,
    ...overrides,
  };
}

/** A state as plain data to compare: the file table as its list of entries. */
function data(state: SavedState): { files: Array<[string, FileHash]>; steps: SavedStep[] } {
  return { files: [...state.files], steps: state.steps };
}

/** A state that uses every field, odd values included. */
function variedState(): SavedState {
  const files = FileHashes.from([
    ["plan.ts", { digest: digest(1), mode: 0o100644, size: 120, mtimeMs: 1_700_000_000_123.456789, ino: 123456 }],
    ["./", { digest: DIR_DIGEST, mode: 0, size: 0, mtimeMs: 0, ino: 0 }],
    ["sub/", { digest: Uint8Array.of(0x64), mode: 0, size: 0, mtimeMs: 0, ino: 0 }],
    ["big.bin", { digest: digest(2), mode: 0o100755, size: 2 ** 40 + 3, mtimeMs: 1, ino: 2 ** 52 + 1 }],
    ["sub/ünïcødé 🎉.txt", { digest: digest(3), mode: 0o120777, size: 7, mtimeMs: 1e12 + 0.5, ino: 9 }],
    ["odd-digest", { digest: bytes(1, 2, 3), mode: 1, size: 3, mtimeMs: -5, ino: 0 }],
    ["empty-digest", { digest: new Uint8Array(0), mode: 0, size: 0, mtimeMs: 0, ino: 0 }],
  ]);
  const fp = computeFingerprint({
    key: "step:./\ncat plan.ts",
    inputs: [
      ["plan.ts", files.get("plan.ts")!],
      ["./", files.get("./")!],
    ],
    env: [
      ["EMPTY", ""],
      ["UNSET", null],
      ["Z", "ζ"],
    ],
    outputs: [["big.bin", files.get("big.bin")!]],
  });
  const steps: SavedStep[] = [
    step({ command: "./plan.ts", creator: -1, inp: ["plan.ts"], statics: ["plan.ts", "sub/"], pools: [["heavy", 2], ["frac", 2.5]] }),
    step({
      command: "cat plan.ts > big.bin",
      workdir: "sub/",
      inp: ["plan.ts", "sub/ünïcødé 🎉.txt"],
      out: ["big.bin"],
      vol: ["log.txt"],
      env: ["Z", "EMPTY", "UNSET"],
      pool: "heavy",
      optional: true,
      amended: { inp: ["odd-digest"], out: [], vol: ["v"], env: ["X"] },
      fingerprint: fp,
    }),
    step({ command: "", workdir: "./", creator: 1, orphan: true, block: true, pool: "" }),
    step({
      command: "glob user",
      creator: 0,
      orphan: true,
      optional: true,
      block: true,
      globs: [
        { patterns: ["src/*.c", "${x}/*.h"], subs: { x: "inc", "": "empty", ["__proto__"]: "plain data" }, workdir: "./", deferred: false, matches: ["src/a.c", "inc/b.h"] },
        { patterns: [], subs: {}, workdir: "sub/", deferred: true, matches: [] },
      ],
      amended: { inp: [], out: [], vol: [], env: [] },
      fingerprint: { bytes: concat(digest(9), digest(10), bytes(1, 2, 3, 4, 5, 6, 7, 8)), inputs: [], env: [], outputs: ["o"] },
    }),
  ];
  return { files, steps };
}

async function expectRejected(stepupDir: string, why: RegExp): Promise<void> {
  const file = join(stepupDir, STATE_FILE);
  const badBytes = readFileSync(file);
  const result = await loadState(stepupDir);
  assert.equal(result.loaded, false);
  assert.equal(result.state.steps.length, 0);
  assert.equal(result.state.files.size, 0);
  assert.ok(result.warning, "a warning is expected");
  assert.match(result.warning.message, why);
  assert.match(result.warning.details, why);
  assert.ok(result.warning.keptCopy, "a copy of the bad file is expected");
  assert.match(result.warning.keptCopy, /workflow\.mpk\.xz\.bad-\d{8}-\d{6}(-\d+)?$/);
  assert.deepEqual(readFileSync(result.warning.keptCopy), badBytes);
}

async function writeXz(stepupDir: string, content: Buffer): Promise<void> {
  mkdirSync(stepupDir, { recursive: true });
  writeFileSync(join(stepupDir, STATE_FILE), await lzma.compress(content, { preset: 0 }));
}

describe("state store round trip", () => {
  test("a missing file is an empty state without a warning", async () => {
    const result = await loadState(tempStepup());
    assert.equal(result.loaded, false);
    assert.equal(result.warning, undefined);
    assert.deepEqual(data(result.state), data(emptyState()));
  });

  test("every field survives save and load exactly", async () => {
    const dir = tempStepup();
    const state = variedState();
    await saveState(dir, state);
    const result = await loadState(dir);
    assert.equal(result.warning, undefined);
    assert.equal(result.loaded, true);
    assert.deepEqual(data(result.state), data(state));
    assert.deepEqual([...result.state.files.keys()], [...state.files.keys()], "files keep their order");
    // null and missing stay distinct, and digests are plain Uint8Arrays.
    const s1 = result.state.steps[1]!;
    assert.deepEqual(s1.fingerprint!.env, [
      ["EMPTY", ""],
      ["UNSET", null],
      ["Z", "ζ"],
    ]);
    assert.equal(result.state.steps[0]!.amended, null);
    assert.equal(result.state.steps[0]!.fingerprint, null);
    assert.equal(Object.getPrototypeOf(result.state.files.get("plan.ts")!.digest), Uint8Array.prototype);
    assert.equal(Object.getPrototypeOf(s1.fingerprint!.bytes), Uint8Array.prototype);
  });

  test("commands and paths of every msgpack string size round-trip", async () => {
    const dir = tempStepup();
    const lengths = [0, 1, 31, 32, 255, 256, 65535, 65536, 70000];
    const steps = lengths.map((n, i) =>
      step({ command: `${i}:` + "ζ".repeat(n % 3) + "c".repeat(n), creator: -1, inp: [`in/${"é".repeat(n % 5)}${"p".repeat(n)}`] }),
    );
    const state: SavedState = { files: new FileHashes(), steps };
    await saveState(dir, state);
    const result = await loadState(dir);
    assert.equal(result.warning, undefined);
    assert.deepEqual(data(result.state), data(state));
  });

  test("a file compressed as one ordinary xz stream loads too", async () => {
    // What `xz -d` followed by `xz` makes of a state file: no stored stream at the end.
    const dir = tempStepup();
    const state = variedState();
    await writeXz(dir, encodeState(state));
    const result = await loadState(dir);
    assert.equal(result.warning, undefined);
    assert.deepEqual(data(result.state), data(state));
  });

  test("an empty state round-trips", async () => {
    const dir = tempStepup();
    await saveState(dir, { files: new FileHashes(), steps: [] });
    const result = await loadState(dir);
    assert.equal(result.loaded, true);
    assert.deepEqual(data(result.state), data(emptyState()));
  });

  test("the file is xz holding one msgpack map with format marker and version", async () => {
    const dir = tempStepup();
    await saveState(dir, variedState());
    const packed = await lzma.decompress(readFileSync(join(dir, STATE_FILE)), { flags: lzma.CONCATENATED });
    const top = new Unpackr({ useRecords: false }).unpack(packed) as Record<string, unknown>;
    assert.equal(top["format"], "tsup-workflow");
    assert.equal(top["version"], 3);
    // The file table's paths, in its order, are the first strings.
    assert.deepEqual(top["strings"], [...variedState().files.keys()]);
    // Compared as bytes: msgpackr hangs a `dataView` property on buffers it has read.
    assert.equal(Buffer.compare(packed, encodeState(variedState())), 0);
  });

  test("saving replaces the file atomically and leaves no temporary files", async () => {
    const dir = tempStepup();
    await saveState(dir, variedState());
    const second = variedState();
    second.steps.push(step({ command: "echo more", creator: 0 }));
    await saveState(dir, second);
    assert.deepEqual(readdirSync(dir), [STATE_FILE]);
    assert.equal((await loadState(dir)).state.steps.length, 5);
  });

  test("a failed save leaves neither a temporary file nor a damaged old file", async () => {
    const dir = tempStepup();
    mkdirSync(join(dir, STATE_FILE, "blocker"), { recursive: true });
    await assert.rejects(saveState(dir, variedState()));
    assert.deepEqual(readdirSync(dir), [STATE_FILE]);
    assert.ok(statSync(join(dir, STATE_FILE)).isDirectory());
  });

  test("saving a state that could not be loaded back is refused before writing", async () => {
    const dir = tempStepup();
    await saveState(dir, variedState());
    const before = readFileSync(join(dir, STATE_FILE));
    const bad = variedState();
    bad.steps[2]!.creator = 17;
    await assert.rejects(saveState(dir, bad), /creator 17/);
    const nanMtime = variedState();
    assert.throws(() => nanMtime.files.set("plan.ts", { ...nanMtime.files.get("plan.ts")!, mtimeMs: Number.NaN }), /finite/);
    assert.throws(() => nanMtime.files.set("plan.ts", { ...nanMtime.files.get("plan.ts")!, mode: -1 }), /mode/);
    assert.deepEqual(readFileSync(join(dir, STATE_FILE)), before);
    assert.deepEqual(readdirSync(dir), [STATE_FILE]);
  });
});

describe("state store rejects bad files", () => {
  test("a truncated file", async () => {
    for (const keep of [0.5, 0.9, 40]) {
      const dir = tempStepup();
      await saveState(dir, variedState());
      const file = join(dir, STATE_FILE);
      truncateSync(file, keep < 1 ? Math.floor(statSync(file).size * keep) : keep);
      await expectRejected(dir, /damaged or truncated|msgpack/);
    }
  });

  test("a file cut exactly after its first xz stream", async () => {
    const dir = tempStepup();
    const parts = await encodeFile(variedState());
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, STATE_FILE), parts[0]!);
    await expectRejected(dir, /msgpack/);
  });

  test("a flipped bit in the stored digests", async () => {
    const dir = tempStepup();
    await saveState(dir, variedState());
    const file = join(dir, STATE_FILE);
    const b = readFileSync(file);
    b[b.length - 100]! ^= 0x10;
    writeFileSync(file, b);
    await expectRejected(dir, /damaged or truncated/);
  });

  test("a damaged chunk header or end of the stored digests", async () => {
    for (const back of ["chunk", "end"] as const) {
      const dir = tempStepup();
      const parts = (await encodeFile(variedState())).map((b) => Buffer.from(b));
      // parts: compressed head, the stored stream's header and block header, per chunk its
      // header and data, the end byte with the padding, check, index, footer.
      if (back === "chunk") parts[3]![0] = 0x02;
      else parts[parts.length - 4]![0] = 0x01;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, STATE_FILE), Buffer.concat(parts));
      await expectRejected(dir, /damaged or truncated/);
    }
  });

  test("random garbage and an empty file", async () => {
    const dir = tempStepup();
    mkdirSync(dir);
    writeFileSync(join(dir, STATE_FILE), Buffer.from("this is not xz at all, just some text"));
    await expectRejected(dir, /not an xz/);
    writeFileSync(join(dir, STATE_FILE), "");
    await expectRejected(dir, /empty/);
  });

  test("valid xz that is not msgpack", async () => {
    const dir = tempStepup();
    await writeXz(dir, Buffer.from("hello world, no msgpack here"));
    await expectRejected(dir, /msgpack/);
  });

  test("msgpack with a wrong format marker or version", async () => {
    const dir = tempStepup();
    const packr = new Packr({ useRecords: false });
    await writeXz(dir, packr.pack({ format: "something-else", version: 1 }));
    await expectRejected(dir, /not a tsup workflow file/);
    await writeXz(dir, packr.pack([1, 2, 3]));
    await expectRejected(dir, /not a tsup workflow file/);
    await writeXz(dir, packr.pack({ format: "tsup-workflow", version: 4 }));
    await expectRejected(dir, /unsupported format version 4 \(this tsup reads versions 1 to 3\)/);
  });

  // test/fixtures/state-v<N> holds variedState() as saved by the tsup that wrote version N
  // (state-v3: the tsup of commit ef3532b).
  for (const [version, what] of [
    [1, "file table and steps as msgpack binaries"],
    [2, "all strings in one field, written last"],
    [3, "saved with fingerprints of separate hashes"],
  ] as const) {
    test(`version ${version} files (${what}) are still read`, async () => {
      const dir = tempStepup();
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, STATE_FILE), readFileSync(new URL(`../fixtures/state-v${version}/workflow.mpk.xz`, import.meta.url)));
      const packed = await lzma.decompress(readFileSync(join(dir, STATE_FILE)), { flags: lzma.CONCATENATED });
      assert.equal((new Unpackr({ useRecords: false }).unpack(packed) as Record<string, unknown>)["version"], version);
      const result = await loadState(dir);
      assert.equal(result.warning, undefined);
      assert.deepEqual(data(result.state), data(variedState()));
    });
  }

  test("fingerprint paths refer to the step's own paths or to the string table", () => {
    const h = bytes(1, 2, 3, 4, 5, 6, 7, 8);
    const state: SavedState = {
      files: new FileHashes(),
      steps: [
        step({
          creator: -1,
          inp: ["a"],
          out: ["b"],
          fingerprint: { bytes: concat(digest(1), digest(2), h, h, h, bytes(9, 9, 9, 9, 9, 9, 9, 9)), inputs: ["./", "a", "c"], env: [], outputs: ["b"] },
        }),
      ],
    };
    const top = new Unpackr({ useRecords: false }).unpack(encodeState(state)) as Record<string, unknown>;
    // No file table: every string is one of the rest.
    assert.deepEqual(top["strings"], []);
    assert.deepEqual(top["moreStrings"], ["./", "a", "b", "c"]);
    const { tokens, digests } = split(top);
    // The fingerprint's hashes as they have always been stored: digest, input digest, then the
    // short hashes of the inputs and of the output.
    assert.equal(hex(digests), hex(concat(digest(1), digest(2), h, h, h, bytes(9, 9, 9, 9, 9, 9, 9, 9))));
    // workdir, creator + 1, flags, inp, out, vol, env, pool, statics, pools, globs, amended, then
    // the fingerprint: inputs ./ (own path 0), a (own path 1), c (string 3), no env, output b (own path 2).
    assert.deepEqual([...tokens], [0, 0, 0, 1, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0, 2, 7, 0, 1, 4]);
    assert.deepEqual(data(decodeState(encodeState(state))), data(state));

    const bad = Buffer.from(encodeState(state));
    bad[bad.length - 1] = 6; // own path 3: the step has only three
    assert.throws(() => decodeState(bad), /steps\[0\]\.fingerprint: path 3 of the step out of range/);
  });

  test("a string index out of range in the file table or in a step", async () => {
    const dir = tempStepup();
    const top = new Unpackr({ useRecords: false }).unpack(encodeState(variedState())) as Record<string, unknown>;
    const v2 = split(top);
    const packr = new Packr({ useRecords: false });
    const nStrings = (top["strings"] as string[]).length + (top["moreStrings"] as string[]).length;
    for (const bad of [100_000, nStrings]) {
      const paths = Buffer.from(v2.paths);
      paths.writeUInt32LE(bad, 0);
      await writeXz(dir, packr.pack({ ...top, raw: Buffer.concat([v2.digests, paths, v2.modes, v2.lens, v2.tokens]) }));
      await expectRejected(dir, new RegExp(`files: string index ${bad} out of range`));
    }

    // Dropping the last strings leaves some step referring past the end of the table.
    const strings = top["moreStrings"] as string[];
    await writeXz(dir, packr.pack({ ...top, moreStrings: strings.slice(0, strings.length - 3) }));
    await expectRejected(dir, /steps\[\d+\][.\w[\]]*: string index \d+ out of range/);
  });

  test("structurally invalid content never yields a partial state", async () => {
    // A key left out, rather than set to undefined: msgpack has no undefined (msgpackr writes an
    // extension type for it, which the state file never contains).
    const without = (doc: Record<string, unknown>, key: string): Record<string, unknown> => {
      const copy = { ...doc };
      delete copy[key];
      return copy;
    };
    const good = new Unpackr({ useRecords: false }).unpack(encodeState(variedState())) as Record<string, unknown>;
    const g = split(good);
    const raw = (tokens: Uint8Array, digests: Uint8Array = g.digests): Buffer => Buffer.concat([digests, g.paths, g.modes, g.lens, tokens]);
    const packr = new Packr({ useRecords: false });
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ["step count", { ...good, stepCount: 3 }, /commands: one per step/],
      ["command type", { ...good, commands: [1, 2, 3, 4] }, /commands\[0\]: expected a string/],
      ["steps blob", { ...good, stepBytes: 10, raw: raw(g.tokens.subarray(0, 10)) }, /data ends early|out of range|bad count/],
      ["trailing step data", { ...good, stepBytes: g.tokens.length + 1, raw: raw(Buffer.concat([g.tokens, Buffer.of(0)])) }, /unused data/],
      ["raw too long", { ...good, raw: raw(g.tokens, Buffer.concat([g.digests, Buffer.of(1)])) }, /unused digest data/],
      ["raw too short", { ...good, raw: raw(g.tokens, g.digests.subarray(1)) }, /ends early|unused/],
      ["raw far too short", { ...good, raw: g.tokens }, /raw: too short for the file table and the steps/],
      ["step bytes", { ...good, stepBytes: -1 }, /stepBytes: expected a count/],
      ["file count", { ...good, fileCount: "3" }, /fileCount: expected a count/],
      ["pool sizes", { ...good, poolSizes: [2, "x"] }, /pool size x is not a number/],
      ["missing strings", without(good, "strings"), /strings: expected an array/],
      ["missing moreStrings", without(good, "moreStrings"), /moreStrings: expected an array/],
      ["v1 file column", { ...good, version: 1, steps: g.tokens, raw: g.digests, files: [1, Buffer.alloc(4), Buffer.alloc(4)] }, /files: expected 4 columns/],
    ];
    for (const [name, doc, why] of cases) {
      const dir = tempStepup();
      await writeXz(dir, packr.pack(doc));
      await expectRejected(dir, why).catch((e: unknown) => {
        throw new Error(`case ${name}: ${String(e)}`);
      });
    }
  });

  test("decodeState accepts exactly what encodeState produced", () => {
    const state = variedState();
    assert.deepEqual(data(decodeState(encodeState(state))), data(state));
  });

  test("two bad files in the same second are both kept", async () => {
    const dir = tempStepup();
    mkdirSync(dir);
    writeFileSync(join(dir, STATE_FILE), "garbage one");
    const a = await loadState(dir);
    writeFileSync(join(dir, STATE_FILE), "garbage two");
    const b = await loadState(dir);
    assert.ok(a.warning?.keptCopy && b.warning?.keptCopy);
    assert.notEqual(a.warning.keptCopy, b.warning.keptCopy);
    assert.equal(readFileSync(a.warning.keptCopy, "utf8"), "garbage one");
    assert.equal(readFileSync(b.warning.keptCopy, "utf8"), "garbage two");
    assert.ok(existsSync(join(dir, STATE_FILE)), "the bad file itself is left for the next save to replace");
  });
});

// Opt-in: TSUP_BENCH=1 node --import tsx --test test/unit/state-store.test.ts
describe("state store at scale", { skip: process.env["TSUP_BENCH"] !== "1" }, () => {
  test("100,000 steps save and load", async () => {
    const n = 100_000;
    const files = new FileHashes();
    const steps: SavedStep[] = [step({ command: "./plan.ts", creator: -1, inp: ["plan.ts"] })];
    for (let i = 1; i < n; i++) {
      const inp = `data/d${i % 100}/in_${i}.txt`;
      const out = `build/d${i % 100}/out_${i}.dat`;
      const hi: FileHash = { digest: digest(2 * i), mode: 0o100644, size: i, mtimeMs: 1.7e12 + i * 1.37, ino: 1e6 + i };
      const ho: FileHash = { digest: digest(2 * i + 1), mode: 0o100644, size: i, mtimeMs: 1.7e12 + i * 1.37, ino: 2e6 + i };
      files.set(inp, hi);
      files.set(out, ho);
      const command = `python3 process.py ${inp} ${out}`;
      const fingerprint = computeFingerprint({ key: `step:./\n${command}`, inputs: [[inp, hi]], env: [], outputs: [[out, ho]] });
      steps.push(step({ command, inp: [inp], out: [out], fingerprint }));
    }
    const dir = tempStepup();
    let t = performance.now();
    await saveState(dir, { files, steps });
    const save = performance.now() - t;
    t = performance.now();
    const result = await loadState(dir);
    const load = performance.now() - t;
    const size = statSync(join(dir, STATE_FILE)).size;
    console.log(`100k steps: save ${save.toFixed(0)} ms, load ${load.toFixed(0)} ms, ${(size / 1e6).toFixed(2)} MB`);
    assert.equal(result.loaded, true);
    assert.equal(result.state.steps.length, n);
    assert.deepEqual(result.state.steps[n - 1], steps[n - 1]);
    assert.deepEqual(result.state.files.get("build/d99/out_99999.dat"), files.get("build/d99/out_99999.dat"));
  });
});
