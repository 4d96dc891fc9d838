import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { blake3 } from "@napi-rs/blake-hash";
import { computeDigest, computeFingerprint, explainChanges, shortHash, type FingerprintArgs } from "../../src/state/fingerprint.js";
import { DIR_DIGEST, type FileHash } from "../../src/state/types.js";

function digestOf(text: string): Uint8Array {
  return new Uint8Array(blake3(Buffer.from(text)));
}

function fh(content: string, extra: Partial<FileHash> = {}): FileHash {
  return { digest: digestOf(content), mode: 0o100644, size: content.length, mtimeMs: 1_700_000_000_000.5, ino: 42, ...extra };
}

function base(): FingerprintArgs {
  return {
    key: "step:./\ncp a.txt b.txt",
    inputs: [
      ["a.txt", fh("alpha")],
      ["./", { digest: DIR_DIGEST, mode: 0, size: 0, mtimeMs: 0, ino: 0 }],
    ],
    env: [
      ["HOME", "/home/u"],
      ["LANG", null],
    ],
    outputs: [["b.txt", fh("beta")]],
  };
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

describe("computeFingerprint", () => {
  test("is deterministic and independent of the order of inputs, env vars and outputs", () => {
    const a = computeFingerprint(base());
    const shuffled = base();
    shuffled.inputs.reverse();
    shuffled.env.reverse();
    shuffled.outputs.push(["a-first.txt", fh("x")]);
    const withExtra = base();
    withExtra.outputs.unshift(["a-first.txt", fh("x")]);
    assert.equal(hex(computeFingerprint(base()).digest), hex(a.digest));
    assert.equal(hex(computeFingerprint(shuffled).digest), hex(computeFingerprint(withExtra).digest));
    assert.equal(a.digest.length, 32);
    assert.equal(a.inpDigest.length, 32);
    assert.notEqual(hex(a.digest), hex(a.inpDigest));
  });

  test("computeDigest gives the full fingerprint's digest, and differs whenever it does", () => {
    const variants: FingerprintArgs[] = [base()];
    const changedInput = base();
    changedInput.inputs[0] = [changedInput.inputs[0]![0], fh("other")];
    const changedEnv = base();
    changedEnv.env[1] = ["LANG", "C"];
    const changedOutput = base();
    changedOutput.outputs[0] = ["b.txt", fh("gamma")];
    const changedKey = { ...base(), key: "other command" };
    variants.push(changedInput, changedEnv, changedOutput, changedKey);
    const digests = variants.map((v) => hex(computeDigest(v)));
    variants.forEach((v, i) => assert.equal(digests[i], hex(computeFingerprint(v).digest)));
    assert.equal(new Set(digests).size, variants.length);
  });

  test("fills sorted per-item records without reordering the caller's arrays", () => {
    const args = base();
    const fp = computeFingerprint(args);
    assert.deepEqual(
      fp.inputs.map(([p]) => p),
      ["./", "a.txt"],
    );
    assert.deepEqual(fp.env, [
      ["HOME", "/home/u"],
      ["LANG", null],
    ]);
    assert.deepEqual(
      fp.outputs.map(([p]) => p),
      ["b.txt"],
    );
    assert.equal(hex(fp.inputs[1]![1]), hex(shortHash(fh("alpha"))));
    assert.equal(args.inputs[0]![0], "a.txt", "input array of the caller untouched");
  });

  // Every change below must alter the digest; the name says what changed.
  const variants: Array<[string, (a: FingerprintArgs) => void]> = [
    ["step key", (a) => (a.key = "step:./\ncp a.txt c.txt")],
    ["input content", (a) => (a.inputs[0]![1] = fh("alphA"))],
    ["input mode", (a) => (a.inputs[0]![1] = fh("alpha", { mode: 0o100755 }))],
    ["input size", (a) => (a.inputs[0]![1] = fh("alpha", { size: 6 }))],
    ["input path", (a) => (a.inputs[0]![0] = "A.txt")],
    ["extra input", (a) => a.inputs.push(["z.txt", fh("z")])],
    ["removed input", (a) => a.inputs.pop()],
    ["env value", (a) => (a.env[0]![1] = "/home/v")],
    ["env null to empty", (a) => (a.env[1]![1] = "")],
    ["env name", (a) => (a.env[0]![0] = "HOMEX")],
    ["extra env var", (a) => a.env.push(["ZZ", null])],
    ["output content", (a) => (a.outputs[0]![1] = fh("betA"))],
    ["output mode", (a) => (a.outputs[0]![1] = fh("beta", { mode: 0o100600 }))],
    ["output path", (a) => (a.outputs[0]![0] = "c.txt")],
    ["no outputs", (a) => a.outputs.pop()],
  ];
  for (const [what, change] of variants) {
    test(`a change of ${what} changes the digest`, () => {
      const args = base();
      change(args);
      assert.notEqual(hex(computeFingerprint(args).digest), hex(computeFingerprint(base()).digest));
    });
  }

  test("mtime and inode do not matter", () => {
    const args = base();
    args.inputs[0]![1] = fh("alpha", { mtimeMs: 5, ino: 999 });
    args.outputs[0]![1] = fh("beta", { mtimeMs: 6, ino: 1000 });
    const a = computeFingerprint(args);
    const b = computeFingerprint(base());
    assert.equal(hex(a.digest), hex(b.digest));
    assert.equal(hex(a.inpDigest), hex(b.inpDigest));
    assert.deepEqual(a.inputs, b.inputs);
  });

  test("inpDigest covers key, inputs and env but not outputs", () => {
    const args = base();
    args.outputs[0]![1] = fh("other output");
    const a = computeFingerprint(args);
    const b = computeFingerprint(base());
    assert.equal(hex(a.inpDigest), hex(b.inpDigest));
    assert.notEqual(hex(a.digest), hex(b.digest));
    const envChanged = base();
    envChanged.env[0]![1] = "x";
    assert.notEqual(hex(computeFingerprint(envChanged).inpDigest), hex(b.inpDigest));
  });

  test("word boundaries cannot be shifted between neighbouring strings", () => {
    const mk = (key: string, env: Array<[string, string | null]>, inputs: Array<[string, FileHash]> = []) =>
      hex(computeFingerprint({ key, inputs, env, outputs: [] }).digest);
    assert.notEqual(mk("k", [["a", "bc"]]), mk("k", [["ab", "c"]]));
    assert.notEqual(mk("ka", [["b", "c"]]), mk("k", [["ab", "c"]]));
    assert.notEqual(mk("k", [["a", null]]), mk("k", [["a", ""]]));
    assert.notEqual(mk("k", [["a", "null"]]), mk("k", [["a", null]]));
    // The same name as an input path or as an env var are different things.
    assert.notEqual(mk("k", [], [["x", fh("")]]), mk("k", [["x", null]]));
  });

  test("the hashed bytes follow the documented token encoding", () => {
    // STR = 0x01 + u32 BE length + UTF-8, NULL = 0x02, MARK = 0x05 + section byte.
    const str = (s: string) => {
      const b = Buffer.from(s, "utf8");
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      return Buffer.concat([Buffer.of(0x01), len, b]);
    };
    const expected = Buffer.concat([
      str("tsup-fingerprint/1"),
      str("kéy"),
      Buffer.of(0x05, 0x01),
      Buffer.of(0x05, 0x02),
      str("A"),
      Buffer.of(0x02),
    ]);
    const fp = computeFingerprint({ key: "kéy", inputs: [], env: [["A", null]], outputs: [] });
    assert.equal(hex(fp.inpDigest), hex(blake3(expected)));
    assert.equal(hex(fp.digest), hex(blake3(Buffer.concat([expected, Buffer.of(0x05, 0x03)]))));
  });

  test("long keys and many items grow the scratch buffer correctly", () => {
    const key = "x".repeat(200_000);
    const inputs: Array<[string, FileHash]> = [];
    for (let i = 0; i < 3000; i++) inputs.push([`dir/file${i}.txt`, fh(String(i))]);
    const a = computeFingerprint({ key, inputs, env: [], outputs: [] });
    const b = computeFingerprint({ key, inputs: inputs.slice().reverse(), env: [], outputs: [] });
    assert.equal(hex(a.digest), hex(b.digest));
    inputs[2999]![1] = fh("changed");
    assert.notEqual(hex(computeFingerprint({ key, inputs, env: [], outputs: [] }).digest), hex(a.digest));
  });
});

describe("shortHash", () => {
  test("is 8 bytes and depends on mode, size and digest only", () => {
    const h = shortHash(fh("alpha"));
    assert.equal(h.length, 8);
    assert.equal(hex(shortHash(fh("alpha", { mtimeMs: 1, ino: 2 }))), hex(h));
    assert.notEqual(hex(shortHash(fh("alpha", { mode: 0o100755 }))), hex(h));
    assert.notEqual(hex(shortHash(fh("alpha", { size: 99 }))), hex(h));
    assert.notEqual(hex(shortHash(fh("alphA"))), hex(h));
    assert.equal(Object.getPrototypeOf(h), Uint8Array.prototype);
  });
});

describe("explainChanges", () => {
  test("names each changed input, env var and output, and lists the rest as same", () => {
    const old = computeFingerprint(base());
    const args = base();
    args.inputs[0]![1] = fh("changed");
    args.inputs.push(["new.txt", fh("n")]);
    args.env[0]![1] = "/other";
    args.env[1]![1] = "C";
    args.env.push(["NEWVAR", "1"]);
    args.outputs = [["out2.txt", fh("o")]];
    const { changed, same } = explainChanges(old, computeFingerprint(args));
    assert.deepEqual(changed, [
      "Modified input       a.txt",
      "Added input          new.txt",
      "Modified env var     HOME '/home/u' ➜ '/other'",
      "Modified env var     LANG (unset) ➜ 'C'",
      "Added env var        NEWVAR '1'",
      "Removed output       b.txt",
      "Added output         out2.txt",
    ]);
    assert.deepEqual(same, ["Same input           ./"]);
  });

  test("removed inputs and env vars, and unchanged items", () => {
    const old = computeFingerprint(base());
    const args = base();
    args.inputs = args.inputs.filter(([p]) => p !== "a.txt");
    args.env = [["LANG", null]];
    args.outputs[0]![1] = fh("beta!");
    const { changed, same } = explainChanges(old, computeFingerprint(args));
    assert.deepEqual(changed, [
      "Removed input        a.txt",
      "Removed env var      HOME '/home/u'",
      "Modified output      b.txt",
    ]);
    assert.deepEqual(same, ["Same input           ./", "Same env var         LANG (unset)"]);
  });

  test("a changed key with identical items still yields a reason", () => {
    const old = computeFingerprint(base());
    const args = base();
    args.key = "step:./\nsomething else";
    const { changed, same } = explainChanges(old, computeFingerprint(args));
    assert.equal(changed.length, 1);
    assert.match(changed[0]!, /^Modified step {8}command or workdir$/);
    assert.equal(same.length, 5);
  });

  test("identical fingerprints change nothing", () => {
    const fp = computeFingerprint(base());
    const { changed } = explainChanges(fp, computeFingerprint(base()));
    assert.deepEqual(changed, []);
  });
});
