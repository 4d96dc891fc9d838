// Starts the CLI from one bundled file (dist/cli/bundle.cjs, made by scripts/bundle.ts) through
// a V8 code cache. Node 20 has no compile cache of its own (module.enableCompileCache came in
// 22.1), and a no-op run of a 5000-step workflow spent about 110 ms of its 0.6 s loading
// modules: resolving some sixty ES modules and compiling them. One script compiled from cached
// bytecode takes a few milliseconds instead (performance.md, session 9).
//
// The cache is a file next to the bundle. V8 rejects cached data made by another V8 version or
// with other flags, but it recognises the source only by its length, so the file starts with a
// header holding the bundle's length and CRC-32: a rebuilt bundle never runs stale bytecode.
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { pathToFileURL } from "node:url";
import { Script } from "node:vm";
import { crc32 } from "node:zlib";
import { provideEsmImport } from "./esm-import.js";

const MAGIC = "tsupV8c1";
const HEADER_BYTES = 16;

/** The name of the bundle's stand-in for `import.meta.url` (scripts/bundle.ts defines it). */
export const BUNDLE_URL_NAME = "__tsupBundleUrl";

/** The cache header for a bundle: magic, then the source's byte length and CRC-32. */
export function cacheHeader(source: Buffer): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(MAGIC, 0, "latin1");
  header.writeUInt32LE(source.length, 8);
  header.writeUInt32LE(crc32(source), 12);
  return header;
}

/** The V8 data in `file` when it was made for `source`, else undefined. */
export function cachedDataFor(file: Buffer | undefined, source: Buffer): Buffer | undefined {
  if (file === undefined || file.length <= HEADER_BYTES) return undefined;
  if (!file.subarray(0, HEADER_BYTES).equals(cacheHeader(source))) return undefined;
  return file.subarray(HEADER_BYTES);
}

export interface Launched {
  /** Whether V8 took the cached code (false: none, stale, or rejected). */
  cacheUsed: boolean;
}

/**
 * Compile and run the CommonJS bundle at `bundlePath` as Node would run it, taking compiled code
 * from `cachePath`. When the cache was not used, a new one is written when the process exits: by
 * then V8 has compiled the functions this run needed, and the cache holds them too.
 */
export function launchBundle(bundlePath: string, cachePath: string): Launched {
  const source = readFileSync(bundlePath);
  let file: Buffer | undefined;
  try {
    file = readFileSync(cachePath);
  } catch {
    file = undefined; // No cache yet: made at exit.
  }
  const cachedData = cachedDataFor(file, source);
  // Node's own CommonJS wrapper, plus the import.meta.url stand-in. On one line with the source,
  // so line numbers in the bundle stay as they are.
  const wrapped = `(function (exports, require, module, __filename, __dirname, ${BUNDLE_URL_NAME}) {${source.toString("utf8")}\n})`;
  const script = new Script(wrapped, {
    filename: bundlePath,
    cachedData,
  });
  provideEsmImport((url) => import(url));
  const cacheUsed = cachedData !== undefined && !script.cachedDataRejected;
  if (!cacheUsed) process.once("exit", () => writeCache(script, source, cachePath));
  const run = script.runInThisContext() as (...args: unknown[]) => void;
  const module = { exports: {} };
  run(module.exports, createRequire(bundlePath), module, bundlePath, dirname(bundlePath), pathToFileURL(bundlePath).href);
  return { cacheUsed };
}

/**
 * Write the code cache through a temporary file and a rename, so that concurrent runs never read
 * half a file. An install directory that is not writable only means no cache: never an error.
 */
function writeCache(script: Script, source: Buffer, cachePath: string): void {
  const temp = `${cachePath}.${process.pid}.tmp`;
  try {
    writeFileSync(temp, Buffer.concat([cacheHeader(source), script.createCachedData()]));
    renameSync(temp, cachePath);
  } catch {
    try {
      unlinkSync(temp);
    } catch {
      // Never created.
    }
  }
}
