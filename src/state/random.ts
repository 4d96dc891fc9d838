// Random ids and file-name suffixes without loading node:crypto when nothing needs it: a no-op
// run saves nothing, and loading that module (webcrypto included) cost about 5 ms of each start.
import { createRequire } from "node:module";

let crypto: typeof import("node:crypto") | undefined;

/** `bytes` random bytes from the system's CSPRNG, as lowercase hex. */
export function randomHex(bytes: number): string {
  crypto ??= createRequire(import.meta.url)("node:crypto") as typeof import("node:crypto");
  return crypto.randomBytes(bytes).toString("hex");
}

/**
 * A suffix for a temporary file name next to a shared one: the pid tells processes apart, the
 * rest tells apart the files of one process and of an earlier process that had the same pid.
 * Not secret, so no CSPRNG is needed (the files are created with O_EXCL or renamed over).
 */
export function tempSuffix(): string {
  return `${process.pid}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
}
