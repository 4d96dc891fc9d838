// Directory watcher (src/watch/watcher.ts) on real temp directories. The inotify limit is
// simulated with a fake watchFn because the real one cannot be lowered from a test.
import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  unlinkSync,
  watch as fsWatch,
  writeFileSync,
  type FSWatcher,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DirectoryWatcher, type WatchEvent, type WatcherOptions } from "../../src/watch/watcher.js";

interface Harness {
  root: string;
  watcher: DirectoryWatcher;
  events: WatchEvent[];
  problems: { message: string; details: string }[];
}

const cleanups: (() => void)[] = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function tempDir(): string {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), "tsup-watch-")));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function harness(extra: Partial<WatcherOptions> = {}): Harness {
  const root = tempDir();
  const events: WatchEvent[] = [];
  const problems: { message: string; details: string }[] = [];
  const watcher = new DirectoryWatcher({
    root,
    onEvent: (event) => events.push(event),
    onProblem: (message, details) => problems.push({ message, details }),
    ...extra,
  });
  cleanups.push(() => watcher.close());
  return { root, watcher, events, problems };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function has(events: WatchEvent[], path: string, kind: WatchEvent["kind"]): boolean {
  return events.some((e) => e.path === path && e.kind === kind);
}

async function waitEvent(h: Harness, path: string, kind: WatchEvent["kind"]): Promise<void> {
  await waitFor(`${kind} ${path} (got ${JSON.stringify(h.events)})`, () => has(h.events, path, kind));
}

/**
 * Write a marker file in a watched directory and wait for its event. inotify delivers events of
 * one process in order, so anything an earlier change would have produced has arrived by then.
 */
let markerCount = 0;
async function barrier(h: Harness, dir = ""): Promise<void> {
  const name = `marker-${++markerCount}`;
  writeFileSync(join(h.root, dir, name), "m");
  await waitEvent(h, dir === "" ? name : `${dir}/${name}`, "updated");
}

function enospc(path: string): Error {
  return Object.assign(new Error(`ENOSPC: System limit for number of file watchers reached, watch '${path}'`), {
    code: "ENOSPC",
    errno: -28,
    syscall: "watch",
  });
}

describe("DirectoryWatcher", () => {
  it("reports created, modified and deleted entries with workflow paths", async () => {
    const h = harness();
    mkdirSync(join(h.root, "sub"));
    h.watcher.setDirectories(["./", "sub/"]);
    assert.equal(h.watcher.unwatched.size, 0);

    writeFileSync(join(h.root, "a.txt"), "1");
    await waitEvent(h, "a.txt", "updated");
    writeFileSync(join(h.root, "sub/b.txt"), "1");
    await waitEvent(h, "sub/b.txt", "updated");
    mkdirSync(join(h.root, "sub/new"));
    await waitEvent(h, "sub/new/", "updated");

    h.events.length = 0;
    writeFileSync(join(h.root, "a.txt"), "2");
    await waitEvent(h, "a.txt", "updated");
    unlinkSync(join(h.root, "sub/b.txt"));
    await waitEvent(h, "sub/b.txt", "deleted");
    rmSync(join(h.root, "sub/new"), { recursive: true });
    // Not a watched directory, so after deletion nothing tells it was a directory.
    await waitEvent(h, "sub/new", "deleted");
    await barrier(h);
    assert.ok(!h.events.some((e) => e.path.startsWith("/") || e.path.startsWith("./")), JSON.stringify(h.events));
    assert.ok(!has(h.events, "a.txt", "deleted"));
    assert.equal(h.problems.length, 0);
  });

  it("does not repeat an identical event within one burst", async () => {
    const h = harness();
    h.watcher.setDirectories(["./"]);
    // One write produces several raw notifications (create, modify, close).
    writeFileSync(join(h.root, "a.txt"), "x".repeat(1000));
    await waitEvent(h, "a.txt", "updated");
    await barrier(h);
    const updates = h.events.filter((e) => e.path === "a.txt");
    assert.equal(updates.length, 1, JSON.stringify(h.events));
  });

  it("stops reporting a directory removed from the set", async () => {
    const h = harness();
    mkdirSync(join(h.root, "sub"));
    mkdirSync(join(h.root, "other"));
    h.watcher.setDirectories(["./", "sub/", "other/"]);
    writeFileSync(join(h.root, "sub/b.txt"), "1");
    await waitEvent(h, "sub/b.txt", "updated");

    h.watcher.setDirectories(["./", "other/"]);
    writeFileSync(join(h.root, "sub/c.txt"), "1");
    writeFileSync(join(h.root, "other/d.txt"), "1");
    await waitEvent(h, "other/d.txt", "updated");
    await barrier(h);
    assert.ok(!h.events.some((e) => e.path.startsWith("sub/c")), JSON.stringify(h.events));
    assert.ok(!h.watcher.unwatched.has("sub/"));
  });

  it("reports a deleted watched directory, drops its watch and rewatches it when it returns", async () => {
    const h = harness();
    mkdirSync(join(h.root, "sub"));
    writeFileSync(join(h.root, "sub/x.txt"), "1");
    h.watcher.setDirectories(["./", "sub/"]);

    rmSync(join(h.root, "sub"), { recursive: true });
    await waitEvent(h, "sub/", "deleted");
    await waitEvent(h, "sub/x.txt", "deleted");
    assert.ok(h.watcher.unwatched.has("sub/"));
    assert.ok(!has(h.events, "sub", "deleted"), "the parent's view should use the directory form");

    mkdirSync(join(h.root, "sub"));
    await waitEvent(h, "sub/", "updated");
    assert.ok(!h.watcher.unwatched.has("sub/"));
    writeFileSync(join(h.root, "sub/y.txt"), "1");
    await waitEvent(h, "sub/y.txt", "updated");
    assert.equal(h.problems.length, 0);
  });

  it("reports a watched directory renamed away and ignores what happens at its new place", async () => {
    const h = harness();
    mkdirSync(join(h.root, "mv"));
    // The root is deliberately not watched: the directory's own watch must notice.
    h.watcher.setDirectories(["mv/", "keep/"]);
    mkdirSync(join(h.root, "keep"));
    h.watcher.setDirectories(["mv/", "keep/"]);
    assert.deepEqual([...h.watcher.unwatched], []);

    renameSync(join(h.root, "mv"), join(h.root, "mv2"));
    await waitEvent(h, "mv/", "deleted");
    assert.deepEqual([...h.watcher.unwatched], ["mv/"]);
    writeFileSync(join(h.root, "mv2/y.txt"), "1");
    await barrier(h, "keep");
    assert.ok(!h.events.some((e) => e.path.startsWith("mv/y") || e.path.startsWith("mv2")), JSON.stringify(h.events));
  });

  it("keeps missing directories unwatched silently and reports ones that cannot be watched", async () => {
    const h = harness();
    writeFileSync(join(h.root, "file"), "1");
    h.watcher.setDirectories(["later/", "file/"]);
    assert.deepEqual([...h.watcher.unwatched].sort(), ["file/", "later/"]);
    assert.equal(h.problems.length, 1);
    assert.match(h.problems[0]!.message, /Cannot watch 1 directory: not a directory/);
    assert.match(h.problems[0]!.details, /file\//);

    mkdirSync(join(h.root, "later"));
    h.watcher.setDirectories(["later/", "file/"]);
    assert.deepEqual([...h.watcher.unwatched], ["file/"]);
    assert.equal(h.problems.length, 1, "an unchanged problem is not repeated");
    writeFileSync(join(h.root, "later/z"), "1");
    await waitEvent(h, "later/z", "updated");
  });

  it("reports absolute directories with absolute paths", async () => {
    const h = harness();
    const outside = tempDir();
    h.watcher.setDirectories([outside + "/"]);
    mkdirSync(join(outside, "d"));
    await waitEvent(h, `${outside}/d/`, "updated");
  });

  it("survives the watch limit, reports it once and retries later", async () => {
    const limit = 3;
    let limited = true;
    let active = 0;
    let attempts = 0;
    const fakeWatch = ((path: string, options: object) => {
      attempts++;
      if (limited && active >= limit) throw enospc(path);
      const watcher: FSWatcher = fsWatch(path, options);
      active++;
      const close = watcher.close.bind(watcher);
      watcher.close = () => {
        active--;
        close();
      };
      return watcher;
    }) as unknown as typeof fsWatch;
    const h = harness({ watchFn: fakeWatch });
    const dirs = ["d0/", "d1/", "d2/", "d3/", "d4/", "d5/", "d6/"];
    for (const dir of dirs) mkdirSync(join(h.root, dir));

    h.watcher.setDirectories(dirs);
    assert.equal(attempts, limit + 1, "after the first ENOSPC the rest is not even tried");
    assert.deepEqual([...h.watcher.unwatched], ["d3/", "d4/", "d5/", "d6/"]);
    assert.equal(h.problems.length, 1);
    const message = h.problems[0]!.message;
    assert.match(message, /^Cannot watch 4 directories: the system limit of inotify watches/);
    const procFile = "/proc/sys/fs/inotify/max_user_watches";
    if (existsSync(procFile)) {
      const real = readFileSync(procFile, "utf8").trim();
      assert.ok(message.includes(`fs.inotify.max_user_watches = ${real}`), message);
    }
    assert.match(message, /press r/);
    assert.match(message, /sudo sysctl fs\.inotify\.max_user_watches=\d+/);
    assert.match(h.problems[0]!.details, /d3\//);

    // The watched ones keep working, the others stay quiet.
    writeFileSync(join(h.root, "d5/f"), "1");
    writeFileSync(join(h.root, "d0/f"), "1");
    await waitEvent(h, "d0/f", "updated");
    await barrier(h, "d1");
    assert.ok(!has(h.events, "d5/f", "updated"));

    // Same situation again: retried, but not announced again.
    h.watcher.setDirectories(dirs);
    assert.equal(h.problems.length, 1);
    assert.equal(h.watcher.unwatched.size, 4);

    // Dropping a directory frees a watch for one of the waiting ones; the count is updated.
    h.watcher.setDirectories(dirs.slice(1));
    assert.deepEqual([...h.watcher.unwatched], ["d4/", "d5/", "d6/"]);
    assert.equal(h.problems.length, 2);
    assert.match(h.problems[1]!.message, /^Cannot watch 3 directories/);

    // The limit is raised: everything gets watched, nothing more to complain about.
    limited = false;
    h.watcher.setDirectories(dirs.slice(1));
    assert.equal(h.watcher.unwatched.size, 0);
    assert.equal(h.problems.length, 2);
    writeFileSync(join(h.root, "d6/g"), "1");
    await waitEvent(h, "d6/g", "updated");
  });

  it("reports EMFILE without throwing", () => {
    const fakeWatch = ((path: string) => {
      throw Object.assign(new Error(`EMFILE: too many open files, watch '${path}'`), { code: "EMFILE" });
    }) as unknown as typeof fsWatch;
    const h = harness({ watchFn: fakeWatch });
    mkdirSync(join(h.root, "a"));
    h.watcher.setDirectories(["./", "a/"]);
    assert.equal(h.watcher.unwatched.size, 2);
    assert.equal(h.problems.length, 1);
    assert.match(h.problems[0]!.message, /^Cannot watch 2 directories: too many open files \(EMFILE\)/);
  });

  it("treats an error from a watch as a lost watch and recovers", async () => {
    const watchers: FSWatcher[] = [];
    const spyWatch = ((path: string, options: object) => {
      const watcher = fsWatch(path, options);
      watchers.push(watcher);
      return watcher;
    }) as unknown as typeof fsWatch;
    const h = harness({ watchFn: spyWatch });
    h.watcher.setDirectories(["./"]);
    watchers[0]!.emit("error", Object.assign(new Error("boom"), { code: "EIO" }));
    // The directory still exists: a fresh watch replaces the failed one.
    await waitEvent(h, "./", "updated");
    assert.equal(watchers.length, 2);
    assert.equal(h.watcher.unwatched.size, 0);
    writeFileSync(join(h.root, "after"), "1");
    await waitEvent(h, "after", "updated");
  });

  it("rejects paths without a trailing slash and does nothing after close", () => {
    const h = harness();
    assert.throws(() => h.watcher.setDirectories(["a"]), /trailing/);
    h.watcher.close();
    h.watcher.setDirectories(["./"]);
    assert.equal(h.watcher.unwatched.size, 0);
  });
});
