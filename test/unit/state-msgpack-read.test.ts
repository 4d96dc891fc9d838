import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Packr } from "msgpackr";
import { decodeMsgpack, MsgpackError } from "../../src/state/msgpack-read.js";

const packr = new Packr({ useRecords: false });

/** Plain objects instead of null-prototype ones, and Buffers as plain byte lists, for deepEqual. */
function plain(x: unknown): unknown {
  if (Buffer.isBuffer(x)) return { bytes: [...x] };
  if (x instanceof Uint8Array) return { bytes: [...x] };
  if (Array.isArray(x)) return x.map(plain);
  if (x !== null && typeof x === "object") {
    return Object.fromEntries(Object.entries(x as Record<string, unknown>).map(([k, v]) => [k, plain(v)]));
  }
  return x;
}

describe("msgpack head decoder", () => {
  test("decodes what msgpackr encodes, for every type the state file can hold", () => {
    const long = (n: number, c = "x"): string => c.repeat(n);
    const values: unknown[] = [
      0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1,
      -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53 - 1),
      0.5, -1.25, 1e300, Math.PI,
      null, true, false,
      "", "a", long(31), long(32), long(255), long(256), long(65535), long(65536),
      "ünïcødé ✓ 𝄞", long(40, "é"),
      [], [1, [2, [3, []]]], ["a", "bc", 3, "ü", null], ["ascii", "naïve", "x".repeat(300), "", "日本"], Array.from({ length: 20 }, (_, i) => `p${i}`), Array.from({ length: 70000 }, (_, i) => i % 7),
      {}, { a: 1, b: [true, null], c: { d: "e" } }, Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])),
      Buffer.from([]), Buffer.from([1, 2, 3]), Buffer.alloc(300, 7), Buffer.alloc(70000, 9),
    ];
    for (const v of values) {
      const encoded = packr.pack(v);
      assert.deepEqual(plain(decodeMsgpack(encoded)), plain(v), `value ${JSON.stringify(v)?.slice(0, 60)}`);
    }
  });

  test("a state-file-like head decodes to the same document as msgpackr reads", () => {
    const doc = {
      format: "tsup-workflow",
      version: 3,
      stepCount: 2,
      strings: ["./", "in/ä.txt", "out/"],
      commands: ["cp a b", "x".repeat(300)],
      poolSizes: [2, 1.5],
      moreStrings: [],
      generation: "0123456789abcdef0123456789abcdef",
      stepBytes: 12,
      raw: Buffer.from("raw bytes"),
    };
    const encoded = packr.pack(doc);
    assert.deepEqual(plain(decodeMsgpack(encoded)), plain(packr.unpack(encoded)));
  });

  test("maps have no prototype: a __proto__ key is plain data", () => {
    const encoded = Buffer.concat([Buffer.of(0x81), packr.pack("__proto__"), packr.pack({ polluted: 1 })]);
    const m = decodeMsgpack(encoded) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(m), null);
    assert.deepEqual(plain(m["__proto__"]), { polluted: 1 });
    assert.equal(({} as Record<string, unknown>)["polluted"], undefined);
  });

  test("bytes that are not one complete value are refused with where", () => {
    const ok = packr.pack({ strings: ["a", "b"], raw: Buffer.from("xyz") });
    for (let cut = 0; cut < ok.length; cut++) {
      assert.throws(() => decodeMsgpack(ok.subarray(0, cut)), MsgpackError, `cut at ${cut}`);
    }
    assert.throws(() => decodeMsgpack(Buffer.concat([ok, Buffer.of(0)])), /1 bytes after the value/);
    // Extension types (msgpackr's undefined, timestamps) never occur in a state file.
    assert.throws(() => decodeMsgpack(packr.pack(undefined)), /unsupported type byte 0xd4 at byte 0/);
    assert.throws(() => decodeMsgpack(Buffer.of(0xc1)), /unsupported type byte 0xc1/);
    // A count far beyond the data is refused before anything is allocated for it.
    assert.throws(() => decodeMsgpack(Buffer.of(0xdd, 0xff, 0xff, 0xff, 0xff, 0x01)), /truncated/);
    // So is nesting deep enough to exhaust the stack.
    assert.throws(() => decodeMsgpack(Buffer.alloc(100000, 0x91)), /nested too deeply/);
    // Map keys must be strings or numbers.
    assert.throws(() => decodeMsgpack(Buffer.of(0x81, 0x90, 0x01)), /map key at byte \d+ is not a string or number/);
  });
});
