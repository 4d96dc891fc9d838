// Module hooks (they run on Node's loader thread, registered by loader.ts) that let plan.ts and
// TypeScript steps run on Node 20, which cannot strip types itself:
// - `tsup-flow` resolves to the API of the tsup that runs the step (see loader.ts for why);
// - `./x.js` resolves to `./x.ts` when only that exists, and `./x` to `./x.ts`, `./x.mts` or
//   `./x/index.ts`, as TypeScript itself resolves them;
// - `.ts` and `.mts` files are compiled to JavaScript by esbuild, as ES modules, with an inline
//   source map so that stack traces (and the `plan.ts:12:5` of tsup's errors) name the lines of
//   the TypeScript source;
// - every file of the user's that is loaded is noted for the step's fingerprint (sourceLoaded).
//
// Compiled files are kept in a cache folder, keyed by a hash of the source, its path, the nearest
// tsconfig.json and the compiler version. On a hit esbuild is not even loaded: a `.ts` process
// then starts in about the time of a plain `node` (0.13-0.19 s on the 2-core dev box), where tsx,
// used before, took 0.25-0.36 s, and a plan's first step started that much later.
import { createHash } from "node:crypto";
import { appendFileSync, chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { ENV_SOURCES_FILE } from "../workers/protocol.js";
import { COMPILE_ERROR, type HookData } from "./hook-data.js";

export const PACKAGE_NAME = "tsup-flow";

let apiUrl = "";
let cacheDir: string | null = null;
/** See sourceLoaded; unset outside tsup steps. */
const sourcesFile = process.env[ENV_SOURCES_FILE];
/** tsup's own compiled modules (its dist/ folder): never reported as the user's sources. */
let ownDir = "";
const reported = new Set<string>();

export function initialize(data: HookData): void {
  apiUrl = data.apiUrl;
  cacheDir = data.cacheDir;
  // dist/api/index.js -> dist/
  ownDir = dirname(dirname(fileURLToPath(data.apiUrl))) + "/";
}

/**
 * Note that a file of the user's was read to run the step: a module outside node_modules, or a
 * tsconfig.json that applied. The path is appended to the lane's $TSUP_SOURCES_FILE at once, so it
 * is there whichever way the process ends; when the step is over, the director reads the file and
 * hashes these files into the step's fingerprint, so that editing a module the plan imports makes
 * the plan run again.
 */
function sourceLoaded(path: string): void {
  if (sourcesFile === undefined || reported.has(path) || path.includes("/node_modules/") || path.startsWith(ownDir)) return;
  reported.add(path);
  try {
    appendFileSync(sourcesFile, `${path}\n`);
  } catch {
    // Without it the step only has a smaller fingerprint; its work is not affected.
  }
}

type Resolved = { url: string; shortCircuit?: boolean; format?: string | null };
type ResolveContext = { parentURL?: string };
type NextResolve = (specifier: string, context: ResolveContext) => Promise<Resolved>;
type Loaded = { format: string; source?: string | ArrayBuffer | Uint8Array | null; shortCircuit?: boolean };
type NextLoad = (url: string, context: unknown) => Promise<Loaded>;

/** Files compiled here: TypeScript ES modules. */
const TS_MODULE = /\.m?ts$/;

export async function resolve(specifier: string, context: ResolveContext, nextResolve: NextResolve): Promise<Resolved> {
  if (specifier === PACKAGE_NAME) return { url: apiUrl, shortCircuit: true, format: "module" };
  let resolved: Resolved;
  try {
    resolved = await nextResolve(specifier, context);
  } catch (err) {
    const alternative = typeScriptAlternative(specifier, context.parentURL);
    if (alternative === null) throw err;
    resolved = { url: alternative };
  }
  // A plan folder often has no package.json, and then Node would take plan.ts for CommonJS,
  // where `import` and top-level await fail. TypeScript files are compiled as ES modules.
  if (resolved.url.startsWith("file:") && TS_MODULE.test(new URL(resolved.url).pathname)) {
    return { ...resolved, format: "module", shortCircuit: true };
  }
  return resolved;
}

/** For a relative or absolute specifier Node could not find: the TypeScript file meant, if any. */
function typeScriptAlternative(specifier: string, parentURL: string | undefined): string | null {
  if (parentURL === undefined || !/^(\.{1,2}\/|\/|file:)/.test(specifier)) return null;
  let base: URL;
  try {
    base = new URL(specifier, parentURL);
  } catch {
    return null;
  }
  if (base.protocol !== "file:") return null;
  const path = base.pathname;
  const candidates = /\.m?js$/.test(path)
    ? [path.replace(/js$/, "ts")]
    : /\.[A-Za-z0-9]+$/.test(path.slice(path.lastIndexOf("/")))
      ? []
      : [`${path}.ts`, `${path}.mts`, `${path.replace(/\/$/, "")}/index.ts`];
  for (const candidate of candidates) {
    const url = new URL(base.href);
    url.pathname = candidate;
    if (isFile(fileURLToPath(url))) return url.href;
  }
  return null;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export async function load(url: string, context: unknown, nextLoad: NextLoad): Promise<Loaded> {
  if (!url.startsWith("file:")) return nextLoad(url, context);
  const path = fileURLToPath(url);
  sourceLoaded(path);
  if (path.endsWith(".cts")) {
    throw compileError(`${shown(path)}: error: tsup runs TypeScript files as ES modules; rename this CommonJS file to .ts`);
  }
  if (!TS_MODULE.test(path)) return nextLoad(url, context);
  return { format: "module", source: compiled(path, readFileSync(path, "utf8")), shortCircuit: true };
}

/** Bumped when the compile options below change: older cache entries are then not used. */
const OPTIONS_VERSION = "1";

/** The source as JavaScript, from the cache or compiled now (and then cached). */
function compiled(path: string, source: string): string {
  const tsconfigFile = nearestTsconfig(dirname(path));
  const tsconfig = tsconfigFile?.text ?? null;
  if (tsconfigFile !== null) sourceLoaded(tsconfigFile.path);
  const key = createHash("sha256")
    .update(`${OPTIONS_VERSION}\0${compilerVersion()}\0${process.versions.node}\0${path}\0`)
    .update(tsconfig ?? "")
    .update("\0")
    .update(source)
    .digest("base64url")
    .slice(0, 32);
  const dir = trustedCacheDir();
  const cached = dir === null ? null : join(dir, `${key}.mjs`);
  if (cached !== null) {
    try {
      return readFileSync(cached, "utf8");
    } catch {
      // Not cached yet.
    }
  }
  let code: string;
  try {
    code = compiler().transformSync(source, {
      loader: "ts",
      format: "esm",
      target: `node${process.versions.node}`,
      sourcemap: "inline",
      sourcefile: path,
      ...(tsconfig === null ? {} : { tsconfigRaw: tsconfig }),
    }).code;
  } catch (err) {
    throw compileError(compileErrors(err, path, tsconfigFile?.path ?? null));
  }
  if (cached !== null) store(cached, code);
  return code;
}

let cacheChecked = false;

/**
 * The cache folder, once it is known to be safe to run code from: a directory of this user's
 * that nobody else may write to (what is in it runs as the user's code). tsup creates it with
 * mode 0700 and tightens a looser one of its own. Otherwise (someone else's, or it cannot be
 * created) there is no cache: every file is compiled, which only costs speed.
 */
function trustedCacheDir(): string | null {
  if (cacheChecked) return cacheDir;
  cacheChecked = true;
  if (cacheDir === null) return null;
  try {
    mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
    const st = statSync(cacheDir);
    const uid = process.getuid?.();
    if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) cacheDir = null;
    else if ((st.mode & 0o022) !== 0) chmodSync(cacheDir, 0o700);
  } catch {
    cacheDir = null;
  }
  return cacheDir;
}

/** Write a cache entry atomically; a cache that cannot be written only costs speed. */
function store(file: string, code: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, code);
    renameSync(tmp, file);
  } catch {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // No folder, so no file either.
    }
    return;
  }
  pruneNowAndThen(dirname(file));
}

/** Entries nobody used for this long are deleted (every edit of a plan leaves one behind). */
const UNUSED_MS = 30 * 24 * 3600 * 1000;
/** How often a folder is looked through for such entries, at most. */
const PRUNE_EVERY_MS = 24 * 3600 * 1000;
const PRUNE_MARKER = "pruned";

/**
 * Delete cache entries unused for UNUSED_MS, at most once per PRUNE_EVERY_MS and only after a
 * cache miss, so that a hit never pays for it. The marker's mtime says when the last pruning
 * began; it is set first, so that steps compiling at the same moment do not all prune. Use is
 * judged by atime, which Linux (relatime) updates at least daily for files that are read.
 */
function pruneNowAndThen(dir: string): void {
  const marker = join(dir, PRUNE_MARKER);
  const now = Date.now();
  try {
    if (now - statSync(marker).mtimeMs < PRUNE_EVERY_MS) return;
  } catch {
    // No marker yet: prune.
  }
  try {
    writeFileSync(marker, "");
    for (const name of readdirSync(dir)) {
      if (!name.endsWith(".mjs")) continue;
      const entry = join(dir, name);
      const st = statSync(entry);
      if (now - Math.max(st.atimeMs, st.mtimeMs) > UNUSED_MS) rmSync(entry, { force: true });
    }
  } catch {
    // Pruning is housekeeping: whatever went wrong, the next one may do better.
  }
}

/**
 * An error for the user's source, not for tsup: it travels to the main thread and loader.ts
 * prints its message alone, rather than a stack of esbuild's and Node's internals.
 */
function compileError(message: string): Error {
  const err = new Error(message) as Error & { code: string };
  err.code = COMPILE_ERROR;
  err.stack = message;
  return err;
}

interface EsbuildMessage {
  text: string;
  location: { file: string; line: number; column: number; lineText: string } | null;
}

/**
 * `plan.ts:2:18: error: Unexpected ";"` with the line and a caret, for each error esbuild found
 * (in the source, or in the tsconfig.json that applies to it).
 */
function compileErrors(err: unknown, path: string, tsconfigPath: string | null): string {
  const errors = (err as { errors?: EsbuildMessage[] }).errors;
  if (!Array.isArray(errors) || errors.length === 0) {
    return `${shown(path)}: error: could not compile: ${err instanceof Error ? err.message : String(err)}`;
  }
  const lines: string[] = [];
  for (const e of errors) {
    const loc = e.location;
    if (loc === null) {
      lines.push(`${shown(path)}: error: ${e.text}`);
      continue;
    }
    const file = loc.file === "<tsconfig.json>" && tsconfigPath !== null ? tsconfigPath : path;
    lines.push(`${shown(file)}:${loc.line}:${loc.column + 1}: error: ${e.text}`, `    ${loc.lineText}`, `    ${" ".repeat(loc.column)}^`);
  }
  return lines.join("\n");
}

/** A path as the user would name it: relative to the working directory when below it. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel.startsWith("..") ? path : rel;
}

interface TsconfigFile {
  path: string;
  text: string;
}

/** The tsconfig.json nearest above `dir` with its contents, or null; per folder, read once. */
const tsconfigs = new Map<string, TsconfigFile | null>();

function nearestTsconfig(start: string): TsconfigFile | null {
  const visited: string[] = [];
  let found: TsconfigFile | null | undefined;
  for (let dir = start; found === undefined; ) {
    found = tsconfigs.get(dir);
    if (found !== undefined) break;
    visited.push(dir);
    const path = join(dir, "tsconfig.json");
    try {
      found = { path, text: readFileSync(path, "utf8") };
    } catch {
      const parent = dirname(dir);
      if (parent === dir) found = null;
      dir = parent;
    }
  }
  for (const dir of visited) tsconfigs.set(dir, found);
  return found;
}

// esbuild is loaded only to compile, i.e. on a cache miss: it costs more to load than to use.
interface Esbuild {
  version: string;
  transformSync(source: string, options: Record<string, unknown>): { code: string };
}

const require = createRequire(import.meta.url);
let esbuild: Esbuild | null = null;
let esbuildVersion: string | null = null;

function compiler(): Esbuild {
  esbuild ??= require("esbuild") as Esbuild;
  return esbuild;
}

/** esbuild's version, from its package.json (cheaper than loading it). */
function compilerVersion(): string {
  if (esbuildVersion === null) {
    try {
      esbuildVersion = String((JSON.parse(readFileSync(require.resolve("esbuild/package.json"), "utf8")) as { version: unknown }).version);
    } catch {
      esbuildVersion = compiler().version;
    }
  }
  return esbuildVersion;
}
