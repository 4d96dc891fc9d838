// The plan API: what `plan.ts` (and any TypeScript step) imports from "tsup-flow".
//
// Every function checks its arguments right away and throws a PlanError naming the caller's line
// (`plan.ts:12:5`) for mistakes it can see alone. Declarations then go to the director in batches;
// when the director rejects one (a duplicate output, a cycle, an unknown pool), the error is
// printed with the line of the call that made it, and the plan step fails when it exits.
//
// Paths: relative paths are relative to the step's workdir, which is relative to the directory
// of the calling plan. `${VAR}` and `$VAR` in paths are taken from the environment and make the
// calling step depend on VAR. A trailing "/" means "directory".
import { statSync } from "node:fs";
import { describeStep } from "../events.js";
import { globMulti, globPaths, type GlobResult, type NamedWildcards } from "../glob/multi.js";
import { isAbsPath, isDirPath, joinWorkdir, normPath, relativeTo } from "../paths.js";
import { DirectorClient } from "../rpc/client.js";
import { ENV_HERE, ENV_ROOT, ENV_SOCKET, ENV_STEP_KEY, type Declaration } from "../rpc/protocol.js";
import { captureSite, formatSite, PlanError, type CallSite } from "./callsite.js";

export { PlanError } from "./callsite.js";
export type { GlobMatch, GlobResult } from "../glob/multi.js";

/** A path or a list of paths. */
export type Paths = string | readonly string[];

export interface StepOptions {
  /** Files (or "dir/") the step reads; it starts only once they all exist. */
  inp?: Paths;
  /** Files (or "dir/") the step creates; they must exist when it succeeds. */
  out?: Paths;
  /** Files the step creates that tsup cleans but never hashes (logs, caches). */
  vol?: Paths;
  /** Environment variables whose values are part of the step's fingerprint. */
  env?: Paths;
  /** Directory the command runs in, relative to the calling plan's directory. Default ".". */
  workdir?: string;
  /** Run only when some other needed step uses one of its outputs. */
  optional?: boolean;
  /** Never run (for now); steps that need its outputs wait as well. */
  block?: boolean;
  /** Name of a pool (see `pool()`) limiting how many such steps run at once. */
  pool?: string;
}

/** What `step()` returns: the step's key and its paths, relative to the calling plan's directory. */
export interface StepInfo {
  readonly key: string;
  readonly command: string;
  readonly workdir: string;
  readonly inp: readonly string[];
  readonly out: readonly string[];
  readonly vol: readonly string[];
  readonly env: readonly string[];
}

export interface GlobOptions {
  /** Glob fragments replacing the default of named wildcards, e.g. `{ n: "[0-9]" }`. */
  subs?: Record<string, string>;
  /** Throw when nothing matches. */
  required?: boolean;
  /**
   * Match nothing now: a file matching the patterns becomes static only when a step uses it as
   * an input (and exists). For large trees of data of which a plan uses a few files. A plan
   * with only deferred globs is still skipped on the next run.
   */
  defer?: boolean;
}

// ------------------------------------------------------------------------------------------
// Connection

const root = process.env[ENV_ROOT] ?? process.cwd();
const hereEnv = process.env[ENV_HERE];
/** The calling step's directory, root-relative with a trailing slash. */
const here = hereEnv === undefined || hereEnv === "." || hereEnv === "" ? "./" : normPath(`${hereEnv}/`);
const sites = new Map<number, CallSite>();
let client: DirectorClient | null = null;
let closed = false;

function report(site: CallSite | undefined, message: string): void {
  const where = site ? formatSite(site, root) : "plan";
  process.stderr.write(`${where}: error: ${message}\n`);
  process.exitCode = 1;
}

const socketPath = process.env[ENV_SOCKET];
if (socketPath) {
  try {
    client = await DirectorClient.connect(
      socketPath,
      process.env[ENV_STEP_KEY] ?? null,
      (rejection) => report(sites.get(rejection.declarationId), rejection.message),
      (firstId, count) => {
        for (let id = firstId; id < firstId + count; id++) sites.delete(id);
      },
    );
  } catch (err) {
    process.stderr.write(`tsup: ${(err as Error).message}\n`);
    process.exit(1);
  }
  process.on("beforeExit", () => {
    if (closed || !client) return;
    void client.settle().then(() => {
      closed = true;
      client?.close();
    });
  });
}

// A PlanError is our message about the user's call: print it like a compiler would, not as a
// stack trace through tsup's internals. Anything else is the plan's own error: show its stack.
process.on("uncaughtException", (err: unknown) => {
  if (err instanceof PlanError) report(err.site, err.message);
  else {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
});
process.on("unhandledRejection", (err: unknown) => {
  if (err instanceof PlanError) report(err.site, err.message);
  else {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
});

function send(item: Declaration, site: CallSite): void {
  if (!client) {
    // Not started by tsup (e.g. `npx tsx plan.ts`): show what would be declared.
    process.stdout.write(`tsup (not connected): ${JSON.stringify(item)}\n`);
    return;
  }
  const id = client.declare(item);
  sites.set(id, site);
}

// ------------------------------------------------------------------------------------------
// Argument helpers

function toList(value: Paths | undefined, what: string, site: CallSite): string[] {
  if (value === undefined) return [];
  const list = typeof value === "string" ? [value] : value;
  if (!Array.isArray(list)) throw new PlanError(`${what} must be a string or an array of strings`, site);
  for (const item of list) {
    if (typeof item !== "string" || item === "") {
      throw new PlanError(`${what} must contain non-empty strings, got ${JSON.stringify(item)}`, site);
    }
    if (item.includes("\0")) throw new PlanError(`${what}: a path cannot contain a NUL character: ${JSON.stringify(item)}`, site);
  }
  return list as string[];
}

const ENV_REF = /\$\{(\*?)([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g;

/** Substitute `${VAR}`/`$VAR` from the environment; named wildcards `${*name}` stay. */
function substitute(path: string, used: Set<string>, site: CallSite): string {
  return path.replace(ENV_REF, (whole, star: string, braced: string | undefined, bare: string | undefined) => {
    if (star) return whole;
    const name = (braced ?? bare)!;
    const value = process.env[name];
    if (value === undefined) {
      throw new PlanError(`undefined environment variable ${name} in path ${JSON.stringify(path)}`, site);
    }
    used.add(name);
    return value;
  });
}

function dependOnEnv(used: Set<string>, site: CallSite): void {
  if (used.size > 0) send({ k: "env", names: [...used].sort() }, site);
}

function asDir(path: string): string {
  return path.endsWith("/") ? path : `${path}/`;
}

/** Quote a path for the shell only when it needs it, so commands stay readable. */
function shellQuote(path: string): string {
  return /^[A-Za-z0-9_\-.,/=:+@%]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}

function checkOptions(opts: object, allowed: readonly string[], fn: string, site: CallSite): void {
  for (const key of Object.keys(opts)) {
    if (!allowed.includes(key)) {
      throw new PlanError(`${fn}() has no option "${key}" (options: ${allowed.join(", ")})`, site);
    }
  }
}

function checkExists(path: string, site: CallSite, what = "static path"): void {
  const abs = isAbsPath(path) ? path : `${root}/${path}`;
  let st;
  try {
    st = statSync(abs, { throwIfNoEntry: false });
  } catch {
    st = undefined;
  }
  if (!st) throw new PlanError(`${what} does not exist: ${path}`, site);
  if (st.isDirectory() && !isDirPath(path)) {
    throw new PlanError(`${path} is a directory: write it with a trailing slash ("${path}/")`, site);
  }
  if (!st.isDirectory() && isDirPath(path)) throw new PlanError(`${path} is not a directory`, site);
}

function declareStaticAt(paths: string[], site: CallSite): void {
  const used = new Set<string>();
  const translated = paths.map((p) => joinWorkdir(here, normPath(substitute(p, used, site))));
  for (const p of translated) checkExists(p, site);
  dependOnEnv(used, site);
  if (translated.length > 0) send({ k: "static", paths: [...new Set(translated)].sort() }, site);
}

// ------------------------------------------------------------------------------------------
// The API

/**
 * Declare files or directories (with a trailing "/") written by people, not by steps. They must
 * exist. Their parent directories are declared static too.
 */
export function declareStatic(...paths: Array<string | readonly string[]>): void {
  const site = captureSite(declareStatic);
  declareStaticAt(toList(paths.flat(), "declareStatic()", site), site);
}

/**
 * Find files matching patterns and declare them static. Wildcards: `*`, `?`, `[abc]`, `**` and
 * named ones, `${*name}`, which must take the same value in every pattern of the call:
 * `glob("data/${*n}.csv", "plots/${*n}.png")` pairs files by name. The result is empty (see
 * `isEmpty()`) when nothing consistent matches, so it can be used as a condition. When tsup runs
 * again, a plan that called glob() is skipped only if the patterns still match the same files.
 */
export function glob<const P extends readonly string[]>(
  ...args: [...patterns: P] | [...patterns: P, options: GlobOptions]
): GlobResult<NamedWildcards<P[number]>> {
  const site = captureSite(glob);
  const last = args[args.length - 1];
  const options: GlobOptions = typeof last === "object" && last !== null ? (last as GlobOptions) : {};
  checkOptions(options, ["subs", "required", "defer"], "glob", site);
  const patterns = (typeof last === "object" ? args.slice(0, -1) : args) as string[];
  if (patterns.length === 0) throw new PlanError("glob() needs at least one pattern", site);
  const used = new Set<string>();
  const translated = toList(patterns, "glob() patterns", site).map((p) => substitute(p, used, site));
  if (options.defer) {
    if (options.required) throw new PlanError("glob(): defer and required cannot be combined", site);
    if (options.subs) throw new PlanError("glob(): deferred globs take no subs", site);
    const rootPatterns: string[] = [];
    for (const p of translated) {
      if (isAbsPath(p)) throw new PlanError(`deferred glob patterns cannot be absolute: ${p}`, site);
      if (p.includes("${*")) throw new PlanError(`deferred globs cannot use named wildcards: ${p}`, site);
      rootPatterns.push(joinWorkdir(here, normPath(p)));
    }
    try {
      // Compile here too, so a malformed pattern is reported at this line.
      globPaths(rootPatterns, []);
    } catch (err) {
      throw new PlanError((err as Error).message, site);
    }
    dependOnEnv(used, site);
    send({ k: "glob", patterns: rootPatterns, subs: {}, workdir: "./", matches: [], deferred: true }, site);
    return globPaths(translated, []) as GlobResult<NamedWildcards<P[number]>>;
  }
  let result: GlobResult<NamedWildcards<P[number]>>;
  try {
    result = globMulti(here === "./" ? root : `${root}/${here}`, translated, options.subs) as GlobResult<
      NamedWildcards<P[number]>
    >;
  } catch (err) {
    throw new PlanError((err as Error).message, site);
  }
  if (options.required && result.isEmpty()) {
    throw new PlanError(`no files match ${translated.map((p) => JSON.stringify(p)).join(", ")}`, site);
  }
  dependOnEnv(used, site);
  const matches = result.files().map((p) => joinWorkdir(here, p));
  if (matches.length > 0) send({ k: "static", paths: [...matches].sort() }, site);
  send({ k: "glob", patterns: translated, subs: options.subs ?? {}, workdir: here, matches }, site);
  return result;
}

/**
 * Declare a step: a shell command with the files it reads and writes. `${inp}`, `${out}` and
 * `${vol}` in the command become the (quoted) paths as given. It starts as soon as its inputs
 * exist, even while the plan is still running.
 */
export function step(command: string, options: StepOptions = {}): StepInfo {
  return stepAt(command, options, captureSite(step));
}

function stepAt(command: string, options: StepOptions, site: CallSite): StepInfo {
  if (typeof command !== "string" || command.trim() === "") {
    throw new PlanError("step() needs a non-empty command string", site);
  }
  // A shell cannot be given one (dash drops it without a word, which would run another command).
  if (command.includes("\0")) throw new PlanError("a step's command cannot contain a NUL character", site);
  if (typeof options !== "object" || options === null) throw new PlanError("step() options must be an object", site);
  checkOptions(options, ["inp", "out", "vol", "env", "workdir", "optional", "block", "pool"], "step", site);
  const used = new Set<string>();
  if (options.workdir !== undefined && (typeof options.workdir !== "string" || options.workdir.includes("\0"))) {
    throw new PlanError("workdir must be a string without NUL characters", site);
  }
  const workdirGiven = substitute(options.workdir ?? "./", used, site);
  const workdir = joinWorkdir(here, asDir(normPath(workdirGiven)));
  const given = (value: Paths | undefined, what: string): string[] =>
    toList(value, what, site).map((p) => normPath(substitute(p, used, site)));
  const inpGiven = given(options.inp, "inp");
  const outGiven = given(options.out, "out");
  const volGiven = given(options.vol, "vol");
  const env = toList(options.env, "env", site);
  for (const name of env) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new PlanError(`invalid env var name: ${JSON.stringify(name)}`, site);
  }
  for (const p of volGiven) if (isDirPath(p)) throw new PlanError(`a volatile output cannot be a directory: ${p}`, site);
  if (options.pool !== undefined && (typeof options.pool !== "string" || options.pool === "")) {
    throw new PlanError("pool must be a non-empty string", site);
  }
  const toRoot = (p: string): string => joinWorkdir(workdir, p);
  const inp = [...new Set(inpGiven.map(toRoot))].sort();
  const out = [...new Set(outGiven.map(toRoot))].sort();
  const vol = [...new Set(volGiven.map(toRoot))].sort();
  const lists: Record<string, string[]> = { inp: inpGiven, out: outGiven, vol: volGiven };
  const expanded = command.replace(/\$\{(inp|out|vol)\}/g, (_, name: string) =>
    lists[name]!.map(shellQuote).join(" "),
  );
  dependOnEnv(used, site);
  send(
    {
      k: "step",
      command: expanded,
      workdir,
      inp,
      out,
      vol,
      env: [...new Set(env)].sort(),
      pool: options.pool ?? null,
      optional: options.optional === true,
      block: options.block === true,
    },
    site,
  );
  const fromCaller = (p: string): string => relativeTo(here, p);
  return {
    key: describeStep({ command: expanded, workdir }),
    command: expanded,
    workdir: fromCaller(workdir),
    inp: inp.map(fromCaller),
    out: out.map(fromCaller),
    vol: vol.map(fromCaller),
    env,
  };
}

/** Allow at most `size` steps naming this pool to execute at once. Skipping is never limited. */
export function pool(name: string, size: number): void {
  const site = captureSite(pool);
  if (typeof name !== "string" || name === "") throw new PlanError("pool() needs a non-empty name", site);
  if (typeof size !== "number" || !Number.isInteger(size) || size < 1) {
    throw new PlanError(`pool "${name}" needs an integer size of at least 1, got ${String(size)}`, site);
  }
  send({ k: "pool", name, size }, site);
}

/** Run `subdir/plan.ts` as a plan of its own, in that directory. */
export function plan(subdir: string, options: { block?: boolean } = {}): StepInfo {
  const site = captureSite(plan);
  checkOptions(options, ["block"], "plan", site);
  const dir = asDir(subdir);
  declareStaticAt([`${dir}plan.ts`], site);
  return stepAt("./plan.ts", { workdir: dir, inp: "plan.ts", block: options.block === true }, site);
}

/** Copy a file. A destination ending in "/" means "into that directory, same name". */
export function copy(src: string, dst: string, options: { optional?: boolean; block?: boolean } = {}): StepInfo {
  const site = captureSite(copy);
  checkOptions(options, ["optional", "block"], "copy", site);
  const used = new Set<string>();
  const srcName = normPath(substitute(src, used, site)).split("/").pop();
  const target = isDirPath(dst) ? `${dst}${srcName}` : dst;
  if (normPath(target) === normPath(src)) throw new PlanError("copy(): the destination equals the source", site);
  return stepAt("cp -fp ${inp} ${out}", { inp: src, out: target, ...options }, site);
}

/** Create a directory (its parent must be static or built by another step). */
export function mkdir(dirname: string, options: { optional?: boolean; block?: boolean } = {}): StepInfo {
  const site = captureSite(mkdir);
  checkOptions(options, ["optional", "block"], "mkdir", site);
  const dir = asDir(normPath(dirname));
  // `${out}` rather than the literal name: the path may contain `${VAR}`, which stepAt resolves.
  return stepAt("mkdir -p ${out}", { out: dir, ...options }, site);
}

/**
 * Read an environment variable. The calling step (usually the plan) depends on it: when its
 * value changes, the plan runs again instead of being skipped.
 */
export function getenv(name: string, defaultValue?: string): string | undefined {
  const site = captureSite(getenv);
  if (typeof name !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new PlanError(`invalid env var name: ${JSON.stringify(name)}`, site);
  }
  send({ k: "env", names: [name] }, site);
  return process.env[name] ?? defaultValue;
}

export interface AmendOptions {
  /** More inputs (files, or "dir/"). */
  inp?: Paths;
  /** More outputs. */
  out?: Paths;
  /** More volatile outputs. */
  vol?: Paths;
  /** More env vars the step depends on. */
  env?: Paths;
}

/**
 * Declare more about the running step itself: inputs it turned out to read, outputs it will
 * write, env vars it uses. Paths are relative to the step's workdir. Resolves to `true` when the
 * step may go on; `false` means an input does not exist yet: the step should stop (exit), and tsup
 * runs it again once the inputs exist. What a step amends is part of its fingerprint and is
 * remembered, so the next run waits for those inputs up front and skips the step if nothing
 * changed.
 */
export async function amend(options: AmendOptions): Promise<boolean> {
  const site = captureSite(amend);
  if (typeof options !== "object" || options === null) throw new PlanError("amend() needs an options object", site);
  checkOptions(options, ["inp", "out", "vol", "env"], "amend", site);
  const used = new Set<string>();
  const paths = (value: Paths | undefined, what: string): string[] =>
    toList(value, what, site).map((p) => joinWorkdir(here, normPath(substitute(p, used, site))));
  const inp = paths(options.inp, "inp");
  const out = paths(options.out, "out");
  const vol = paths(options.vol, "vol");
  const env = [...toList(options.env, "env", site), ...used];
  if (inp.length + out.length + vol.length + env.length === 0) return true;
  if (!client) {
    process.stdout.write(`tsup (not connected): ${JSON.stringify({ amend: { inp, out, vol, env } })}\n`);
    return true;
  }
  let answer: { keepGoing: boolean; missing: string[] };
  try {
    answer = (await client.call("amend", { inp, out, vol, env: [...new Set(env)].sort() })) as typeof answer;
  } catch (err) {
    throw new PlanError((err as Error).message, site);
  }
  if (answer.keepGoing) {
    // tsup believes they exist; if one was deleted behind its back, say so here, not later.
    for (const p of inp) checkExists(p, site, "amended input");
  }
  return answer.keepGoing;
}
