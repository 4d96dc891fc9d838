// A/B comparison of two tsup builds (say, main and a change) on one workload, with ninja as the
// yardstick, interleaved run by run so that load bursts on a noisy machine hit all of them alike.
// For deciding whether a change helps; the suite (suite.ts) is what writes docs/performance.md.
//
//   node --import tsx bench/ab.ts --a /tmp/tsup-main/bin/tsup.js [--b bin/tsup.js]
//        [--kind flat] [--n 5000] [--reps 5] [--workers 2] [--phases cold,noop,changed]
//
// Prints per phase the median wall time of A, B and ninja, and B/A and each/ninja ratios.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { cleanBuild, runTool, verify, type Phase, type RunOptions } from "./runner.js";
import { editedContent, generate, makeWorkload, writeInputs, type Kind } from "./workloads.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const { values } = parseArgs({
  options: {
    a: { type: "string" },
    b: { type: "string", default: join(REPO, "bin/tsup.js") },
    kind: { type: "string", default: "flat" },
    n: { type: "string", default: "5000" },
    reps: { type: "string", default: "5" },
    workers: { type: "string", default: "2" },
    phases: { type: "string", default: "cold,noop,changed" },
    "no-ninja": { type: "boolean", default: false },
  },
});
if (values.a === undefined) {
  process.stderr.write("usage: bench/ab.ts --a <tsup bin> [--b <tsup bin>] [--kind flat] [--n 5000] [--reps 5]\n");
  process.exit(2);
}
const kind = values.kind as Kind;
const n = Number(values.n);
const reps = Number(values.reps);
const workers = Number(values.workers);
const phases = values.phases.split(",") as Phase[];
const w = makeWorkload(kind, n, workers);
const base = mkdtempSync(join(tmpdir(), "tsup-ab-"));

interface Contender {
  name: string;
  tool: "tsup" | "ninja";
  dir: string;
  run: RunOptions;
  times: Map<Phase, number[]>;
  /** CPU seconds (user + system) of the whole process tree, per phase. */
  cpu: Map<Phase, number[]>;
}
const runOptions = (tsupBin: string): RunOptions => ({
  tsupBin: resolve(tsupBin),
  probeHook: join(REPO, "bench/director-probe.mjs"),
  workers,
  poolWorkers: 4,
  timeoutMs: 30 * 60_000,
});
const contenders: Contender[] = [
  { name: "A", tool: "tsup", dir: join(base, "a"), run: runOptions(values.a), times: new Map(), cpu: new Map() },
  { name: "B", tool: "tsup", dir: join(base, "b"), run: runOptions(values.b), times: new Map(), cpu: new Map() },
];
if (!values["no-ninja"]) contenders.push({ name: "ninja", tool: "ninja", dir: join(base, "ninja"), run: runOptions(values.b), times: new Map(), cpu: new Map() });
for (const c of contenders) generate(c.dir, w, c.tool);

try {
  for (let rep = 0; rep < reps; rep++) {
    // Alternate the order too: the first of a round may pay for the previous round's writeback.
    const order = rep % 2 === 0 ? contenders : [...contenders].reverse();
    for (const c of order) {
      cleanBuild(c.dir, w);
      writeInputs(c.dir, w);
      let probe = w.inputs.get(w.changed) ?? "";
      for (const phase of ["cold", "noop", "changed"] as Phase[]) {
        if (phase === "changed") {
          probe = editedContent(rep);
          writeFileSync(join(c.dir, w.changed), probe);
        }
        if (kind === "pool" && phase !== "cold") break;
        const r = runTool(c.tool, c.dir, w, c.run);
        verify(c.tool, phase, c.dir, w, r, probe);
        if (!phases.includes(phase)) continue;
        const list = c.times.get(phase) ?? [];
        list.push(r.wallS);
        c.times.set(phase, list);
        const cpuList = c.cpu.get(phase) ?? [];
        cpuList.push(r.cpuS ?? NaN);
        c.cpu.set(phase, cpuList);
        process.stderr.write(`rep ${rep + 1} ${c.name.padEnd(5)} ${phase.padEnd(7)} ${r.wallS.toFixed(2)} s (CPU ${r.cpuS?.toFixed(2) ?? "?"} s)\n`);
      }
    }
  }
} finally {
  rmSync(base, { recursive: true, force: true });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
console.log(`${kind} N=${n}, ${reps} reps, -w${workers}; A = ${values.a}, B = ${values.b}`);
for (const phase of phases) {
  const m = new Map(contenders.map((c) => [c.name, median(c.times.get(phase) ?? [NaN])]));
  const a = m.get("A")!;
  const b = m.get("B")!;
  const nj = m.get("ninja");
  const vsNinja = nj === undefined ? "" : `  ninja ${nj.toFixed(3)} s  A/ninja ${(a / nj).toFixed(2)}  B/ninja ${(b / nj).toFixed(2)}`;
  console.log(`${phase.padEnd(8)} A ${a.toFixed(3)} s  B ${b.toFixed(3)} s  B/A ${(b / a).toFixed(3)}${vsNinja}`);
  const cpu = new Map(contenders.map((c) => [c.name, median(c.cpu.get(phase) ?? [NaN])]));
  const ca = cpu.get("A")!;
  const cb = cpu.get("B")!;
  const cn = cpu.get("ninja");
  const cpuVsNinja = cn === undefined ? "" : `  ninja ${cn.toFixed(2)} s  A/ninja ${(ca / cn).toFixed(2)}  B/ninja ${(cb / cn).toFixed(2)}`;
  console.log(`${"  CPU".padEnd(8)} A ${ca.toFixed(2)} s  B ${cb.toFixed(2)} s  B/A ${(cb / ca).toFixed(3)}${cpuVsNinja}`);
}
