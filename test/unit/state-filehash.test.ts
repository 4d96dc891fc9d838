import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { blake3 } from "@napi-rs/blake-hash";
import { equalBytes, hashPath, sameContent, type HashOutcome } from "../../src/state/filehash.js";
import { DIR_DIGEST, type FileHash } from "../../src/state/types.js";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "tsup-filehash-"));
  dirs.push(d);
  return d;
}

function ok(outcome: HashOutcome): FileHash {
  assert.equal(outcome.kind, "ok", JSON.stringify(outcome));
  if (outcome.kind !== "ok") throw new Error("unreachable");
  return outcome.hash;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

/** A fixed whole-second mtime, so restoring it afterwards gives exactly the same stat value. */
const FIXED_TIME = 1_600_000_000;

describe("hashPath", () => {
  test("hashes the content with BLAKE3 and records the stat values", () => {
    const file = join(tempDir(), "a.txt");
    writeFileSync(file, "hello");
    const h = ok(hashPath(file, false, null));
    const st = statSync(file);
    assert.equal(hex(h.digest), hex(blake3(Buffer.from("hello"))));
    assert.equal(h.size, 5);
    assert.equal(h.mode, st.mode);
    assert.equal(h.ino, st.ino);
    assert.equal(h.mtimeMs, st.mtimeMs);
  });

  test("the stat shortcut skips reading when mode, size, mtime and inode are unchanged", () => {
    const file = join(tempDir(), "a.txt");
    writeFileSync(file, "aaaa");
    utimesSync(file, FIXED_TIME, FIXED_TIME);
    const known = ok(hashPath(file, false, null));
    // Same size, same inode, mtime put back: only a re-read could notice the new content.
    writeFileSync(file, "bbbb");
    utimesSync(file, FIXED_TIME, FIXED_TIME);
    const again = ok(hashPath(file, false, known));
    assert.equal(again, known, "the known hash is returned as is");
    assert.equal(hex(again.digest), hex(blake3(Buffer.from("aaaa"))));
    // Without a known hash the real content is seen.
    assert.equal(hex(ok(hashPath(file, false, null)).digest), hex(blake3(Buffer.from("bbbb"))));
  });

  test("a real change (new mtime) is read again", () => {
    const file = join(tempDir(), "a.txt");
    writeFileSync(file, "aaaa");
    utimesSync(file, FIXED_TIME, FIXED_TIME);
    const known = ok(hashPath(file, false, null));
    writeFileSync(file, "bbbb");
    utimesSync(file, FIXED_TIME + 10, FIXED_TIME + 10);
    const now = ok(hashPath(file, false, known));
    assert.equal(hex(now.digest), hex(blake3(Buffer.from("bbbb"))));
    assert.equal(sameContent(known, now), false);
  });

  test("touch alone re-reads but reports the same content", () => {
    const file = join(tempDir(), "a.txt");
    writeFileSync(file, "same");
    utimesSync(file, FIXED_TIME, FIXED_TIME);
    const known = ok(hashPath(file, false, null));
    utimesSync(file, FIXED_TIME + 5, FIXED_TIME + 5);
    const now = ok(hashPath(file, false, known));
    assert.notEqual(now.mtimeMs, known.mtimeMs);
    assert.equal(sameContent(known, now), true);
  });

  test("chmod changes the mode and with it the content identity", () => {
    const file = join(tempDir(), "run.sh");
    writeFileSync(file, "#!/bin/sh\n");
    chmodSync(file, 0o644);
    const known = ok(hashPath(file, false, null));
    chmodSync(file, 0o755);
    const now = ok(hashPath(file, false, known));
    assert.equal(now.mode & 0o777, 0o755);
    assert.equal(known.mode & 0o777, 0o644);
    assert.equal(hex(now.digest), hex(known.digest));
    assert.equal(sameContent(known, now), false);
  });

  test("a directory needs isDir and gets the directory marker", () => {
    const root = tempDir();
    const sub = join(root, "sub");
    mkdirSync(sub);
    const h = ok(hashPath(`${sub}/`, true, null));
    assert.ok(equalBytes(h.digest, DIR_DIGEST));
    assert.equal(h.mode, 0);
    const wrong = hashPath(sub, false, null);
    assert.equal(wrong.kind, "wrong-type");
    const file = join(root, "f.txt");
    writeFileSync(file, "x");
    assert.equal(hashPath(file, true, null).kind, "wrong-type");
  });

  test("missing paths, also below a file, are missing", () => {
    const root = tempDir();
    assert.deepEqual(hashPath(join(root, "nope.txt"), false, null), { kind: "missing" });
    writeFileSync(join(root, "file"), "x");
    assert.deepEqual(hashPath(join(root, "file", "below"), false, null), { kind: "missing" });
    assert.deepEqual(hashPath(join(root, "nodir") + "/", true, null), { kind: "missing" });
  });

  test("symlinks are followed; a broken one is missing", () => {
    const root = tempDir();
    writeFileSync(join(root, "target.txt"), "via link");
    symlinkSync("target.txt", join(root, "link.txt"));
    symlinkSync("absent.txt", join(root, "broken.txt"));
    assert.equal(hex(ok(hashPath(join(root, "link.txt"), false, null)).digest), hex(blake3(Buffer.from("via link"))));
    assert.deepEqual(hashPath(join(root, "broken.txt"), false, null), { kind: "missing" });
  });

  test("large files are streamed and hash like the one-shot path", () => {
    const file = join(tempDir(), "big.bin");
    const data = Buffer.alloc(9 * 1024 * 1024 + 17);
    for (let i = 0; i < data.length; i += 4096) data[i] = i & 0xff;
    writeFileSync(file, data);
    const h = ok(hashPath(file, false, null));
    assert.equal(hex(h.digest), hex(blake3(data)));
    assert.equal(h.size, data.length);
  });
});

describe("sameContent and equalBytes", () => {
  test("compare mode, size and digest but ignore mtime and inode", () => {
    const a: FileHash = { digest: Uint8Array.of(1, 2), mode: 1, size: 2, mtimeMs: 1, ino: 1 };
    assert.equal(sameContent(a, { ...a, mtimeMs: 9, ino: 9 }), true);
    assert.equal(sameContent(a, { ...a, digest: Uint8Array.of(1, 3) }), false);
    assert.equal(sameContent(a, { ...a, size: 3 }), false);
    assert.equal(equalBytes(Uint8Array.of(1), Uint8Array.of(1, 0)), false);
    assert.equal(equalBytes(new Uint8Array(0), new Uint8Array(0)), true);
  });
});
