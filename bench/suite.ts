// The benchmark suite: tsup against ninja, GNU make and `xargs -P` on the same generated
// workloads with identical shell commands. Not part of the test suite. See docs/performance.md.
//
//   npm run bench                 full run (about 25 minutes), writes docs/performance.md
//   npm run bench -- --quick      smoke run (about 2 minutes), prints the report only
//   npm run bench -- --help       all options
//
// Every option can also be given as an environment variable TSUP_BENCH_<OPTION> (upper case,
// dashes as underscores), e.g. TSUP_BENCH_REPS=5. Flags win over the environment.
//
// The machine this was written for has 2 cores and other jobs running, so: tools run
// interleaved within each repetition (tsup, ninja, make, xargs, tsup, ninja, ...), so that a
// burst of load hits all of them alike; the report shows medians; and the load average before
// and after is recorded.
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, totalmem, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { summarizeProfile } from "./profile.js";
import { median, render, writeDoc, type Group, type Meta, type ProcessCpu, type ProfileResult, type Results, type Sample, type StateIoResult } from "./report.js";
import { benchEnv, BenchCheckError, LEFT_OUT, cleanBuild, runTool, verify, type Phase, type RunOptions, type RunResult } from "./runner.js";
import { editedContent, generate, KINDS, makeWorkload, POOL_STEPS, TOOLS, writeInputs, type Kind, type Tool, type Workload } from "./workloads.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const HELP = `Usage: npm run bench -- [options]

  --quick               smoke run: --sizes 1000 --big none --reps 2 --pool-reps 1,
                        no state-file timing, no profile, report printed only
  --sizes <list>        N for flat/chain/fan with all tools (default 1000,5000)
  --big <list|none>     N run with tsup and ninja only (default 100000)
  --workloads <list>    of flat,chain,fan,pool (default all)
  --big-workloads <l>   workloads at the big N (default flat,chain)
  --tools <list>        of tsup,ninja,make,xargs (default all)
  --reps <k>            repetitions at the small sizes and ... (default 5)
  --pool-reps <k>       ... of the pool workload (default 3)
  --big-reps <k>        ... at the big sizes (default 1)
  --workers <k>         workers / jobs (default 2; the pool workload always uses 4)
  --state-io-reps <k>   fresh-process loadState/saveState timings on the largest flat state (default 3, 0 = off)
  --profile-n <N>       profile an extra cold flat build of this N and its no-op rerun
                        (default 5000, 0 = off)
  --tsup <bin>          the tsup to test (default bin/tsup.js of this repo; it is copied first)
  --dir <folder>        where the workloads are generated (default a new folder in $TMPDIR)
  --out <file|->        the report (default docs/performance.md; - or --quick: print only)
  --keep                keep the generated workloads
  --from <results.json> only render the report from an earlier run's raw samples
`;

interface Options {
  mode: string;
  sizes: number[];
  big: number[];
  workloads: Kind[];
  bigWorkloads: Kind[];
  tools: Tool[];
  reps: number;
  poolReps: number;
  bigReps: number;
  workers: number;
  stateIoReps: number;
  profileN: number;
  tsup: string;
  dir: string | null;
  out: string | null;
  keep: boolean;
}

function parseOptions(argv: string[]): Options {
  const spec = {
    quick: { type: "boolean" },
    sizes: { type: "string" },
    big: { type: "string" },
    workloads: { type: "string" },
    "big-workloads": { type: "string" },
    tools: { type: "string" },
    reps: { type: "string" },
    "pool-reps": { type: "string" },
    "big-reps": { type: "string" },
    workers: { type: "string" },
    "state-io-reps": { type: "string" },
    "profile-n": { type: "string" },
    tsup: { type: "string" },
    dir: { type: "string" },
    out: { type: "string" },
    keep: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  } as const;
  const { values } = parseArgs({ args: argv, options: spec, strict: true });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const v = values as Record<string, string | boolean | undefined>;
  const get = (name: string): string | boolean | undefined => {
    if (v[name] !== undefined) return v[name];
    const env = process.env[`TSUP_BENCH_${name.toUpperCase().replace(/-/g, "_")}`];
    if (env === undefined || env === "") return undefined;
    return spec[name as keyof typeof spec].type === "boolean" ? env !== "0" && env !== "false" : env;
  };
  const quick = get("quick") === true;
  const str = (name: string, full: string, q: string): string => {
    const x = get(name);
    return typeof x === "string" ? x : quick ? q : full;
  };
  const int = (name: string, full: number, q: number): number => {
    const x = Number(str(name, String(full), String(q)));
    if (!Number.isInteger(x) || x < 0) usage(`--${name} must be a whole number, got ${str(name, "", "")}`);
    return x;
  };
  const list = (name: string, full: string, q: string): string[] => {
    const x = str(name, full, q).trim();
    return x === "" || x === "none" ? [] : x.split(",").map((s) => s.trim());
  };
  const sizes = (name: string, full: string, q: string): number[] =>
    list(name, full, q).map((s) => {
      const n = Number(s.replace(/_/g, ""));
      if (!Number.isInteger(n) || n < 1) usage(`--${name}: not a size: ${s}`);
      return n;
    });
  const oneOf = <T extends string>(name: string, all: readonly T[], full: string, q: string): T[] =>
    list(name, full, q).map((s) => {
      if (!all.includes(s as T)) usage(`--${name}: unknown ${s} (one of ${all.join(", ")})`);
      return s as T;
    });
  const out = str("out", "docs/performance.md", "-");
  const dir = get("dir");
  return {
    mode: quick ? "quick" : "full",
    sizes: sizes("sizes", "1000,5000", "1000"),
    big: sizes("big", "100000", "none"),
    workloads: oneOf("workloads", KINDS, KINDS.join(","), KINDS.join(",")),
    bigWorkloads: oneOf("big-workloads", KINDS, "flat,chain", "flat,chain"),
    tools: oneOf("tools", TOOLS, TOOLS.join(","), TOOLS.join(",")),
    reps: Math.max(1, int("reps", 5, 2)),
    poolReps: Math.max(1, int("pool-reps", 3, 1)),
    bigReps: Math.max(1, int("big-reps", 1, 1)),
    workers: Math.max(1, int("workers", 2, 2)),
    stateIoReps: int("state-io-reps", 3, 0),
    profileN: int("profile-n", 5000, 0),
    tsup: resolve(str("tsup", join(REPO, "bin/tsup.js"), join(REPO, "bin/tsup.js"))),
    dir: typeof dir === "string" ? resolve(dir) : null,
    out: out === "-" ? null : resolve(REPO, out),
    keep: get("keep") === true,
  };
}

function usage(msg: string): never {
  process.stderr.write(`bench: ${msg}\n\n${HELP}`);
  process.exit(2);
}

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch {
    return "";
  }
}

/**
 * Copies the tsup under test (bin/, dist/, package.json; node_modules linked) into the work
 * folder. Others may rebuild dist/ while a 25-minute run goes on; the copy keeps one version
 * for the whole session. The plan API resolves relative to the copy, so plans use it too.
 */
function snapshotTsup(bin: string, into: string): string {
  const root = resolve(dirname(bin), "..");
  if (!existsSync(join(root, "dist/cli/bundle.cjs"))) usage(`${root} has no dist/cli/bundle.cjs: run npm run build first`);
  const dest = join(into, "tsup-under-test");
  // A snapshot left by an earlier run kept with --keep: replaced whole, not mixed with this one.
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  for (const p of ["bin", "dist", "package.json"]) cpSync(join(root, p), join(dest, p), { recursive: true });
  symlinkSync(join(root, "node_modules"), join(dest, "node_modules"));
  return join(dest, "bin/tsup.js");
}

function collectMeta(o: Options, root: string): Meta {
  const gitDirty = sh("git", ["-C", root, "status", "--porcelain", "--", "src", "package.json"]);
  const commit = sh("git", ["-C", root, "rev-parse", "--short", "HEAD"]);
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  const df = sh("df", ["-PT", o.dir ?? tmpdir()]).split("\n")[1]?.split(/\s+/) ?? [];
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    mode: o.mode,
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    cpu: cpus()[0]?.model ?? "unknown CPU",
    cores: availableParallelism(),
    memGiB: totalmem() / 2 ** 30,
    os: `${sh("uname", ["-sr"])}`,
    fs: `${o.dir ?? tmpdir()} (${df[1] ?? "?"} on ${df[0] ?? "?"})`,
    loadBefore: loadavg().map((x) => x.toFixed(2)).join(", "),
    loadAfter: "",
    versions: {
      tsup: `${pkg.version}, commit ${commit || "?"}${gitDirty ? " + uncommitted changes in src/" : ""} (dist/ as built)`,
      Node: process.version,
      ninja: sh("ninja", ["--version"]),
      make: sh("make", ["--version"]).split("\n")[0] ?? "",
      xargs: sh("xargs", ["--version"]).split("\n")[0] ?? "",
      sh: sh("readlink", ["-f", "/bin/sh"]),
    },
    workers: o.workers,
    big: o.big,
    durationS: 0,
    nodeStartMs: {
      asRun: nodeStartMs(benchEnv()),
      asShell: nodeStartMs(process.env),
      leftOut: LEFT_OUT.filter((name) => process.env[name] !== undefined),
    },
  };
}

/** Median wall time of `node -e 0` in `env`, in ms: what every start of Node costs before any code of tsup runs. */
function nodeStartMs(env: NodeJS.ProcessEnv, reps = 7): number {
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ["-e", "0"], { env, stdio: "ignore" });
    if (r.status !== 0) usage(`node -e 0 exited with ${r.status ?? r.error?.message}`);
    times.push(performance.now() - t0);
  }
  return median(times)!;
}

// ---------------------------------------------------------------------------------------------

interface Session {
  o: Options;
  run: RunOptions;
  base: string;
  samples: Sample[];
  groups: Group[];
}

function record(ses: Session, w: Workload, tool: Tool, rep: number, phase: Phase, dir: string, probeInput: string): void {
  const r = runTool(tool, dir, w, ses.run);
  verify(tool, phase, dir, w, r, probeInput);
  const { output: _output, ...numbers } = r;
  ses.samples.push({ kind: w.kind, n: w.n, tool, rep, phase, ...numbers });
  const extra = tool === "tsup" && r.directorRssKb ? `, director ${(r.directorRssKb / 1024).toFixed(0)} MB` : "";
  log(`  ${w.kind} N=${w.n} rep ${rep + 1} ${tool.padEnd(5)} ${phase.padEnd(7)} ${r.wallS.toFixed(2).padStart(7)} s${extra}`);
}

/**
 * One workload at one N: generate it for every tool, then per repetition run every tool in
 * turn: cold build, no-op rerun, rerun after editing one input. Every run is verified.
 */
function runGroup(ses: Session, kind: Kind, n: number, tools: Tool[], reps: number): string {
  const w = makeWorkload(kind, n, ses.o.workers);
  const phases: Phase[] = kind === "pool" ? ["cold"] : ["cold", "noop", "changed"];
  const group: Group = { kind, n: w.n, tools, reps, phases, failed: {} };
  ses.groups.push(group);
  const gdir = join(ses.base, `${kind}-${w.n}`);
  log(`${kind} N=${w.n}: generating for ${tools.join(", ")}`);
  for (const tool of tools) generate(join(gdir, tool), w, tool);
  for (let rep = 0; rep < reps; rep++) {
    for (const tool of tools) {
      // A tool that failed a check is out of this workload; the other tools go on.
      if (group.failed[tool]) continue;
      const dir = join(gdir, tool);
      try {
        cleanBuild(dir, w);
        writeInputs(dir, w);
        record(ses, w, tool, rep, "cold", dir, w.inputs.get(w.changed) ?? "");
        // xargs just runs commands: a rerun would be a second cold build, not a no-op.
        if (tool === "xargs" || kind === "pool") continue;
        record(ses, w, tool, rep, "noop", dir, w.inputs.get(w.changed) ?? "");
        const edited = editedContent(rep);
        writeFileSync(join(dir, w.changed), edited);
        record(ses, w, tool, rep, "changed", dir, edited);
      } catch (err) {
        if (!(err instanceof BenchCheckError)) throw err;
        group.failed[tool] = err.message;
        log(`FAILED: ${err.message}`);
      }
    }
  }
  return gdir;
}

function stateIo(ses: Session, n: number, stepupDir: string): StateIoResult {
  const store = join(dirname(ses.run.tsupBin), "../dist/state/store.js");
  const res: StateIoResult = { n, fileBytes: 0, loadS: [], saveS: [], saveAgainS: [] };
  for (let i = 0; i < ses.o.stateIoReps; i++) {
    const r = spawnSync(process.execPath, ["--import", "tsx", join(REPO, "bench/state-io.ts"), store, stepupDir], { cwd: REPO, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`state-io failed: ${r.stderr}`);
    const j = JSON.parse(r.stdout.trim().split("\n").pop()!) as { loadS: number; saveS: number; saveAgainS: number; bytes: number };
    res.fileBytes = j.bytes;
    res.loadS.push(j.loadS);
    res.saveS.push(j.saveS);
    res.saveAgainS.push(j.saveAgainS);
    log(`  state-io N=${n}: load ${j.loadS.toFixed(2)} s, save ${j.saveS.toFixed(2)} s, again ${j.saveAgainS.toFixed(2)} s`);
  }
  return res;
}

/**
 * One extra cold flat build with all of tsup's node processes under the sampling profiler, then
 * a profiled no-op rerun of it (the no-op targets are about the director alone).
 */
function profile(ses: Session, n: number): ProfileResult {
  const w = makeWorkload("flat", n, ses.o.workers);
  const dir = join(ses.base, `profile-flat-${n}`);
  log(`profile: flat N=${n} cold, then no-op`);
  generate(dir, w, "tsup");
  const profiled = (phase: Phase): { r: RunResult; profDir: string } => {
    const profDir = join(dir, `profiles-${phase}`);
    mkdirSync(profDir, { recursive: true });
    const run: RunOptions = {
      ...ses.run,
      env: { NODE_OPTIONS: `--import ${join(REPO, "bench/cpu-prof-hook.mjs")}`, TSUP_BENCH_PROFILE_DIR: profDir },
    };
    const r = runTool("tsup", dir, w, run);
    verify("tsup", phase, dir, w, r, w.inputs.get(w.changed) ?? "");
    log(`  ${phase} profiled in ${r.wallS.toFixed(2)} s; profiles kept in ${profDir}`);
    return { r, profDir };
  };
  const cold = profiled("cold");
  const noop = profiled("noop");
  const files = (profDir: string, role: string, ext: string): string[] =>
    readdirSync(profDir)
      .filter((f) => f.startsWith(`${role}-`) && f.endsWith(ext))
      .map((f) => join(profDir, f));
  const processes: ProcessCpu[] = [];
  for (const role of ["director", "plan", "worker"]) {
    const usages = files(cold.profDir, role, ".usage.json").map((f) => JSON.parse(readFileSync(f, "utf8")) as NodeJS.ResourceUsage);
    if (!usages.length) continue;
    processes.push({
      role: role === "worker" ? "workers" : role,
      count: usages.length,
      cpuS: usages.reduce((a, u) => a + (u.userCPUTime + u.systemCPUTime) / 1e6, 0),
      maxRssKb: Math.max(...usages.map((u) => u.maxRSS)),
      voluntarySwitches: usages.reduce((a, u) => a + u.voluntaryContextSwitches, 0),
      involuntarySwitches: usages.reduce((a, u) => a + u.involuntaryContextSwitches, 0),
    });
  }
  const director = (profDir: string): string[] => {
    const d = files(profDir, "director", ".cpuprofile");
    if (d.length !== 1) throw new Error(`expected one director profile in ${profDir}, found ${d.length}`);
    return d;
  };
  const workers = files(cold.profDir, "worker", ".cpuprofile");
  const plan = files(cold.profDir, "plan", ".cpuprofile");
  const result: ProfileResult = {
    n,
    wallS: cold.r.wallS,
    treeCpuS: cold.r.cpuS,
    processes,
    director: summarizeProfile(director(cold.profDir), 25),
    workers: workers.length ? summarizeProfile(workers, 15) : null,
    plan: plan.length ? summarizeProfile(plan, 12) : null,
    noop: { wallS: noop.r.wallS, director: summarizeProfile(director(noop.profDir), 15) },
  };
  if (!ses.o.keep) for (const d of w.dirs) rmSync(join(dir, d), { recursive: true, force: true });
  return result;
}

function warmUp(ses: Session): void {
  // The first run of each tool pays for cold caches (node, the binaries, loading esbuild);
  // one tiny unmeasured build per tool keeps that out of the first repetition. (Each workload's
  // own plan.ts is compiled in its first cold build and comes from tsup's compile cache after.)
  const w = makeWorkload("flat", 10, ses.o.workers);
  for (const tool of ses.o.tools) {
    const dir = join(ses.base, "warmup", tool);
    generate(dir, w, tool);
    const r = runTool(tool, dir, w, ses.run);
    verify(tool, "cold", dir, w, r, w.inputs.get(w.changed) ?? "");
  }
  rmSync(join(ses.base, "warmup"), { recursive: true, force: true });
}

function main(): void {
  const o = parseOptions(process.argv.slice(2));
  for (const t of ["/usr/bin/time", ...o.tools.filter((t) => t !== "tsup")]) {
    if (t.startsWith("/") ? !existsSync(t) : !sh("sh", ["-c", `command -v ${t}`])) usage(`${t} is not installed (apt-get install ${t === "/usr/bin/time" ? "time" : t === "ninja" ? "ninja-build" : t})`);
  }
  const base = o.dir ?? mkdtempSync(join(tmpdir(), "tsup-bench-"));
  mkdirSync(base, { recursive: true });
  const meta = collectMeta(o, resolve(dirname(o.tsup), ".."));
  const t0 = performance.now();
  const ses: Session = {
    o,
    base,
    samples: [],
    groups: [],
    run: {
      tsupBin: snapshotTsup(o.tsup, base),
      probeHook: join(REPO, "bench/director-probe.mjs"),
      workers: o.workers,
      poolWorkers: 4,
      timeoutMs: 60 * 60 * 1000,
    },
  };
  log(`bench: ${o.mode} run in ${base}`);
  warmUp(ses);

  let stateIoResult: StateIoResult | null = null;
  let profileResult: ProfileResult | null = null;
  const done = (gdir: string): void => {
    if (!o.keep) rmSync(gdir, { recursive: true, force: true });
  };
  for (const n of o.sizes) {
    for (const kind of o.workloads) if (kind !== "pool") done(runGroup(ses, kind, n, o.tools, o.reps));
  }
  if (o.workloads.includes("pool")) done(runGroup(ses, "pool", POOL_STEPS, o.tools, o.poolReps));
  const bigTools = o.tools.filter((t) => t === "tsup" || t === "ninja");
  const largestFlat = Math.max(0, ...o.big);
  for (const n of o.big) {
    for (const kind of o.bigWorkloads) {
      if (kind === "pool") continue;
      const gdir = runGroup(ses, kind, n, bigTools, o.bigReps);
      const stepup = join(gdir, "tsup/.stepup");
      if (kind === "flat" && n === largestFlat && o.stateIoReps > 0 && existsSync(stepup)) {
        stateIoResult = stateIo(ses, n, stepup);
      }
      done(gdir);
    }
  }
  if (o.profileN > 0 && o.tools.includes("tsup")) profileResult = profile(ses, o.profileN);

  meta.loadAfter = loadavg().map((x) => x.toFixed(2)).join(", ");
  meta.durationS = (performance.now() - t0) / 1000;
  const results: Results = { meta, groups: ses.groups, samples: ses.samples, stateIo: stateIoResult, profile: profileResult };
  writeFileSync(join(base, "results.json"), JSON.stringify(results, null, 1));
  const md = render(results);
  if (o.out) {
    writeDoc(o.out, md);
    log(`bench: wrote ${o.out}`);
  } else {
    process.stdout.write(md + "\n");
  }
  log(`bench: raw samples in ${join(base, "results.json")}; ${meta.durationS.toFixed(0)} s in all`);
  if (ses.groups.some((g) => Object.keys(g.failed).length)) process.exitCode = 1;
}

// `--from <results.json>`: render the report from the raw samples of an earlier run (after a
// change to report.ts), instead of measuring again. Writes docs/performance.md, or prints with --out -.
const fromIndex = process.argv.indexOf("--from");
if (fromIndex >= 0) {
  const file = process.argv[fromIndex + 1];
  if (file === undefined) throw new Error("--from needs the path of a results.json");
  const outIndex = process.argv.indexOf("--out");
  const out = outIndex >= 0 ? process.argv[outIndex + 1] : join(REPO, "docs/performance.md");
  const md = render(JSON.parse(readFileSync(file, "utf8")) as Results);
  if (out === "-" || out === undefined) process.stdout.write(md + "\n");
  else writeDoc(out, md);
} else {
  main();
}
