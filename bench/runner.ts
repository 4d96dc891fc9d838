// Running and timing the tools of the benchmark suite, and checking that each build did what it
// had to. A benchmark that silently fails is worthless, so every run is verified: exit status,
// the tool's own account of what it executed, every output on disk, and a probe file whose
// content proves that the edit of the "one changed" rerun reached the end of the graph.
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Tool, Workload } from "./workloads.js";

export type Phase = "cold" | "noop" | "changed";

export interface RunOptions {
  /** Absolute path of the tsup under test (a bin/tsup.js). */
  tsupBin: string;
  /** Absolute path of bench/director-probe.mjs. */
  probeHook: string;
  /** Worker / job count for everything but the pool workload. */
  workers: number;
  /** Worker / job count for the pool workload. */
  poolWorkers: number;
  /** Extra environment for the tool (e.g. the CPU profiler hook). */
  env?: Record<string, string>;
  timeoutMs: number;
}

export interface RunResult {
  wallS: number;
  /** Largest ru_maxrss among the waited-for process tree, from /usr/bin/time -f %M. */
  treeRssKb: number | null;
  /** User + system CPU seconds of the whole process tree, from /usr/bin/time -f "%U %S". */
  cpuS: number | null;
  /** tsup only: VmHWM of the director process itself (bench/director-probe.mjs). */
  directorRssKb: number | null;
  /** tsup only: user + system CPU seconds of the director process itself. */
  directorCpuS: number | null;
  /** Size of the tool's state: .stepup/workflow.mpk.xz for tsup, .ninja_log for ninja. */
  stateBytes: number | null;
  /** tsup only, from -s: seconds from the event before "WORKFLOW │ Dumped" to that line. */
  saveS: number | null;
  /** tsup only, from -s: when "WORKFLOW │ Loaded" was printed (seconds since the reporter started). */
  loadS: number | null;
  /** tsup only, from -s: first START to last SUCCESS of the non-plan steps. */
  spanS: number | null;
  /** Everything the tool printed (stdout and stderr). */
  output: string;
}

/**
 * Raised when a build did not do what it should. The suite then drops that tool from the
 * workload and lists the failure in the report, rather than report numbers of a broken build.
 */
export class BenchCheckError extends Error {}

/** The command line of `tool` for workload `w`, run in the workload's folder. */
export function commandLine(tool: Tool, w: Workload, o: RunOptions): string[] {
  const jobs = w.pool ? o.poolWorkers : o.workers;
  switch (tool) {
    case "tsup":
      // -s timestamps every line: the only way to see, from outside, how long loading and
      // saving the state took inside the run. Formatting them costs next to nothing.
      return [process.execPath, "--import", o.probeHook, o.tsupBin, "-n", `-w${jobs}`, "-s"];
    case "ninja":
      // ninja's dependency scan recurses along the chain and overflows the default 8 MB stack
      // at N = 100,000 (SIGSEGV, exit 139), so the chain runs it with an unlimited stack. Only
      // the chain: the extra `sh` costs a millisecond, which would show in other no-op ratios.
      return w.kind === "chain" ? ["sh", "-c", `ulimit -s unlimited && exec ninja -j${jobs}`] : ["ninja", `-j${jobs}`];
    case "make":
      // No pools in make: every pool step is in the one pool, so pool-size jobs is equivalent.
      return ["make", "-r", `-j${w.pool ? w.pool.size : jobs}`];
    case "xargs":
      return ["sh", "run.sh"];
  }
}

/**
 * The environment every tool runs in: this process's, plus `extra`, minus what would measure the
 * shell rather than the tool.
 * - FORCE_COLOR and MAKEFLAGS change what tsup prints and how make schedules.
 * - NODE_EXTRA_CA_CERTS makes every Node process parse that certificate bundle at start-up,
 *   before any of its own code runs. The sandbox this suite was written in sets it for all
 *   processes, and on its 2 cores that added about 75 ms to each start of Node (`node -e 0`: 115
 *   ms instead of 40), so to every tsup run and every plan it starts, and to none of the other
 *   tools. A tsup user pays it only with the variable set. The report gives Node's start-up time
 *   both ways (Meta.nodeStartMs), so the size of what is left out is on record.
 */
export function benchEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra, LC_ALL: "C" };
  for (const name of LEFT_OUT) delete env[name];
  return env;
}

/** What benchEnv removes. */
export const LEFT_OUT = ["FORCE_COLOR", "MAKEFLAGS", "NODE_EXTRA_CA_CERTS"] as const;

/** Deletes everything a build produced, so the next build is cold. */
export function cleanBuild(dir: string, w: Workload): void {
  for (const p of [".stepup", ".ninja_log", ".ninja_deps", "all.txt"]) rmSync(join(dir, p), { recursive: true, force: true });
  for (const d of w.dirs) if (d !== "in") rmSync(join(dir, d), { recursive: true, force: true });
}

export function runTool(tool: Tool, dir: string, w: Workload, o: RunOptions): RunResult {
  const argv = commandLine(tool, w, o);
  const logFile = join(dir, `${tool}.log`);
  const timeFile = join(dir, `${tool}.time`);
  const probeFile = join(dir, `${tool}.probe.json`);
  rmSync(probeFile, { force: true });
  rmSync(timeFile, { force: true });
  const fd = openSync(logFile, "w");
  const env = benchEnv({ ...o.env, TSUP_BENCH_PROBE_FILE: probeFile });
  let t0 = 0;
  let t1 = 0;
  let status: number | null = null;
  let error: Error | undefined;
  try {
    // spawnSync: nothing else runs in this process while a build is measured, so no event loop
    // work of ours competes with the tool. /usr/bin/time adds one fork and a wait.
    t0 = performance.now();
    const r = spawnSync("/usr/bin/time", ["-f", "%M %U %S", "-o", timeFile, ...argv], {
      cwd: dir,
      env,
      stdio: ["ignore", fd, fd],
      timeout: o.timeoutMs,
    });
    t1 = performance.now();
    status = r.status;
    error = r.error;
  } finally {
    closeSync(fd);
  }
  const output = readFileSync(logFile, "utf8");
  if (error || status !== 0) {
    const tail = output.split("\n").slice(-30).join("\n");
    // /usr/bin/time says why, e.g. "Command terminated by signal 11".
    const why = existsSync(timeFile) ? readFileSync(timeFile, "utf8").split("\n")[0] : "";
    throw new BenchCheckError(`${tool} in ${dir} exited with ${status ?? error?.message} (${why}):\n${tail}`);
  }
  const stateFile = tool === "tsup" ? join(dir, ".stepup/workflow.mpk.xz") : tool === "ninja" ? join(dir, ".ninja_log") : null;
  const timed = tool === "tsup" ? parseShowPerf(output) : { saveS: null, loadS: null, spanS: null };
  const usage = readTime(timeFile);
  const probe = tool === "tsup" ? readProbe(probeFile) : null;
  return {
    wallS: (t1 - t0) / 1000,
    treeRssKb: usage?.rssKb ?? null,
    cpuS: usage?.cpuS ?? null,
    directorRssKb: probe?.hwmKb ?? null,
    directorCpuS: probe ? probe.userS + probe.sysS : null,
    stateBytes: stateFile && existsSync(stateFile) ? statSync(stateFile).size : null,
    ...timed,
    output,
  };
}

function readTime(file: string): { rssKb: number; cpuS: number } | null {
  if (!existsSync(file)) return null;
  // /usr/bin/time may put "Command exited with non-zero status" before the numbers.
  const lines = readFileSync(file, "utf8").trim().split("\n");
  const f = (lines[lines.length - 1] ?? "").split(" ").map(Number);
  if (f.length !== 3 || f.some((v) => !Number.isFinite(v))) return null;
  return { rssKb: f[0]!, cpuS: f[1]! + f[2]! };
}

function readProbe(file: string): { hwmKb: number; userS: number; sysS: number } | null {
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as { hwmKb: number; userS: number; sysS: number };
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// tsup's output

interface Line {
  time: number | null;
  action: string;
  message: string;
}

/** Event lines of tsup's text output (pages skipped), with the -s time when present. */
export function tsupLines(output: string): Line[] {
  const lines: Line[] = [];
  for (const raw of output.split("\n")) {
    const bar = raw.indexOf(" │ ");
    if (bar < 0) continue;
    const left = raw.slice(0, bar).trim().split(/\s+/);
    const action = left[left.length - 1] ?? "";
    const time = left.length >= 3 ? Number(left[0]) : null;
    lines.push({ time: time !== null && Number.isFinite(time) ? time : null, action, message: raw.slice(bar + 3) });
  }
  return lines;
}

function parseShowPerf(output: string): Pick<RunResult, "saveS" | "loadS" | "spanS"> {
  const lines = tsupLines(output);
  let saveS: number | null = null;
  let loadS: number | null = null;
  let first: number | null = null;
  let last: number | null = null;
  lines.forEach((l, i) => {
    if (l.action === "WORKFLOW" && l.message.startsWith("Loaded")) loadS = l.time;
    if (l.action === "WORKFLOW" && l.message.startsWith("Dumped") && i > 0) {
      const prev = lines[i - 1]!.time;
      if (l.time !== null && prev !== null) saveS = l.time - prev;
    }
    if (l.message === "./plan.ts" || l.time === null) return;
    if (l.action === "START" && first === null) first = l.time;
    if (l.action === "SUCCESS") last = l.time;
  });
  return { saveS, loadS, spanS: first !== null && last !== null ? last - first : null };
}

export interface DirectorSummary {
  executed: number;
  skipped: number;
  failed: number;
  pending: number;
}

export function directorSummary(output: string): DirectorSummary | null {
  const m = /DIRECTOR │ (\d+) executed, (\d+) skipped, (\d+) failed, (\d+) pending\s*$/m.exec(output);
  if (!m) return null;
  return { executed: Number(m[1]), skipped: Number(m[2]), failed: Number(m[3]), pending: Number(m[4]) };
}

// ---------------------------------------------------------------------------------------------
// Verification

/**
 * Checks one build of `tool`: what the tool says it executed, every output, and the probe.
 * `probeInput` is the current content of the workload's changed input (initial or edited).
 */
export function verify(tool: Tool, phase: Phase, dir: string, w: Workload, r: RunResult, probeInput: string): void {
  const fail = (why: string): never => {
    const tail = r.output.split("\n").slice(-15).join("\n");
    throw new BenchCheckError(`${tool} ${w.kind} N=${w.n} ${phase} in ${dir}: ${why}\n--- last lines of its output ---\n${tail}`);
  };
  const expected = phase === "cold" ? w.steps.length : phase === "noop" ? 0 : w.rerunSteps;

  if (tool === "tsup") {
    const s = directorSummary(r.output) ?? fail("no DIRECTOR summary line");
    // The plan itself is a step: executed on a cold build, skipped afterwards.
    const wantExecuted = phase === "cold" ? expected + 1 : expected;
    if (s.executed !== wantExecuted || s.failed !== 0 || s.pending !== 0 || s.executed + s.skipped !== w.steps.length + 1) {
      fail(`expected ${wantExecuted} executed of ${w.steps.length + 1}, got ${JSON.stringify(s)}`);
    }
    if (phase === "cold") checkStartedCommands(r.output, w, fail);
  } else if (tool === "ninja") {
    if (phase === "noop") {
      if (!/ninja: no work to do\./.test(r.output)) fail("no-op rerun did work");
    } else {
      const m = [...r.output.matchAll(/^\[(\d+)\/(\d+)\] /gm)];
      const total = m.length ? Number(m[m.length - 1]![2]) : 0;
      if (m.length !== expected || total !== expected) fail(`expected ${expected} commands, ninja ran ${m.length} of ${total}`);
    }
  } else if (tool === "make") {
    // make echoes every command it runs.
    const commands = new Set(w.steps.map((s) => s.command));
    const ran = r.output.split("\n").filter((l) => commands.has(l)).length;
    if (ran !== expected) fail(`expected ${expected} commands, make ran ${ran}`);
    if (phase === "noop" && !/Nothing to be done|is up to date/.test(r.output)) fail("no-op rerun did work");
  }

  for (const s of w.steps) for (const o of s.out) if (!existsSync(join(dir, o))) fail(`output missing: ${o}`);
  const probe = readFileSync(join(dir, w.probe), "utf8");
  if (!probeOk(w, probe, probeInput)) fail(`probe ${w.probe} has unexpected content ${JSON.stringify(probe.slice(0, 200))}`);
}

function probeOk(w: Workload, probe: string, input: string): boolean {
  switch (w.kind) {
    case "flat":
    case "chain":
      return probe === input;
    case "fan": {
      // all.txt is every input once, in the shell's glob order.
      let size = 0;
      for (const c of w.inputs.values()) size += Buffer.byteLength(c);
      const changed = w.inputs.get(w.changed) ?? "";
      return Buffer.byteLength(probe) === size - Buffer.byteLength(changed) + Buffer.byteLength(input) && probe.includes(input);
    }
    case "pool":
      return probe === `${w.n - 1}\n`;
  }
}

/**
 * The identical-commands guarantee: the commands tsup started on a cold build are exactly the
 * workload's commands (which ninja, make and xargs got verbatim), plus the plan.
 */
function checkStartedCommands(output: string, w: Workload, fail: (why: string) => never): void {
  const started = new Set<string>();
  for (const l of tsupLines(output)) if (l.action === "START" && l.message !== "./plan.ts") started.add(l.message);
  if (started.size !== w.steps.length) fail(`tsup started ${started.size} distinct commands, the workload has ${w.steps.length}`);
  for (const s of w.steps) {
    if (!started.has(s.command)) fail(`tsup never started \`${s.command}\` (a generated plan and the other tools disagree)`);
  }
}
