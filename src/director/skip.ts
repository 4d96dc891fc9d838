// Deciding whether a step can be skipped: recompute its fingerprint from the files and env vars
// as they are now and compare with the one recorded after its last successful run. This runs in
// the director, synchronously: thanks to the stat shortcut a no-op check is a few stat() calls.
import type { Page } from "../events.js";
import { computeFingerprint, explainChanges, matchesDigest, type FingerprintArgs } from "../state/fingerprint.js";
import { keepFingerprint, NO_ENV, type FileHash, type Fingerprint } from "../state/types.js";
import type { StepNode } from "../workflow/graph.js";
import type { FileTable } from "./files.js";

export type SkipVerdict =
  | { skip: true }
  | { skip: false; reasons: string[]; same: string[] };

/** Fingerprint a step from hashes already computed (after it ran, or during a skip check). */
export function fingerprintOf(
  step: StepNode,
  env: string[],
  values: NodeJS.ProcessEnv,
  inputs: Array<[string, FileHash]>,
  outputs: Array<[string, FileHash]>,
): Fingerprint {
  // Kept until the end of the session (and saved): its bytes go into a slab, not a buffer per step.
  return keepFingerprint(computeFingerprint(fingerprintArgs(step, env, values, inputs, outputs)));
}

function fingerprintArgs(
  step: StepNode,
  env: string[],
  values: NodeJS.ProcessEnv,
  inputs: Array<[string, FileHash]>,
  outputs: Array<[string, FileHash]>,
): FingerprintArgs {
  // No new empty list per skip check for the many steps without env vars.
  const pairs = env.length === 0 ? NO_ENV : env.map((name): [string, string | null] => [name, values[name] ?? null]);
  return { key: step.key, inputs, env: pairs, outputs };
}

export function checkSkip(
  step: StepNode,
  env: string[],
  values: NodeJS.ProcessEnv,
  files: FileTable,
  /** Why the step's globs now match other files, or undefined when they match the same. */
  globChange: (step: StepNode) => string | undefined,
): SkipVerdict {
  const record = step.record;
  if (!record?.fingerprint) {
    return { skip: false, reasons: [record ? line("No fingerprint", "the previous run of this step did not succeed") : line("New step", "no earlier run recorded")], same: [] };
  }
  const reasons: string[] = [];
  const globReason = globChange(step);
  if (globReason) reasons.push(globReason);
  // Indexed loops: for-of allocates in code not yet optimized, and this runs once per step.
  const inputs: Array<[string, FileHash]> = [];
  for (let i = 0; i < step.requires.length; i++) {
    const file = step.requires[i]!;
    const outcome = files.hash(file.path);
    if (outcome.kind !== "ok") reasons.push(line("Unusable input", `${file.path} (${outcome.kind === "missing" ? "missing" : outcome.message})`));
    else inputs.push([file.path, outcome.hash]);
  }
  const outputs: Array<[string, FileHash]> = [];
  for (let i = 0; i < step.outputs.length; i++) {
    const file = step.outputs[i]!;
    const outcome = files.hash(file.path);
    if (outcome.kind !== "ok") reasons.push(line("Missing output", file.path));
    else outputs.push([file.path, outcome.hash]);
  }
  if (inputs.length < step.requires.length || outputs.length < step.outputs.length) {
    return { skip: false, reasons, same: [] };
  }
  // Hashed again like inputs, so that a changed or deleted one makes the step run again.
  const sources = sourcePaths(step, record.fingerprint);
  for (let i = 0; i < sources.length; i++) {
    const path = sources[i]!;
    const outcome = files.hash(path);
    if (outcome.kind === "ok") inputs.push([path, outcome.hash]);
    else reasons.push(line("Source file gone", path));
  }
  const args = fingerprintArgs(step, env, values, inputs, outputs);
  if (reasons.length === 0 && matchesDigest(args, record.fingerprint)) {
    step.fingerprint = record.fingerprint;
    return { skip: true };
  }
  // Explain everything that differs, not only the first reason found.
  const { changed, same } = explainChanges(record.fingerprint, computeFingerprint(args));
  return { skip: false, reasons: [...reasons, ...changed], same };
}

/** What sourcePaths returns for nearly every step: one frozen list rather than a new one each. */
const NO_PATHS: readonly string[] = Object.freeze([]);

/**
 * The source files a fingerprint of `step` covers besides the step's own paths: what its
 * TypeScript loader read (modules a plan imported, its tsconfig.json; see Session.resultHashes).
 * They are the fingerprint's inputs that are not among the step's required or output paths.
 * Without any, a fingerprint has exactly one input per required path: that check is all most
 * steps cost.
 */
export function sourcePaths(step: StepNode, fingerprint: Fingerprint | null): readonly string[] {
  if (fingerprint === null || fingerprint.inputs.length <= step.requires.length) return NO_PATHS;
  const own = new Set<string>();
  for (const file of step.requires) own.add(file.path);
  for (const file of step.outputs) own.add(file.path);
  const sources: string[] = [];
  for (const path of fingerprint.inputs) if (!own.has(path)) sources.push(path);
  return sources;
}

export function explainPages(verdict: Extract<SkipVerdict, { skip: false }>): Page[] {
  const pages: Page[] = [{ title: "Changes causing rerun", text: verdict.reasons.join("\n") }];
  if (verdict.same.length > 0) pages.push({ title: "Remained the same", text: verdict.same.join("\n") });
  return pages;
}

function line(label: string, content: string): string {
  return `${label.padEnd(20)} ${content}`;
}
