// Content hashes of files with the stat shortcut: a file whose mode, size, mtime and inode are
// unchanged since it was last hashed is not read again. This is what makes a no-op run cheap.
import { blake3, Blake3Hasher } from "@napi-rs/blake-hash";
import { closeSync, openSync, readSync, statSync, type Stats } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { DIR_DIGEST, type FileHash } from "./types.js";

/** Files up to this size are read in one go; larger ones are streamed through the hasher. */
const ONE_SHOT_LIMIT = 8 * 1024 * 1024;
/** Read size when streaming a file through the hasher. */
const STREAM_CHUNK = 1024 * 1024;

export type HashOutcome =
  | { kind: "missing" }
  /** The path exists but is of the wrong kind (file named with "/", or directory without it). */
  | { kind: "wrong-type"; message: string }
  | { kind: "ok"; hash: FileHash };

/**
 * Hash `absPath` (a file, or a directory when `isDir`), reusing `known` when the stat shortcut
 * holds. Symlinks are followed, like every tool that reads the file would.
 */
export function hashPath(absPath: string, isDir: boolean, known: FileHash | null | undefined): HashOutcome {
  return hashPathUpTo(absPath, isDir, known, Infinity) as HashOutcome;
}

/** stat() of `absPath` (a trailing slash allowed), following symlinks; undefined when it does not exist. */
export function statPath(absPath: string): Stats | undefined {
  try {
    return statSync(absPath.endsWith("/") && absPath.length > 1 ? absPath.slice(0, -1) : absPath, {
      throwIfNoEntry: false,
    });
  } catch {
    // ENOTDIR and friends: a parent is not a directory, so the path does not exist.
    return undefined;
  }
}

/** A file that has to be read and is larger than the caller is willing to hash synchronously. */
export interface LargeFile {
  kind: "large";
  absPath: string;
  st: Stats;
}

/**
 * hashPath(), except that a file of more than `syncLimit` bytes that has to be read is not read
 * here but returned as a LargeFile, for hashLargeFile(). The director runs the steps' hashing on
 * its own thread: a multi-gigabyte output must not stall the event loop for seconds.
 */
export function hashPathUpTo(
  absPath: string,
  isDir: boolean,
  known: FileHash | null | undefined,
  syncLimit: number,
): HashOutcome | LargeFile {
  const st = statPath(absPath);
  if (st === undefined) return { kind: "missing" };
  if (st.isDirectory()) {
    if (!isDir) return { kind: "wrong-type", message: "Directory without trailing slash" };
    return { kind: "ok", hash: { digest: DIR_DIGEST, mode: 0, size: 0, mtimeMs: 0, ino: 0 } };
  }
  if (isDir) return { kind: "wrong-type", message: "Path is not a directory" };
  if (known && sameStat(known, st)) return { kind: "ok", hash: known };
  if (st.size > syncLimit) return { kind: "large", absPath, st };
  const digest = hashContents(absPath, st.size);
  if (digest === undefined) return { kind: "missing" };
  return hashedOutcome(st, digest);
}

/**
 * The stat values read before hashing, with the digest. Not a second stat after reading: if
 * the file changes while it is read, in a way stat() can see, then its stat no longer matches
 * the values stored here, so the next check (of this run or a later one) reads it again. A
 * stat after reading would only repeat that check early. (A change stat() cannot see, within
 * one tick of the file system's clock and at the same size, escapes both.) Dropping it saved
 * two stat() calls per executed step.
 */
function hashedOutcome(st: Stats, digest: Uint8Array): HashOutcome {
  return {
    kind: "ok",
    hash: { digest, mode: st.mode, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino },
  };
}

/**
 * Hash a LargeFile without blocking: chunks are read on libuv's thread pool and fed to the hasher
 * between other events, so each turn of the event loop spends well under a millisecond on it.
 */
export async function hashLargeFile(file: LargeFile): Promise<HashOutcome> {
  let handle: FileHandle;
  try {
    handle = await open(file.absPath, "r");
  } catch {
    return { kind: "missing" };
  }
  try {
    const hasher = new Blake3Hasher();
    const buf = Buffer.allocUnsafe(STREAM_CHUNK);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      hasher.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    return hashedOutcome(file.st, new Uint8Array(hasher.digestBuffer()));
  } catch {
    // Removed or unreadable while we read it: as if it were not there.
    return { kind: "missing" };
  } finally {
    await handle.close().catch(() => {});
  }
}

export function sameStat(known: FileHash, st: Stats): boolean {
  return (
    known.mtimeMs === st.mtimeMs && known.size === st.size && known.ino === st.ino && known.mode === st.mode
  );
}

function hashContents(absPath: string, size: number): Uint8Array | undefined {
  let fd: number;
  try {
    fd = openSync(absPath, "r");
  } catch {
    return undefined;
  }
  try {
    if (size <= ONE_SHOT_LIMIT) {
      // One read asks for a byte more than the stat said. Exactly `size` bytes means the file
      // still has that size: a regular file reads short only at its end. Anything else (it grew
      // or shrank since the stat, or a file system that reads short) is hashed by streaming it
      // to its end. (A change meanwhile makes the stored stat values stale: see hashedOutcome.)
      const buf = Buffer.allocUnsafe(size + 1);
      if (readSync(fd, buf, 0, size + 1, 0) !== size) return hashStreaming(fd);
      return new Uint8Array(blake3(buf.subarray(0, size)));
    }
    return hashStreaming(fd);
  } finally {
    closeSync(fd);
  }
}

function hashStreaming(fd: number): Uint8Array {
  const hasher = new Blake3Hasher();
  const buf = Buffer.allocUnsafe(STREAM_CHUNK);
  let pos = 0;
  for (;;) {
    const n = readSync(fd, buf, 0, buf.length, pos);
    if (n === 0) break;
    hasher.update(buf.subarray(0, n));
    pos += n;
  }
  return new Uint8Array(hasher.digestBuffer());
}

/** True when two hashes describe the same content and permissions (mtime and inode ignored). */
export function sameContent(a: FileHash, b: FileHash): boolean {
  return a.mode === b.mode && a.size === b.size && equalBytes(a.digest, b.digest);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
