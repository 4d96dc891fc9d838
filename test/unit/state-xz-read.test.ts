import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { test } from "node:test";
import { isXz, xzDecompressSync } from "../../src/state/xz-read.js";

// The reference encoder: lzma-native's own compress(), the one the save uses.
const lzma = createRequire(import.meta.url)("lzma-native") as {
  compress(data: Buffer, options: { preset: number }): Promise<Buffer>;
};

/** Deterministic bytes that compress somewhat (repeats) but not to nothing. */
function sample(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = i % 7 === 0 ? x >>> 24 : 97 + (i % 13);
  }
  return b;
}

test("decompresses what lzma-native compressed, one stream or several concatenated", async () => {
  for (const n of [0, 1, 1000, 300_000]) {
    const data = sample(n, n + 1);
    const xz = await lzma.compress(data, { preset: 0 });
    assert.ok(isXz(xz));
    assert.deepEqual(xzDecompressSync(xz), data, `${n} bytes`);
  }
  const a = sample(70_000, 1);
  const b = sample(5000, 2);
  const both = Buffer.concat([await lzma.compress(a, { preset: 0 }), await lzma.compress(b, { preset: 6 })]);
  assert.deepEqual(xzDecompressSync(both), Buffer.concat([a, b]));
});

test("agrees with the xz program when it is installed", async (t) => {
  const data = sample(200_000, 7);
  const xz = spawnSync("xz", ["-z", "-c", "-0"], { input: data });
  if (xz.status !== 0 || xz.error) {
    t.skip("no xz program here");
    return;
  }
  assert.deepEqual(xzDecompressSync(xz.stdout), data);
});

test("truncated, damaged or foreign data throws, never returns part of the data", async () => {
  const data = sample(100_000, 3);
  const xz = await lzma.compress(data, { preset: 0 });
  for (const cut of [0, 5, 12, 100, xz.length - 13, xz.length - 1]) {
    assert.throws(() => xzDecompressSync(xz.subarray(0, cut)), Error, `cut at ${cut}`);
  }
  const damaged = Buffer.from(xz);
  damaged[Math.floor(xz.length / 2)]! ^= 0xff;
  assert.throws(() => xzDecompressSync(damaged));
  assert.throws(() => xzDecompressSync(Buffer.from("plainly not xz")));
  // Garbage after a complete stream is not another stream.
  assert.throws(() => xzDecompressSync(Buffer.concat([xz, Buffer.from("trailing")])));
});

test("isXz looks at the magic bytes only", () => {
  assert.equal(isXz(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2])), true);
  assert.equal(isXz(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a])), false);
  assert.equal(isXz(Buffer.from("\x00\x37zXZ\x00")), false);
});
