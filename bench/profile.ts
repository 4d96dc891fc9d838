// Summarizes a V8 .cpuprofile (from `node --cpu-prof`) by self time: where the director spends
// its CPU, for whoever optimizes it next. Used by bench/suite.ts; also runnable on its own:
//
//   node --import tsx bench/profile.ts <file.cpuprofile>...
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  name: string;
  /** file:line, shortened to the part after node_modules/ or dist/ */
  where: string;
  /**
   * For functions outside tsup (native code, node: internals, libraries): the nearest caller in
   * tsup's own code (dist/), the one that accounts for most of the time.
   */
  via: string;
  selfMs: number;
  /** Share of the busy time: everything but "(idle)". */
  pct: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Sampled time not spent waiting for events ("(idle)"). */
  busyMs: number;
  functions: ProfileRow[];
  /** Self time per source file (or per pseudo node such as "(garbage collector)"). */
  files: ProfileRow[];
}

function shortUrl(url: string): string {
  if (!url) return "";
  const path = url.startsWith("file://") ? fileURLToPath(url) : url;
  const nm = path.lastIndexOf("node_modules/");
  if (nm >= 0) return path.slice(nm + "node_modules/".length);
  const dist = path.lastIndexOf("/dist/");
  if (dist >= 0) return path.slice(dist + 1);
  return path;
}

/** Summarizes one profile, or several (e.g. all workers) as if they were one. */
export function summarizeProfile(files: string | string[], rows = 25): ProfileSummary {
  const fn = new Map<string, { name: string; where: string; us: number; via: Map<string, number> }>();
  const perFile = new Map<string, number>();
  let total = 0;
  for (const file of typeof files === "string" ? [files] : files) {
    const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
    const byId = new Map<number, ProfileNode>();
    const parent = new Map<number, number>();
    for (const n of p.nodes) {
      byId.set(n.id, n);
      for (const c of n.children ?? []) parent.set(c, n.id);
    }
    const viaOf = (id: number): string => {
      for (let cur = parent.get(id); cur !== undefined; cur = parent.get(cur)) {
        const cf = byId.get(cur)!.callFrame;
        const url = shortUrl(cf.url);
        if (url.startsWith("dist/")) return `${cf.functionName || "(anonymous)"} ${url}:${cf.lineNumber + 1}`;
      }
      return "";
    };
    // Each sample's time delta is attributed to the node that was on top of the stack.
    const selfUs = new Map<number, number>();
    for (let i = 0; i < p.samples.length; i++) {
      const id = p.samples[i]!;
      selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
    }
    for (const [id, us] of selfUs) {
      const cf = byId.get(id)!.callFrame;
      total += us;
      const url = shortUrl(cf.url);
      const name = cf.functionName || (url ? "(anonymous)" : "(native)");
      const where = url ? `${url}:${cf.lineNumber + 1}` : "";
      const key = `${name}@${where}`;
      const e = fn.get(key) ?? { name, where, us: 0, via: new Map<string, number>() };
      e.us += us;
      if (!where.startsWith("dist/")) {
        const v = viaOf(id);
        if (v) e.via.set(v, (e.via.get(v) ?? 0) + us);
      }
      fn.set(key, e);
      const fileKey = url || (name.startsWith("(") ? name : `(native) ${name}`);
      perFile.set(fileKey, (perFile.get(fileKey) ?? 0) + us);
    }
  }
  const idle = fn.get("(idle)@")?.us ?? 0;
  const busy = total - idle;
  const row = (name: string, where: string, us: number, via?: Map<string, number>): ProfileRow => ({
    name,
    where,
    via: via && via.size ? [...via].sort((a, b) => b[1] - a[1])[0]![0] : "",
    selfMs: us / 1000,
    pct: busy ? (100 * us) / busy : 0,
  });
  fn.delete("(idle)@");
  perFile.delete("(idle)");
  return {
    totalMs: total / 1000,
    busyMs: busy / 1000,
    functions: [...fn.values()].sort((a, b) => b.us - a.us).slice(0, rows).map((e) => row(e.name, e.where, e.us, e.via)),
    files: [...perFile].sort((a, b) => b[1] - a[1]).slice(0, rows).map(([f, us]) => row(f, "", us)),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: profile.ts <file.cpuprofile>... (several files are summed)");
    process.exit(2);
  }
  const s = summarizeProfile(files, 30);
  console.log(`sampled ${s.totalMs.toFixed(0)} ms, busy (not idle) ${s.busyMs.toFixed(0)} ms; % of busy time`);
  for (const r of s.functions) {
    console.log(`${r.selfMs.toFixed(0).padStart(7)} ms ${r.pct.toFixed(1).padStart(5)}%  ${r.name}  ${r.where}${r.via ? `  <- ${r.via}` : ""}`);
  }
  console.log("\nby file:");
  for (const r of s.files) console.log(`${r.selfMs.toFixed(0).padStart(7)} ms ${r.pct.toFixed(1).padStart(5)}%  ${r.name}`);
}
