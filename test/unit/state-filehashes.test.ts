import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FileHashes } from "../../src/state/filehashes.js";
import { DIR_DIGEST, type FileHash } from "../../src/state/types.js";

function hash(seed: number, extra: Partial<FileHash> = {}): FileHash {
  const digest = new Uint8Array(32);
  for (let i = 0; i < 32; i++) digest[i] = (seed * 31 + i) & 0xff;
  return { digest, mode: 0o100644, size: seed, mtimeMs: 1.7e12 + seed + 0.25, ino: 1000 + seed, ...extra };
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

describe("file hash table", () => {
  test("gives back what was set, in the order it was set", () => {
    const t = new FileHashes(2);
    for (let i = 0; i < 100; i++) t.set(`f${i}`, hash(i));
    assert.equal(t.size, 100);
    assert.deepEqual(t.get("f57"), hash(57));
    assert.equal(t.get("nope"), undefined);
    assert.deepEqual([...t.keys()].slice(0, 3), ["f0", "f1", "f2"]);
    assert.ok(t.holds("f3", hash(3)));
    assert.ok(!t.holds("f3", hash(4)));
    assert.ok(!t.holds("f3", { ...hash(3), mtimeMs: 0 }));
  });

  test("directories share the marker; short and empty digests keep their length", () => {
    const t = FileHashes.from([
      ["d/", { digest: Uint8Array.of(0x64), mode: 0, size: 0, mtimeMs: 0, ino: 0 }],
      ["odd", { ...hash(1), digest: Uint8Array.of(1, 2, 3) }],
      ["empty", { ...hash(2), digest: new Uint8Array(0) }],
    ]);
    assert.equal(t.get("d/")!.digest, DIR_DIGEST);
    assert.equal(hex(t.get("odd")!.digest), "010203");
    assert.equal(t.get("empty")!.digest.length, 0);
    assert.throws(() => t.set("long", { ...hash(3), digest: new Uint8Array(33) }), /at most 32 bytes/);
  });

  test("a digest handed out never changes, whatever happens to the table later", () => {
    const t = new FileHashes(4);
    t.set("a", hash(1));
    const before = t.get("a")!;
    const bytes = hex(before.digest);
    t.set("a", hash(2));
    for (let i = 0; i < 5000; i++) t.set(`x${i}`, hash(i)); // grows the columns
    for (let i = 0; i < 5000; i++) t.delete(`x${i}`);
    for (let i = 0; i < 3000; i++) t.set("a", hash(i)); // holes, then compaction
    assert.equal(hex(before.digest), bytes);
    assert.deepEqual(t.get("a"), hash(2999));
    assert.equal(t.size, 1);
  });

  test("setting the same values again changes nothing; delete removes", () => {
    const t = new FileHashes();
    t.set("a", hash(1));
    t.set("b", hash(2));
    const snap = t.snapshot();
    t.set("a", hash(1));
    assert.equal(t.finderIn(snap).find("a"), 0, "no new slot for an unchanged hash");
    assert.equal(t.delete("a"), true);
    assert.equal(t.delete("a"), false);
    assert.equal(t.has("a"), false);
    assert.deepEqual([...t], [["b", hash(2)]]);
  });

  test("a snapshot has no holes and does not change with the table", () => {
    const t = new FileHashes();
    for (let i = 0; i < 10; i++) t.set(`f${i}`, hash(i));
    t.delete("f3");
    t.set("f5", hash(50));
    const snap = t.snapshot();
    assert.equal(snap.count, 9);
    assert.deepEqual(snap.paths, ["f0", "f1", "f2", "f4", "f6", "f7", "f8", "f9", "f5"]);
    assert.equal(snap.stats[3 * 8], 50, "size of f5 as set last");
    const digests = hex(snap.digests);
    // Later changes of every kind.
    t.set("f0", hash(100));
    t.delete("f1");
    t.set("new", hash(7));
    assert.equal(t.finderIn(snap).find("f4"), 3, "f4 is still where the snapshot has it");
    for (let i = 0; i < 3000; i++) t.set("f2", hash(i));
    assert.equal(hex(snap.digests), digests);
    assert.deepEqual(snap.paths, ["f0", "f1", "f2", "f4", "f6", "f7", "f8", "f9", "f5"]);
    // A path is found at its place in the snapshot, or (when the table has moved it since) not
    // at all, never elsewhere.
    const finder = t.finderIn(snap);
    snap.paths.forEach((p, i) => assert.ok([i, -1].includes(finder.find(p)), p));
    assert.equal(t.finderIn(snap).find("f0"), 0, "found right where the snapshot has it");
    // f9 is too far from where a new finder starts to look: the table's map has its slot since
    // compacting, which is not its slot in the snapshot.
    assert.equal(t.finderIn(snap).find("f9"), -1, "f9 moved when the table was compacted");
    assert.equal(t.finderIn(snap).find("new"), -1, "new came after the snapshot");
  });

  test("the slot finder agrees with the table in any order of asking", () => {
    const t = new FileHashes();
    const n = 500;
    for (let i = 0; i < n; i++) t.set(`in/${i}`, hash(i));
    for (let i = 0; i < n; i++) t.set(`out/${i}`, hash(n + i));
    t.set("in/7", hash(9999)); // moved to the end
    const snap = t.snapshot();
    const slotOf = new Map(snap.paths.map((p, i) => [p, i]));
    const asked: string[] = [];
    // In step order (two interleaved runs of slots), backwards, and in a scrambled order.
    for (let i = 0; i < n; i++) asked.push(`in/${i}`, `out/${i}`);
    for (let i = n - 1; i >= 0; i--) asked.push(`out/${i}`);
    for (let i = 0; i < n; i++) asked.push(`in/${(i * 7919) % n}`);
    asked.push("missing", "in/", "");
    const finder = t.finderIn(snap);
    for (const p of asked) assert.equal(finder.find(p), slotOf.get(p) ?? -1, p);
  });

  test("selected() is the table itself when every path is chosen, else a copy of the chosen", () => {
    const t = new FileHashes();
    for (let i = 0; i < 6; i++) t.set(`f${i}`, hash(i));
    const all = t.selection();
    for (let i = 5; i >= 0; i--) all.add(`f${i}`);
    all.add("f2");
    all.add("unknown");
    assert.equal(all.count, 6);
    assert.equal(t.selected(all), t);
    const some = t.selection();
    some.add("f4");
    some.add("f1");
    const copy = t.selected(some);
    assert.notEqual(copy, t);
    assert.deepEqual([...copy], [["f1", hash(1)], ["f4", hash(4)]]);
    copy.set("f1", hash(9));
    assert.deepEqual(t.get("f1"), hash(1), "the copy is independent");
  });

  test("clone() is an independent copy without holes", () => {
    const t = new FileHashes();
    for (let i = 0; i < 5; i++) t.set(`f${i}`, hash(i));
    t.delete("f2");
    const c = t.clone();
    c.set("f0", hash(70));
    t.set("f1", hash(71));
    assert.deepEqual(c.get("f0"), hash(70));
    assert.deepEqual(c.get("f1"), hash(1));
    assert.deepEqual(t.get("f0"), hash(0));
    assert.deepEqual([...c.keys()], ["f1", "f3", "f4", "f0"], "a path whose hash changed comes last");
    assert.equal(c.snapshot().count, 4);
  });

  test("a table from columns, even empty ones, takes new paths", () => {
    for (const n of [0, 1, 3]) {
      const source = new FileHashes();
      for (let i = 0; i < n; i++) source.set(`f${i}`, hash(i));
      const t = FileHashes.fromColumns(source.snapshot());
      const copy = t.clone();
      for (const table of [t, copy]) {
        for (let i = 0; i < 100; i++) table.set(`g${i}`, hash(100 + i));
        assert.equal(table.size, n + 100);
        assert.deepEqual(table.get("g99"), hash(199));
        if (n > 0) assert.deepEqual(table.get("f0"), hash(0));
      }
    }
  });

  test("values the state file cannot hold are refused when set", () => {
    const t = new FileHashes();
    assert.throws(() => t.set("a", hash(1, { mode: 2 ** 32 })), /mode/);
    assert.throws(() => t.set("a", hash(1, { ino: Number.POSITIVE_INFINITY })), /finite/);
    assert.equal(t.size, 0);
  });
});
