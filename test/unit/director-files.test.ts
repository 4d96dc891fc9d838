import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { FileTable } from "../../src/director/files.js";
import { FileHashes } from "../../src/state/filehashes.js";

const root = mkdtempSync(join(tmpdir(), "tsup-files-"));
after(() => rmSync(root, { recursive: true, force: true }));

/** A table that already knows a.txt and b.txt, as one loaded from the state file would. */
function loadedTable(): FileTable {
  writeFileSync(join(root, "a.txt"), "apple\n");
  writeFileSync(join(root, "b.txt"), "banana\n");
  const first = new FileTable(root, new FileHashes());
  for (const path of ["a.txt", "b.txt"]) assert.equal(first.hash(path).kind, "ok");
  return new FileTable(root, first.hashes);
}

describe("FileTable: what the journal must hold before a run may end on it", () => {
  test("hashes confirmed by stat() change nothing", () => {
    const files = loadedTable();
    assert.equal(files.hash("a.txt").kind, "ok");
    assert.equal(files.changed, false);
    assert.equal(files.allJournaled, true);
  });

  test("a hash learned anew stays unjournaled until a journal entry holds that path", () => {
    const files = loadedTable();
    const later = new Date(Date.now() + 5000);
    utimesSync(join(root, "a.txt"), later, later); // touched: same content, new mtime
    assert.equal(files.hash("a.txt").kind, "ok");
    assert.equal(files.changed, true);
    assert.equal(files.allJournaled, false);
    files.journaled("b.txt");
    assert.equal(files.allJournaled, false, "another path's entry does not cover it");
    files.journaled("a.txt");
    assert.equal(files.allJournaled, true);
  });

  test("a remembered result and a dropped entry count as changes too", () => {
    const files = loadedTable();
    const known = files.known("b.txt");
    assert.ok(known);
    files.remember("b.txt", { ...known, mtimeMs: known.mtimeMs + 1 });
    assert.equal(files.allJournaled, false);
    files.journaled("b.txt");
    assert.equal(files.allJournaled, true);
    files.forget("a.txt");
    assert.equal(files.known("a.txt"), null);
    assert.equal(files.allJournaled, false, "no journal entry says that a.txt is gone");
    files.forget("missing.txt");
    files.journaled("a.txt");
    assert.equal(files.allJournaled, true, "forgetting a path the table lacks changes nothing");
  });
});

describe("FileTable.present: a check that a static file is there", () => {
  test("a file the table does not know is stat()ed, not hashed: the table stays as it was", () => {
    const files = loadedTable();
    writeFileSync(join(root, "README.txt"), "read me\n");
    assert.equal(files.present("README.txt"), true);
    assert.equal(files.known("README.txt"), null);
    assert.equal(files.changed, false);
    assert.equal(files.allJournaled, true);
  });

  test("a known file is confirmed like any hash; missing files and misplaced directories are not there", () => {
    const files = loadedTable();
    assert.equal(files.present("a.txt"), true);
    assert.equal(files.changed, false);
    mkdirSync(join(root, "sub"), { recursive: true });
    assert.equal(files.present("sub/"), true);
    assert.equal(files.present("sub"), false, "a directory named without its slash");
    assert.equal(files.present("nothing.txt"), false);
    assert.equal(files.present("a.txt/inside"), false, "a parent that is a file");
  });
});
