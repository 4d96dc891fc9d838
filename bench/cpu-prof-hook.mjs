// CPU profiles of every node process of one tsup run: the director and the plan(s).
// `node --cpu-prof` would only reach the director (NODE_OPTIONS refuses --cpu-prof, so it
// cannot reach the plan), so the benchmark puts this module in NODE_OPTIONS as `--import <this>` instead. It starts V8's sampling profiler through the
// in-process inspector and writes <role>-<pid>.cpuprofile into TSUP_BENCH_PROFILE_DIR on exit.
// In-thread inspector sessions answer synchronously, which is what makes an exit handler work.
// Next to it goes <role>-<pid>.usage.json (process.resourceUsage(): CPU of all the process's
// threads, which the profile's "(idle)" hides, peak RSS and context switches).
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { basename, join } from "node:path";

const dir = process.env.TSUP_BENCH_PROFILE_DIR;
if (dir) {
  const script = basename(process.argv[1] ?? "");
  const role = script === "tsup.js" ? "director" : "plan";
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  // 1 ms, as --cpu-prof: fine enough for a run of seconds, cheap enough not to distort it.
  session.post("Profiler.setSamplingInterval", { interval: 1000 });
  session.post("Profiler.start");
  process.on("exit", () => {
    session.post("Profiler.stop", (err, res) => {
      if (!err) writeFileSync(join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
    writeFileSync(join(dir, `${role}-${process.pid}.usage.json`), JSON.stringify(process.resourceUsage()));
  });
}
