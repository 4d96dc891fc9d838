// Per-step overhead of the worker pool: N tiny `cp` steps through a pool of W workers, against
// `xargs -P W` running the same commands through `sh -c` (about what ninja pays per step), and
// against one node process spawning them with child_process.spawn() (what the workers would pay
// without the shell launchers, see src/workers/worker.ts). Wall time and total CPU time (this
// process plus all reaped descendants) are reported, median and minimum over the rounds.
// Temp dirs follow TMPDIR: compare with TMPDIR=/dev/shm to take the file system out of it.
//
// Run: node --import tsx bench/workers-overhead.ts [steps=2000] [workers=2] [rounds=3] [only]
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { WorkerPool } from "../src/workers/pool.js";
import type { RunRequest } from "../src/workers/protocol.js";

const steps = Number(process.argv[2] ?? 2000);
const workers = Number(process.argv[3] ?? 2);
const rounds = Number(process.argv[4] ?? 3);
/** Comma-separated subset of "xargs,raw,pool" to run. */
const only = new Set((process.argv[5] ?? "xargs,raw,pool").split(","));

interface Sample {
  wall: number;
  cpu: number;
}

/** CPU seconds of this process plus all its reaped descendants (from /proc/self/stat). */
function cpuNow(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14-17 of stat (utime, stime, cutime, cstime), counted from "state" = field 3.
  let ticks = 0;
  for (let f = 14; f <= 17; f++) ticks += Number(fields[f - 3]);
  return ticks / 100;
}

function setup(): string {
  const dir = mkdtempSync(join(tmpdir(), "tsup-bench-"));
  for (let i = 0; i < steps; i++) writeFileSync(join(dir, `a${i}`), `content of file ${i}\n`.repeat(4));
  return dir;
}

async function measure(body: (dir: string) => Promise<void> | void): Promise<Sample> {
  const dir = setup();
  const c0 = cpuNow();
  const t0 = performance.now();
  await body(dir);
  const sample = { wall: performance.now() - t0, cpu: (cpuNow() - c0) * 1000 };
  rmSync(dir, { recursive: true, force: true });
  return sample;
}

/** Includes starting the launchers and closing the pool: that is what a build pays. */
const viaPool = (dir: string): Promise<void> =>
  (async () => {
    const pool = new WorkerPool({
      size: workers,
      root: dir,
      tsNode: process.execPath,
      tsLoader: "tsx",
    });
    let next = 0;
    let failed = 0;
    const lane = async (): Promise<void> => {
      while (next < steps) {
        const i = next++;
        const req: RunRequest = {
          command: `cp a${i} b${i}`,
          workdir: "./",
          env: {},
          inputs: [{ path: `a${i}`, known: null }],
          outputs: [{ path: `b${i}`, known: null }],
        };
        const res = await pool.run(req);
        if (res.exitCode !== 0 || res.outputHashes[0] == null) failed++;
      }
    };
    await Promise.all(Array.from({ length: workers }, lane));
    await pool.close();
    if (failed > 0) throw new Error(`${failed} steps failed`);
  })();

/** The same spawns from this one process: no IPC, no hashing. */
const viaRawSpawn = async (dir: string): Promise<void> => {
  const env = { ...process.env };
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < steps) {
      const i = next++;
      await new Promise<void>((resolve) => {
        const child = spawn("/bin/sh", ["-c", `cp a${i} b${i}`], {
          cwd: dir,
          env,
          stdio: ["ignore", "pipe", "pipe"],
          detached: true,
        });
        child.stdout!.on("data", () => {});
        child.stderr!.on("data", () => {});
        child.on("close", () => resolve());
      });
    }
  };
  await Promise.all(Array.from({ length: workers }, lane));
};

const viaXargs = (dir: string): void => {
  const list = Array.from({ length: steps }, (_, i) => `cp a${i} b${i}\n`).join("");
  execFileSync("xargs", ["-P", String(workers), "-d", "\\n", "-n1", "sh", "-c"], { cwd: dir, input: list });
};

const results: Record<string, Sample[]> = { xargs: [], raw: [], pool: [] };
for (let r = 0; r < rounds; r++) {
  if (only.has("xargs")) results.xargs!.push(await measure(viaXargs));
  if (only.has("raw")) results.raw!.push(await measure(viaRawSpawn));
  if (only.has("pool")) results.pool!.push(await measure(viaPool));
}

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
const us = (ms: number): string => `${((ms * 1000) / steps).toFixed(0)} us/step`;
console.log(`${steps} steps, ${workers} workers, ${rounds} rounds (per step = total / steps)`);
for (const [name, samples] of Object.entries(results)) {
  if (samples.length === 0) continue;
  const walls = samples.map((s) => s.wall);
  const cpus = samples.map((s) => s.cpu);
  console.log(
    `${name.padEnd(6)} wall median ${us(median(walls))}, min ${us(Math.min(...walls))}; ` +
      `cpu median ${us(median(cpus))}, min ${us(Math.min(...cpus))}  (walls ms: ${walls.map((w) => w.toFixed(0)).join(" ")})`,
  );
}
// On a shared machine the minimum is the best estimate of the intrinsic cost; medians show noise.
const ratio = (a: string, key: keyof Sample, pick: (v: number[]) => number): string => {
  const x = results[a]!.map((s) => s[key]);
  const y = results.xargs!.map((s) => s[key]);
  return x.length === 0 || y.length === 0 ? "n/a" : (pick(x) / pick(y)).toFixed(3);
};
const min = (v: number[]): number => Math.min(...v);
for (const name of ["pool", "raw"]) {
  console.log(
    `${name}/xargs: wall median ${ratio(name, "wall", median)}, min ${ratio(name, "wall", min)}; ` +
      `cpu median ${ratio(name, "cpu", median)}, min ${ratio(name, "cpu", min)}`,
  );
}
