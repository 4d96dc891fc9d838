// Preloaded into the tsup director by the benchmark (`node --import <this> bin/tsup.js ...`).
// When the process exits it writes, as JSON to the file named by TSUP_BENCH_PROBE_FILE, its own
// peak resident set size (VmHWM, kB) and its own CPU time (user and system seconds).
//
// Why not just /usr/bin/time -f %M: that reports the largest ru_maxrss among the whole tree of
// waited-for processes, and the director's tree also holds the plan process (node + tsx) and
// the workers. VmHWM of /proc/self is the director alone. Likewise /usr/bin/time's CPU time is
// the sum over the whole tree; the director's own share says whether it is the bottleneck.
//
// The variable is removed at once so that the plan and the workers (which inherit the
// environment) never write the file.
import { readFileSync, writeFileSync } from "node:fs";

const target = process.env.TSUP_BENCH_PROBE_FILE;
if (target) {
  delete process.env.TSUP_BENCH_PROBE_FILE;
  process.on("exit", () => {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync("/proc/self/status", "utf8"));
    const cpu = process.cpuUsage();
    writeFileSync(target, JSON.stringify({ hwmKb: m ? Number(m[1]) : null, userS: cpu.user / 1e6, sysS: cpu.system / 1e6 }));
  });
}
