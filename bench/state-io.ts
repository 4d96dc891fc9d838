// Times loadState and saveState of the tsup under test on an existing .stepup folder. The
// benchmark suite runs this once per repetition, each in a fresh process, because the director
// also loads the state exactly once, in a young process. tsup itself does not print these times.
//
// Usage: node --import tsx bench/state-io.ts <dist/state/store.js> <.stepup folder> [heap copies] [--scatter]
// Prints one JSON line: {"loadS":..,"saveS":..,"saveAgainS":..,"bytes":..}
//
// With a number of heap copies K, the state is loaded K more times and kept, before the saves:
// a stand-in for the director at the end of a big build, whose heap holds the whole workflow
// (at 100,000 steps, K = 2 gives a heap of about 600 MB). Run node with
// --heap-growing-percent=20, as the director does for a first build, to match it further.
//
// With --scatter, the saves get a copy of the state rebuilt the way a cold build makes it: step
// by step, each step's file hashes, paths and record allocated between other objects that stay
// alive (stand-ins for graph nodes and messages). A loaded state sits in memory in the order it
// was read, and saving it touches memory in that order; a director's does not, and at 100,000
// steps that made the file table take several times as long to encode in the director.
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

const args = process.argv.slice(2);
const scatter = args.includes("--scatter");
const [storeJs, stepupDir, copiesArg] = args.filter((a) => a !== "--scatter");
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
  const state = scatter ? scattered(loaded.state as State, kept) : loaded.state;
  const t1b = performance.now();
  await store.saveState(target, state);
  const t2 = performance.now();
  const saveS = (t2 - t1b) / 1000;
  // A second save shows how much of the first was warm-up (code compiled on first use).
  await store.saveState(target, state);
  const t3 = performance.now();
  const bytes = statSync(join(target, store.STATE_FILE)).size;
  console.log(JSON.stringify({ loadS: (t1 - t0) / 1000, saveS, saveAgainS: (t3 - t2) / 1000, bytes, heapCopies: copies, scatter }));
} finally {
  rmSync(target, { recursive: true, force: true });
}

// The parts of SavedState that scattered() copies (see the header).
interface Hash {
  digest: Uint8Array;
  mode: number;
  size: number;
  mtimeMs: number;
  ino: number;
}
interface Step {
  inp: string[];
  out: string[];
  fingerprint: { digest: Uint8Array; inpDigest: Uint8Array; inputs: Array<[string, Uint8Array]>; env: unknown[]; outputs: Array<[string, Uint8Array]> } | null;
}
/** A Map, or (since 2026-11-26) the store's FileHashes, which has the same methods. */
interface Files extends Iterable<[string, Hash]> {
  get(path: string): Hash | undefined;
  has(path: string): boolean;
  set(path: string, hash: Hash): unknown;
}
interface State {
  files: Files;
  steps: Step[];
}

/** A fresh string with the same contents (not a slice or the same object). */
function freshString(s: string): string {
  return Buffer.from(s, "utf8").toString("utf8");
}

function scattered(state: State, keep: unknown[]): State {
  // The same kind of table as the tested tsup loads.
  const files = new (state.files.constructor as new () => Files)();
  const copyHash = (path: string): void => {
    const h = state.files.get(path);
    if (h === undefined || files.has(path)) return;
    files.set(freshString(path), { ...h, digest: Uint8Array.from(h.digest) });
  };
  const steps = state.steps.map((s) => {
    // What a director keeps per step besides its record: about 1 KB in a dozen objects.
    keep.push(Array.from({ length: 12 }, (_, k) => ({ k, name: `node ${k}`, list: [k, k + 1, k + 2] })));
    for (const p of s.inp) copyHash(p);
    for (const p of s.out) copyHash(p);
    const fp = s.fingerprint;
    return {
      ...s,
      inp: s.inp.map(freshString),
      out: s.out.map(freshString),
      fingerprint:
        fp === null
          ? null
          : {
              ...fp,
              digest: Uint8Array.from(fp.digest),
              inpDigest: Uint8Array.from(fp.inpDigest),
              inputs: fp.inputs.map(([p, h]): [string, Uint8Array] => [freshString(p), Uint8Array.from(h)]),
              outputs: fp.outputs.map(([p, h]): [string, Uint8Array] => [freshString(p), Uint8Array.from(h)]),
            },
    };
  });
  for (const [p] of state.files) copyHash(p);
  return { files, steps };
}
