import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { acquireLock, LOCK_FILE } from "../../src/state/lock.js";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempStepup(create = true): string {
  const root = mkdtempSync(join(tmpdir(), "tsup-lock-"));
  dirs.push(root);
  const dir = join(root, ".stepup");
  if (create) mkdirSync(dir);
  return dir;
}

/** The PID of a process that has certainly exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", "0"]);
  assert.ok(child.pid);
  return child.pid;
}

function lockFile(dir: string): string {
  return join(dir, LOCK_FILE);
}

describe("acquireLock", () => {
  test("writes PID and host, refuses a second holder, and releases", () => {
    const dir = tempStepup();
    const first = acquireLock(dir);
    assert.equal(first.ok, true);
    assert.equal(readFileSync(lockFile(dir), "utf8"), `${process.pid}\n${hostname()}\n`);
    const second = acquireLock(dir);
    assert.equal(second.ok, false);
    if (!second.ok) {
      assert.equal(second.pid, process.pid);
      assert.match(second.message, /already holds the lock/);
    }
    if (first.ok) first.release();
    assert.equal(existsSync(lockFile(dir)), false);
    const third = acquireLock(dir);
    assert.equal(third.ok, true);
    if (third.ok) third.release();
    assert.deepEqual(readdirSync(dir), [], "no temporary files are left behind");
  });

  test("creates the .stepup folder when it does not exist yet", () => {
    const dir = tempStepup(false);
    const lock = acquireLock(dir);
    assert.equal(lock.ok, true);
    if (lock.ok) lock.release();
  });

  test("refuses while another live process on this host holds it", async () => {
    const dir = tempStepup();
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)"], { stdio: "ignore" });
    try {
      assert.ok(child.pid);
      writeFileSync(lockFile(dir), `${child.pid}\n${hostname()}\n`);
      const lock = acquireLock(dir);
      assert.equal(lock.ok, false);
      if (!lock.ok) {
        assert.equal(lock.pid, child.pid);
        assert.equal(lock.message, `another tsup (pid ${child.pid}) is already running in this folder`);
      }
      assert.equal(readFileSync(lockFile(dir), "utf8"), `${child.pid}\n${hostname()}\n`, "the live lock is untouched");
    } finally {
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  });

  test("takes over a lock whose process is gone", () => {
    const dir = tempStepup();
    writeFileSync(lockFile(dir), `${deadPid()}\n${hostname()}\n`);
    const lock = acquireLock(dir);
    assert.equal(lock.ok, true);
    assert.equal(readFileSync(lockFile(dir), "utf8"), `${process.pid}\n${hostname()}\n`);
    if (lock.ok) lock.release();
    assert.deepEqual(readdirSync(dir), []);
  });

  test("takes over garbage and empty lock files", () => {
    for (const content of ["", "garbage", "12x\nhost\n", "0\nhost\n", "-5\nhost\n"]) {
      const dir = tempStepup();
      writeFileSync(lockFile(dir), content);
      const lock = acquireLock(dir);
      assert.equal(lock.ok, true, `content ${JSON.stringify(content)}`);
      if (lock.ok) lock.release();
    }
  });

  test("our own PID left by an earlier process (containers reuse PIDs) is stale", () => {
    const dir = tempStepup();
    writeFileSync(lockFile(dir), `${process.pid}\n${hostname()}\n`);
    const lock = acquireLock(dir);
    assert.equal(lock.ok, true);
    if (lock.ok) lock.release();
  });

  test("a lock from another host is not judged, only reported", () => {
    const dir = tempStepup();
    writeFileSync(lockFile(dir), `${deadPid()}\nsome-other-host.example\n`);
    const lock = acquireLock(dir);
    assert.equal(lock.ok, false);
    if (!lock.ok) assert.match(lock.message, /on host some-other-host\.example.*delete .*lock/);
  });

  test("release leaves a lock alone that is no longer ours, and can be called twice", () => {
    const dir = tempStepup();
    const lock = acquireLock(dir);
    assert.ok(lock.ok);
    writeFileSync(lockFile(dir), `1\n${hostname()}\n`);
    lock.release();
    lock.release();
    assert.equal(readFileSync(lockFile(dir), "utf8"), `1\n${hostname()}\n`);
  });

  test("reports an unusable folder instead of throwing", () => {
    const root = mkdtempSync(join(tmpdir(), "tsup-lock-"));
    dirs.push(root);
    writeFileSync(join(root, "not-a-dir"), "x");
    const lock = acquireLock(join(root, "not-a-dir", ".stepup"));
    assert.equal(lock.ok, false);
    if (!lock.ok) {
      assert.equal(lock.pid, 0);
      assert.match(lock.message, /could not create the lock/);
    }
  });
});
