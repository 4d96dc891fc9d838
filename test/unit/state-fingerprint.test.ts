import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { blake3 } from "@napi-rs/blake-hash";
import { computeDigest, computeFingerprint, explainChanges, matchesDigest, shortHash, type FingerprintArgs } from "../../src/state/fingerprint.js";
import {
  DIR_DIGEST,
  fingerprintDigest,
  hasDigest,
  inputDigest,
  inputHash,
  keepFingerprint,
  outputHash,
  type FileHash,
} from "../../src/state/types.js";

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
    assert.equal(hex(fingerprintDigest(computeFingerprint(base()))), hex(fingerprintDigest(a)));
    assert.equal(hex(fingerprintDigest(computeFingerprint(shuffled))), hex(fingerprintDigest(computeFingerprint(withExtra))));
    assert.equal(fingerprintDigest(a).length, 32);
    assert.equal(inputDigest(a).length, 32);
    // Two digests, then 8 bytes per input (2) and output (1).
    assert.equal(a.bytes.length, 64 + 8 * 3);
    assert.equal(hex(a.bytes.subarray(0, 32)), hex(fingerprintDigest(a)));
    assert.equal(hex(a.bytes.subarray(32, 64)), hex(inputDigest(a)));
    assert.notEqual(hex(fingerprintDigest(a)), hex(inputDigest(a)));
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
    variants.forEach((v, i) => assert.equal(digests[i], hex(fingerprintDigest(computeFingerprint(v)))));
    assert.equal(new Set(digests).size, variants.length);
  });

  test("fills sorted per-item records without reordering the caller's arrays", () => {
    const args = base();
    const fp = computeFingerprint(args);
    assert.deepEqual(fp.inputs, ["./", "a.txt"]);
    assert.deepEqual(fp.env, [
      ["HOME", "/home/u"],
      ["LANG", null],
    ]);
    assert.deepEqual(fp.outputs, ["b.txt"]);
    // The short hashes follow the sorted paths: "./" first, then a.txt, then the output b.txt.
    assert.equal(hex(inputHash(fp, 0)), hex(shortHash({ digest: DIR_DIGEST, mode: 0, size: 0, mtimeMs: 0, ino: 0 })));
    assert.equal(hex(inputHash(fp, 1)), hex(shortHash(fh("alpha"))));
    assert.equal(hex(outputHash(fp, 0)), hex(shortHash(fh("beta"))));
    assert.equal(hex(fp.bytes.subarray(64)), hex(inputHash(fp, 0)) + hex(inputHash(fp, 1)) + hex(outputHash(fp, 0)));
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
      assert.notEqual(hex(fingerprintDigest(computeFingerprint(args))), hex(fingerprintDigest(computeFingerprint(base()))));
    });
  }

  test("mtime and inode do not matter", () => {
    const args = base();
    args.inputs[0]![1] = fh("alpha", { mtimeMs: 5, ino: 999 });
    args.outputs[0]![1] = fh("beta", { mtimeMs: 6, ino: 1000 });
    const a = computeFingerprint(args);
    const b = computeFingerprint(base());
    assert.equal(hex(fingerprintDigest(a)), hex(fingerprintDigest(b)));
    assert.equal(hex(inputDigest(a)), hex(inputDigest(b)));
    assert.deepEqual(a.inputs, b.inputs);
    assert.equal(hex(a.bytes), hex(b.bytes), "short hashes too");
  });

  test("inpDigest covers key, inputs and env but not outputs", () => {
    const args = base();
    args.outputs[0]![1] = fh("other output");
    const a = computeFingerprint(args);
    const b = computeFingerprint(base());
    assert.equal(hex(inputDigest(a)), hex(inputDigest(b)));
    assert.notEqual(hex(fingerprintDigest(a)), hex(fingerprintDigest(b)));
    const envChanged = base();
    envChanged.env[0]![1] = "x";
    assert.notEqual(hex(inputDigest(computeFingerprint(envChanged))), hex(inputDigest(b)));
  });

  test("word boundaries cannot be shifted between neighbouring strings", () => {
    const mk = (key: string, env: Array<[string, string | null]>, inputs: Array<[string, FileHash]> = []) =>
      hex(fingerprintDigest(computeFingerprint({ key, inputs, env, outputs: [] })));
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
    assert.equal(hex(inputDigest(fp)), hex(blake3(expected)));
    assert.equal(hex(fingerprintDigest(fp)), hex(blake3(Buffer.concat([expected, Buffer.of(0x05, 0x03)]))));
  });

  test("long keys and many items grow the scratch buffer correctly", () => {
    const key = "x".repeat(200_000);
    const inputs: Array<[string, FileHash]> = [];
    for (let i = 0; i < 3000; i++) inputs.push([`dir/file${i}.txt`, fh(String(i))]);
    const a = computeFingerprint({ key, inputs, env: [], outputs: [] });
    const b = computeFingerprint({ key, inputs: inputs.slice().reverse(), env: [], outputs: [] });
    assert.equal(hex(fingerprintDigest(a)), hex(fingerprintDigest(b)));
    inputs[2999]![1] = fh("changed");
    assert.notEqual(hex(fingerprintDigest(computeFingerprint({ key, inputs, env: [], outputs: [] }))), hex(fingerprintDigest(a)));
  });
});

// The bytes hashed must never change by accident: state files saved earlier must keep
// skipping. These hashes were computed by the encoder of commit ef3532b; the arguments cover
// short ASCII strings, non-ASCII paths and env values, an astral character, a lone surrogate,
// an unset env var, strings of more than 256 characters, sizes above 2^32 and the directory
// marker.
describe("pinned fingerprints", () => {
  const pinDigest = (seed: number) => Uint8Array.from({ length: 32 }, (_, i) => (i * 7 + seed) & 0xff);
  const file = (seed: number, mode: number, size: number): FileHash => ({ digest: pinDigest(seed), mode, size, mtimeMs: 1_700_000_000_000.25, ino: seed });
  const dir: FileHash = { digest: DIR_DIGEST, mode: 0o40755, size: 4096, mtimeMs: 1, ino: 2 };
  const cases: Array<{ args: FingerprintArgs; digest: string; bytes: string }> = [
    {
      args: {
        key: "cp in/f1.txt out/f1.txt @ ./",
        inputs: [["./", dir], ["in/f1.txt", file(1, 0o100644, 11)], ["out/", dir]],
        env: [],
        outputs: [["out/f1.txt", file(2, 0o100644, 11)]],
      },
      digest: "1900ab99aa12f4dde0fefee44eb395bdb80d5e8c3fabcd3c0083a22f0d88530e",
      bytes:
        "1900ab99aa12f4dde0fefee44eb395bdb80d5e8c3fabcd3c0083a22f0d88530e" +
        "ac7d1c04f32d0eaadcf2af7f76e3a474f3a0eaafe8a55fc3a8063c4ef2ce0a92" +
        "2f3375f49e59fe6d" + "a29b0e0d28705403" + "2f3375f49e59fe6d" + "dff15132d314a99a",
    },
    {
      args: {
        key: "step:./\ncp in/ä.txt out/ä.txt",
        inputs: [["in/ä.txt", file(3, 0o100755, 5_000_000_123)], ["./", dir], ["in/\u{1F600}/x", file(4, 0o100644, 0)]],
        env: [["LANG", null], ["HOME", "/home/ü"], ["EMPTY", ""]],
        outputs: [["out/ä.txt", file(5, 0o100644, 7)], ["out/b", file(6, 0o100600, 1)]],
      },
      digest: "97b4d5e134920fe3bad7b85bbe08d18cfe2aaabdd8d7c9c6cbe3f39f64f547c4",
      bytes:
        "97b4d5e134920fe3bad7b85bbe08d18cfe2aaabdd8d7c9c6cbe3f39f64f547c4" +
        "c713625e94bca9d6c1380f6eac43f62f95beb8bfaec955d51bef4d69a3bffe87" +
        "2f3375f49e59fe6d" + "ffb095b6cd0151c0" + "d406a13a608d10f3" + "bf123c0c6bccb15e" + "a9cd0ebd21fde348",
    },
    {
      args: {
        key: `${"x".repeat(1000)} é ${"y".repeat(300)}`,
        inputs: [[`${"d/".repeat(200)}ünï.txt`, file(7, 0o100644, 3)]],
        env: [["V", "ascii only"], ["W", "lone \uD800 surrogate"]],
        outputs: [],
      },
      digest: "6b9cdd39143902abf239ea6c5ee219d92da9714df2adc42ceef90d419d3866c8",
      bytes:
        "6b9cdd39143902abf239ea6c5ee219d92da9714df2adc42ceef90d419d3866c8" +
        "9abaadd640a5e201c9064f856d2dde7ea8e2dc2062620675e205a36227b79bea" +
        "b2a066521e39eafc",
    },
  ];

  const check = (): void => {
    for (const { args, digest, bytes } of cases) {
      assert.equal(hex(computeDigest(args)), digest);
      const fp = computeFingerprint(args);
      assert.equal(hex(fp.bytes), bytes);
      assert.equal(matchesDigest(args, fp), true);
    }
  };

  test("digests, input digests and short hashes are those of the earlier encoder", () => {
    check();
  });

  test("are the same after the scratch buffer grew", () => {
    computeDigest({ key: "k".repeat(100_000), inputs: [["é".repeat(50_000), dir]], env: [], outputs: [] });
    check();
  });
});

describe("the hashed bytes", () => {
  // A plain reimplementation of the documented encoding (see the top of fingerprint.ts).
  const str = (s: string): Buffer => {
    const b = Buffer.from(s, "utf8");
    const head = Buffer.alloc(5);
    head[0] = 0x01;
    head.writeUInt32BE(b.length, 1);
    return Buffer.concat([head, b]);
  };
  const num = (x: number): Buffer => {
    const b = Buffer.alloc(9);
    b[0] = 0x04;
    // -0 is hashed as 0: equal numbers must hash equally.
    b.writeDoubleBE(Object.is(x, -0) ? 0 : x, 1);
    return b;
  };
  const bytes = (d: Uint8Array): Buffer => {
    const head = Buffer.alloc(5);
    head[0] = 0x03;
    head.writeUInt32BE(d.length, 1);
    return Buffer.concat([head, d]);
  };
  const fileHash = (h: FileHash): Buffer => Buffer.concat([num(h.mode), num(h.size), bytes(h.digest)]);
  const reference = (a: FingerprintArgs): { digest: string; inpDigest: string; shorts: string[] } => {
    const byName = <T>(list: Array<[string, T]>) => list.slice().sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    const parts: Buffer[] = [str("tsup-fingerprint/1"), str(a.key), Buffer.of(0x05, 0x01)];
    const shorts: string[] = [];
    for (const [path, h] of byName(a.inputs)) {
      parts.push(str(path), fileHash(h));
      shorts.push(hex(blake3(fileHash(h)).subarray(0, 8)));
    }
    parts.push(Buffer.of(0x05, 0x02));
    for (const [name, value] of byName(a.env)) parts.push(str(name), value === null ? Buffer.of(0x02) : str(value));
    const inpDigest = hex(blake3(Buffer.concat(parts)));
    parts.push(Buffer.of(0x05, 0x03));
    for (const [path, h] of byName(a.outputs)) {
      parts.push(str(path), fileHash(h));
      shorts.push(hex(blake3(fileHash(h)).subarray(0, 8)));
    }
    return { digest: hex(blake3(Buffer.concat(parts))), inpDigest, shorts };
  };

  test("follow the documented token encoding for strings of every kind and length", () => {
    const strings = [
      "",
      "a",
      "x".repeat(255),
      "x".repeat(256),
      "x".repeat(257),
      `${"x".repeat(255)}é`,
      `é${"x".repeat(300)}`,
      "\u007f\u0080",
      "日本語/ファイル",
      "emoji \u{1F389}",
      "lone \uDC00 low and \uD83D high",
    ];
    for (const s of strings) {
      const args: FingerprintArgs = {
        key: s,
        inputs: [[s, fh(s)], [`${s}/2`, { digest: DIR_DIGEST, mode: 0o40755, size: 2 ** 40 + 1, mtimeMs: 0, ino: 0 }]],
        env: [[s, s], [`${s}!`, null]],
        outputs: [[`${s}.out`, fh("o", { size: -0 })]],
      };
      const want = reference(args);
      const fp = computeFingerprint(args);
      const label = JSON.stringify(s.slice(0, 20));
      assert.equal(hex(computeDigest(args)), want.digest, label);
      assert.equal(hex(fingerprintDigest(fp)), want.digest, label);
      assert.equal(hex(inputDigest(fp)), want.inpDigest, label);
      assert.deepEqual([0, 1].map((i) => hex(inputHash(fp, i))).concat(hex(outputHash(fp, 0))), want.shorts, label);
    }
  });
});

describe("matchesDigest", () => {
  test("tells whether arguments give a fingerprint's digest", () => {
    const fp = computeFingerprint(base());
    assert.equal(matchesDigest(base(), fp), true);
    const reordered = base();
    reordered.inputs.reverse();
    assert.equal(matchesDigest(reordered, fp), true);
    const changed = base();
    changed.outputs[0]![1] = fh("beta!");
    assert.equal(matchesDigest(changed, fp), false);
    // Only the digest counts: the input digest and short hashes are for explanations.
    const other = computeFingerprint(changed);
    other.bytes.set(fingerprintDigest(fp));
    assert.equal(matchesDigest(base(), other), true);
    other.bytes[31] = other.bytes[31]! ^ 1;
    assert.equal(matchesDigest(base(), other), false);
  });
});

describe("hasDigest", () => {
  test("compares the first 32 bytes of a fingerprint with 32 bytes at an offset", () => {
    const fp = computeFingerprint(base());
    const padded = new Uint8Array(40);
    padded.set(fingerprintDigest(fp), 5);
    assert.equal(hasDigest(fp, padded, 5), true);
    assert.equal(hasDigest(fp, padded, 4), false);
    assert.equal(hasDigest(fp, padded, 9), false, "fewer than 32 bytes left");
    assert.equal(hasDigest(fp, inputDigest(fp)), false);
  });
});

describe("keepFingerprint", () => {
  test("moves the bytes into a shared slab and keeps them", () => {
    const a = computeFingerprint(base());
    const b = computeFingerprint({ ...base(), key: "other" });
    const before = [hex(a.bytes), hex(b.bytes)];
    keepFingerprint(a);
    keepFingerprint(b);
    assert.deepEqual([hex(a.bytes), hex(b.bytes)], before);
    assert.equal(a.bytes.buffer, b.bytes.buffer, "one slab for both");
    assert.ok(a.bytes.buffer.byteLength > a.bytes.length);
    const again = a.bytes;
    assert.equal(keepFingerprint(a).bytes, again, "a kept fingerprint is not copied again");
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
