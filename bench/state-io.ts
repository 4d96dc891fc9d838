// Times loadState and saveState of the tsup under test on an existing .stepup folder. The
// benchmark suite runs this once per repetition, each in a fresh process, because the director
// also loads the state exactly once, in a young process. tsup itself does not print these times.
//
// Usage: node --import tsx bench/state-io.ts <dist/state/store.js> <.stepup folder> [heap copies] [--scatter] [--gc]
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
// Fingerprint hashes are copied into the tested tsup's slabs (keptBytes), as the director's are;
// before 2026-11-27 each was copied into an array of its own, which made saves of the old
// fingerprint layout slower than a director's.
//
// With --gc (node must run with --expose-gc), garbage is collected before each save. Without it,
// whether a major collection falls into the first save depends on how much the run allocated
// before (in a heap of 500-700 MB it takes 0.3-0.6 s), which makes saveS bimodal: --gc times the
// save's own work.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
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
const collect = args.includes("--gc");
const [storeJs, stepupDir, copiesArg] = args.filter((a) => a !== "--scatter" && a !== "--gc");
const gc = (globalThis as { gc?: () => void }).gc;
if (collect && gc === undefined) {
  console.error("state-io.ts: --gc needs node --expose-gc");
  process.exit(2);
}
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
  const state = scatter ? scattered(loaded.state as State, kept, await loadKeptBytes(storeJs)) : loaded.state;
  if (collect) gc!();
  const t1b = performance.now();
  await store.saveState(target, state);
  const t2 = performance.now();
  const saveS = (t2 - t1b) / 1000;
  // A second save shows how much of the first was warm-up (code compiled on first use).
  if (collect) gc!();
  const t2b = performance.now();
  await store.saveState(target, state);
  const t3 = performance.now();
  const bytes = statSync(join(target, store.STATE_FILE)).size;
  console.log(JSON.stringify({ loadS: (t1 - t0) / 1000, saveS, saveAgainS: (t3 - t2b) / 1000, bytes, heapCopies: copies, scatter, gc: collect }));
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
/** A fingerprint as saved since 2026-11-27: all its hashes in one array. */
interface CompactFingerprint {
  bytes: Uint8Array;
  inputs: string[];
  env: unknown[];
  outputs: string[];
}
/** A fingerprint as saved before: each hash an array of its own. */
interface SplitFingerprint {
  digest: Uint8Array;
  inpDigest: Uint8Array;
  inputs: Array<[string, Uint8Array]>;
  env: unknown[];
  outputs: Array<[string, Uint8Array]>;
}
interface Step {
  inp: string[];
  out: string[];
  fingerprint: CompactFingerprint | SplitFingerprint | null;
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

type KeptBytes = (b: Uint8Array) => Uint8Array;

/**
 * The tested tsup's keptBytes, when it has one (since 2026-11-26): the director moves the hashes
 * of every fingerprint it computes into shared slabs, and so does scattered().
 */
async function loadKeptBytes(storeJs: string): Promise<KeptBytes> {
  try {
    const types = (await import(pathToFileURL(join(dirname(storeJs), "types.js")).href)) as { keptBytes?: KeptBytes };
    if (typeof types.keptBytes === "function") return types.keptBytes;
  } catch {
    // An older tsup: hashes stay in arrays of their own.
  }
  return (b) => b;
}

/** A copy of `fp` made the way the director makes one (see skip.ts, fingerprintOf). */
function scatteredFingerprint(fp: CompactFingerprint | SplitFingerprint, keptBytes: KeptBytes): CompactFingerprint | SplitFingerprint {
  const kept = (b: Uint8Array): Uint8Array => keptBytes(Uint8Array.from(b));
  if ("bytes" in fp) return { ...fp, bytes: kept(fp.bytes), inputs: fp.inputs.map(freshString), outputs: fp.outputs.map(freshString) };
  return {
    ...fp,
    digest: kept(fp.digest),
    inpDigest: kept(fp.inpDigest),
    inputs: fp.inputs.map(([p, h]): [string, Uint8Array] => [freshString(p), kept(h)]),
    outputs: fp.outputs.map(([p, h]): [string, Uint8Array] => [freshString(p), kept(h)]),
  };
}

function scattered(state: State, keep: unknown[], keptBytes: KeptBytes): State {
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
      fingerprint: fp === null ? null : scatteredFingerprint(fp, keptBytes),
    };
  });
  for (const [p] of state.files) copyHash(p);
  return { files, steps };
}
