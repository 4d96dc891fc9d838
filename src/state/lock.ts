// One tsup per project folder: two directors writing the same `.stepup/workflow.mpk.xz` and the
// same outputs would corrupt both. The lock is a file holding "PID\nHOSTNAME\n"; a lock whose
// process is gone (crash, kill -9, reboot) is stale and taken over, so no manual cleanup is ever
// needed after a crash on this host.
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { tempSuffix } from "./random.js";

export const LOCK_FILE = "lock";

export type LockResult =
  | { ok: true; release(): void }
  /** `pid` is the other owner, or 0 when the lock could not be created for another reason. */
  | { ok: false; pid: number; message: string };

/** Lock files held by this process: our own PID in a lock file is only alive if it is listed here. */
const held = new Set<string>();

interface Owner {
  pid: number;
  host: string;
}

function parseOwner(text: string): Owner | undefined {
  const m = /^(\d+)\n([^\n]*)\n$/.exec(text);
  if (!m) return undefined;
  const pid = Number(m[1]);
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  return { pid, host: m[2]! };
}

/** Whether a process with this id exists (EPERM: it does, but belongs to another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to another user.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone, or not ours to remove: either way nothing more to do.
  }
}

/**
 * Create `path` with `content` only if it does not exist. The content is written to a private
 * file first and published with link(), which fails if the name exists (like O_EXCL) but makes
 * the lock visible only once complete: with open(O_EXCL) + write, a second tsup could read the
 * empty file in between, judge it garbage and take it over. File systems without hard links
 * fall back to O_EXCL.
 */
function createExclusive(path: string, content: string): "created" | "exists" {
  const tmp = `${path}.new-${tempSuffix()}`;
  const fd = openSync(tmp, "wx");
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
    return "created";
  } catch (e) {
    if (errnoOf(e) === "EEXIST") return "exists";
    if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EMLINK"].includes(errnoOf(e) ?? "")) throw e;
  } finally {
    removeQuietly(tmp);
  }
  let fd2: number;
  try {
    fd2 = openSync(path, "wx");
  } catch (e) {
    if (errnoOf(e) === "EEXIST") return "exists";
    throw e;
  }
  try {
    writeSync(fd2, content);
  } finally {
    closeSync(fd2);
  }
  return "created";
}

/**
 * Remove a stale lock whose content we read as `seen`. Renaming it aside first is atomic, so of
 * two processes taking over the same stale lock only one moves it; if what we moved is not what
 * we judged (someone replaced it with a fresh lock meanwhile), it is put back.
 */
function removeStale(path: string, seen: string): void {
  const aside = `${path}.stale-${tempSuffix()}`;
  try {
    renameSync(path, aside);
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return;
    throw e;
  }
  if (readText(aside) !== seen) {
    try {
      linkSync(aside, path);
    } catch {
      // A newer lock already took its place; the next round judges that one.
    }
  }
  removeQuietly(aside);
}

/**
 * Take the single-instance lock of the folder whose `.stepup` directory is `stepupDir`.
 * Never throws: any failure (another live tsup, an unwritable folder) is a refusal with a message.
 */
export function acquireLock(stepupDir: string): LockResult {
  const path = join(stepupDir, LOCK_FILE);
  const host = hostname();
  const content = `${process.pid}\n${host}\n`;
  try {
    mkdirSync(stepupDir, { recursive: true });
    // A few rounds: each lost race (a lock appearing or vanishing between our steps) costs one.
    for (let round = 0; round < 5; round++) {
      if (createExclusive(path, content) === "created") {
        held.add(path);
        return { ok: true, release: releaser(path, content) };
      }
      const seen = readText(path);
      if (seen === undefined) continue; // vanished between create and read: try again
      const owner = parseOwner(seen);
      if (owner !== undefined) {
        if (owner.host !== host) {
          // Probably a shared file system: we cannot see that process, so we must not assume it died.
          return {
            ok: false,
            pid: owner.pid,
            message: `another tsup (pid ${owner.pid} on host ${owner.host}) may be running in this folder; if it is not, delete ${path}`,
          };
        }
        if (owner.pid === process.pid && held.has(path)) {
          return { ok: false, pid: owner.pid, message: `this tsup process (pid ${owner.pid}) already holds the lock of this folder` };
        }
        // Our own PID without a record in `held` is a previous process that had the same PID
        // (common in containers, where tsup often gets the same small PID every time).
        if (owner.pid !== process.pid && isAlive(owner.pid)) {
          return { ok: false, pid: owner.pid, message: `another tsup (pid ${owner.pid}) is already running in this folder` };
        }
      }
      removeStale(path, seen);
    }
    return { ok: false, pid: 0, message: `could not take the lock ${path}: other processes keep changing it` };
  } catch (e) {
    return { ok: false, pid: 0, message: `could not create the lock ${path}: ${message(e)}` };
  }
}

function releaser(path: string, content: string): () => void {
  let released = false;
  return () => {
    if (released) return;
    released = true;
    held.delete(path);
    // Only remove the file if it is still ours: after a takeover it belongs to someone else.
    if (readText(path) === content) removeQuietly(path);
  };
}
