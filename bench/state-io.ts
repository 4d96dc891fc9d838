// Times loadState and saveState of the tsup under test on an existing .stepup folder. The
// benchmark suite runs this once per repetition, each in a fresh process, because the director
// also loads the state exactly once, in a young process. tsup itself does not print these times.
//
// Usage: node --import tsx bench/state-io.ts <dist/state/store.js> <.stepup folder> [heap copies]
// Prints one JSON line: {"loadS":..,"saveS":..,"saveAgainS":..,"bytes":..}
//
// With a number of heap copies K, the state is loaded K more times and kept, before the saves:
// a stand-in for the director at the end of a big build, whose heap holds the whole workflow
// (at 100,000 steps, K = 2 gives a heap of about 600 MB). Run node with
// --heap-growing-percent=20, as the director does for a first build, to match it further.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

// Declared here rather than imported, so that this file type-checks without a built dist/ and
// works against any copy of tsup (the suite tests a snapshot of dist/).
interface Store {
  STATE_FILE: string;
  loadState(dir: string): Promise<{ state: unknown; loaded: boolean; warning?: { message: string } }>;
  saveState(dir: string, state: unknown): Promise<void>;
}

const [storeJs, stepupDir, copiesArg] = process.argv.slice(2);
const copies = Number(copiesArg ?? 0);
if (!storeJs || !stepupDir) {
  console.error("usage: state-io.ts <dist/state/store.js> <.stepup folder>");
  process.exit(2);
}
const store = (await import(pathToFileURL(storeJs).href)) as Store;
const target = mkdtempSync(join(tmpdir(), "tsup-state-io-"));
try {
  const t0 = performance.now();
  const loaded = await store.loadState(stepupDir);
  const t1 = performance.now();
  if (!loaded.loaded) throw new Error(`state not loaded: ${loaded.warning?.message ?? "no state file"}`);
  const kept: unknown[] = [];
  for (let i = 0; i < copies; i++) kept.push((await store.loadState(stepupDir)).state);
  const t1b = performance.now();
  await store.saveState(target, loaded.state);
  const t2 = performance.now();
  const saveS = (t2 - t1b) / 1000;
  // A second save shows how much of the first was warm-up (code compiled on first use).
  await store.saveState(target, loaded.state);
  const t3 = performance.now();
  const bytes = statSync(join(target, store.STATE_FILE)).size;
  console.log(JSON.stringify({ loadS: (t1 - t0) / 1000, saveS, saveAgainS: (t3 - t2) / 1000, bytes, heapCopies: kept.length }));
} finally {
  rmSync(target, { recursive: true, force: true });
}
