// The end of a run phase: report what failed or is still pending, clean outputs of steps that
// left the plan (only after a complete build), and turn the session into the state to save.
import { rmdirSync, unlinkSync } from "node:fs";
import { describeStep, type EventSink, type Page } from "../events.js";
import { isDirPath } from "../paths.js";
import { hashPath, sameContent } from "../state/filehash.js";
import type { Fingerprint, SavedState, SavedStep } from "../state/types.js";
import { visitStamp, type FileNode, type StepNode } from "../workflow/graph.js";
import type { Session } from "./session.js";
import { sourcePaths } from "./skip.js";

/** A pending report lists at most this many steps in detail; a summary line covers the rest. */
const MAX_PENDING_PAGES = 20;

export interface PhaseSummary {
  ran: number;
  skipped: number;
  failedSteps: number;
  failedPlans: number;
  pending: number;
  complete: boolean;
}

/** Why a phase ended before everything ran, if it did: shown instead of a pending report. */
export type StopReason = "interrupted" | "drained" | "shutting down";

export function summarize(session: Session, sink: EventSink, stopped: StopReason | undefined): PhaseSummary {
  let failedSteps = 0;
  let failedPlans = 0;
  const pending: StepNode[] = [];
  for (const step of session.graph.steps.values()) {
    if (step.state === "failed") {
      if (step.isPlan) failedPlans++;
      else failedSteps++;
    } else if (step.state !== "succeeded" && step.mandatory !== "no") {
      pending.push(step);
    }
  }
  const failed = failedSteps + failedPlans;
  if (failed > 0) {
    sink.emit({ kind: "warning", message: `${failed} step${failed === 1 ? "" : "s"} failed, see error messages above` });
  }
  if (pending.length > 0) {
    const lead = pending.length === 1 ? "1 step remains" : `${pending.length} steps remain`;
    if (stopped) {
      const why = stopped === "interrupted" ? "the run was interrupted" : stopped === "drained" ? "the run was drained" : "tsup is shutting down";
      sink.emit({ kind: "warning", message: `${lead} pending because ${why}` });
    } else {
      const blocked = pending.filter((s) => s.def.block);
      if (blocked.length > 0) {
        sink.emit({
          kind: "warning",
          message: `${lead} pending due to blocked steps`,
          pages: [{ title: "Blocked steps", text: listCapped(blocked.map((s) => describeStep(s.def)), "blocked steps") }],
        });
      } else {
        const shown = pending.slice(0, MAX_PENDING_PAGES).map((s) => pendingPage(s));
        if (pending.length > MAX_PENDING_PAGES) {
          shown.push({ title: "More", text: `... and ${pending.length - MAX_PENDING_PAGES} more pending steps` });
        }
        sink.emit({ kind: "warning", message: `${lead} pending due to incomplete requirements`, pages: shown });
      }
    }
  }
  return {
    ran: session.counts.ran,
    skipped: session.counts.skipped,
    failedSteps,
    failedPlans,
    pending: pending.length,
    complete: failed === 0 && pending.length === 0 && !stopped && !session.internalError,
  };
}

function listCapped(lines: string[], what: string): string {
  if (lines.length <= MAX_PENDING_PAGES) return lines.join("\n");
  return [...lines.slice(0, MAX_PENDING_PAGES), `... and ${lines.length - MAX_PENDING_PAGES} more ${what}`].join("\n");
}

function fileLine(label: string, file: FileNode): string {
  let shown = file.path;
  let note = "";
  if (file.absent) {
    const by = file.declarer ? file.declarer.def.command : "the root";
    return `${label.padEnd(12)}${"MISSING".padStart(8)}  ${file.path}  declared static by ${by}, but it does not exist`;
  }
  if (file.state === "pending" && !file.producer) {
    shown = `(${file.path})`;
    note = isDirPath(file.path)
      ? "  not declared static and not built by any step"
      : "  not declared static and not an output of any step";
  } else if (file.state === "pending" && file.producer?.state === "failed") {
    note = "  its step failed";
  }
  return `${label.padEnd(12)}${file.state.toUpperCase().padStart(8)}  ${shown}${note}`;
}

function pendingPage(step: StepNode): Page {
  const lines = [`Command               ${step.def.command}`, `Working directory     ${step.def.workdir}`];
  step.requires.forEach((f, i) => lines.push(fileLine(i === 0 ? "Inputs" : "", f)));
  step.outputs.forEach((f, i) => lines.push(fileLine(i === 0 ? "Outputs" : "", f)));
  step.volatiles.forEach((f, i) => lines.push(fileLine(i === 0 && step.outputs.length === 0 ? "Outputs" : "", f)));
  return { title: "Pending step", text: lines.join("\n") };
}

/**
 * Outputs that no live step produces any more: outputs of old records that were not defined
 * again, and of optional steps nobody needed. Deleted only if their content is still what tsup
 * built; volatile files always; directories only when empty. Returns the paths kept because they
 * were modified by hand.
 */
export function cleanObsoleteOutputs(session: Session, sink: EventSink): void {
  const live = session.graph.files;
  const candidates = new Set<string>();
  const volatile = new Set<string>();
  const liveOf = session.liveStepsOfRecords();
  for (let i = 0; i < session.oldSteps.length; i++) {
    const record = session.oldSteps[i]!;
    const step = liveOf[i];
    if (step && step.mandatory !== "no") continue;
    for (const p of record.out) candidates.add(p);
    for (const p of record.amended?.out ?? []) candidates.add(p);
    for (const p of [...record.vol, ...(record.amended?.vol ?? [])]) {
      candidates.add(p);
      volatile.add(p);
    }
  }
  for (const step of session.graph.steps.values()) {
    if (step.mandatory !== "no") continue;
    for (const f of step.outputs) candidates.add(f.path);
    for (const f of step.volatiles) {
      candidates.add(f.path);
      volatile.add(f.path);
    }
  }
  const kept: string[] = [];
  // Reverse order: a directory's contents come before the directory itself.
  for (const path of [...candidates].sort().reverse()) {
    const node = live.get(path);
    if (node && (node.state === "static" || (node.producer && node.producer.mandatory !== "no"))) continue;
    const abs = session.files.abs(path);
    if (isDirPath(path)) {
      try {
        rmdirSync(abs);
        sink.emit({ kind: "clean", path });
      } catch {
        // Missing or not empty: both mean there is nothing of ours to remove.
      }
      continue;
    }
    const known = session.files.known(path);
    const now = hashPath(abs, false, known);
    if (now.kind !== "ok") continue;
    if (!volatile.has(path) && (!known || !sameContent(known, now.hash))) {
      kept.push(path);
      continue;
    }
    try {
      unlinkSync(abs);
      session.files.forget(path);
      sink.emit({ kind: "clean", path });
    } catch {
      // Removed meanwhile: fine.
    }
  }
  if (kept.length > 0) {
    sink.emit({
      kind: "warning",
      message: `Kept ${kept.length} obsolete output${kept.length === 1 ? "" : "s"} modified since tsup built ${kept.length === 1 ? "it" : "them"}`,
      pages: [{ title: "Not cleaned", text: kept.join("\n") }],
    });
  }
}

/**
 * The state to save. Live steps come first, in definition order (so creators precede what they
 * defined). After an incomplete build, old records that were not defined again are kept as
 * orphans: their outputs still have to be cleaned one day, and their fingerprints let the steps
 * skip if a later run defines them again.
 *
 * The file table keeps the hashes of the files the saved steps name. With `wholeTable`, it is
 * the session's table as it is, hashes of files that no step names any more included: for a run
 * that may end on the journal alone (see journalCovers), where the table on disk plus the journal
 * is that table anyway. Choosing the files is one lookup per file node, about half of this walk.
 */
export function stateToSave(session: Session, complete: boolean, wholeTable = false): SavedState {
  const steps: SavedStep[] = [];
  const table = session.files.hashes;
  // Usually all the table has, which then is saved as it is.
  const files = wholeTable ? null : table.selection();
  // Live steps name their files through graph nodes: a stamp on the node says "seen", which
  // at 100,000 steps is markedly cheaper than looking up every path.
  const stamp = visitStamp();
  const relevantNode = (f: FileNode): void => {
    if (f.visited === stamp) return;
    f.visited = stamp;
    files!.add(f.path);
  };
  for (const step of session.graph.steps.values()) {
    step.visited = stamp;
    step.visitIndex = steps.length;
    // Creators come first: a creator not met in this walk would be a bug, saved as the root.
    const c = step.creator;
    const creator = c !== null && c.visited === stamp ? c.visitIndex : -1;
    const saved = savedStep(step, creator, session.definedStepsBefore(step));
    steps.push(saved);
    if (files === null) continue;
    // Indexed: for-of allocates in code that runs too rarely to be optimized.
    for (let i = 0; i < step.requires.length; i++) relevantNode(step.requires[i]!);
    for (let i = 0; i < step.outputs.length; i++) relevantNode(step.outputs[i]!);
    // Their hashes are kept too, or every run would hash them afresh and find the state changed.
    const sources = sourcePaths(step, saved.fingerprint);
    for (let i = 0; i < sources.length; i++) files.add(sources[i]!);
  }
  if (!complete) {
    const liveOf = session.liveStepsOfRecords();
    for (let i = 0; i < session.oldSteps.length; i++) {
      const record = session.oldSteps[i]!;
      if (liveOf[i] !== undefined) continue;
      steps.push({ ...record, creator: -1, orphan: true });
      if (files === null) continue;
      for (const p of [...record.inp, ...record.out, ...(record.amended?.inp ?? []), ...(record.amended?.out ?? [])]) {
        files.add(p);
      }
    }
  }
  return { files: files === null ? table : table.selected(files), steps };
}

/** Whether `r` holds exactly what savedStep would make for `step` (without amended information). */
function unchangedRecord(r: SavedStep, step: StepNode, creator: number, fingerprint: Fingerprint | null): boolean {
  const d = step.def;
  const p = step.products;
  return (
    r.amended === null &&
    !r.orphan &&
    r.creator === creator &&
    r.fingerprint === fingerprint &&
    r.command === d.command &&
    r.workdir === d.workdir &&
    r.inp === d.inp &&
    r.out === d.out &&
    r.vol === d.vol &&
    r.env === d.env &&
    r.pool === d.pool &&
    r.optional === d.optional &&
    r.block === d.block &&
    bothEmptyOrSame(r.statics, p.statics) &&
    bothEmptyOrSame(r.pools, p.pools) &&
    bothEmptyOrSame(r.globs, step.globs)
  );
}

function bothEmptyOrSame(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a === b || (a.length === 0 && b.length === 0);
}

/** The record of one live step; also what the journal (persistence.ts) writes when a step succeeds. */
export function savedStep(step: StepNode, creator: number, definedStepsBefore: boolean): SavedStep {
  let fingerprint = null;
  if (step.state === "succeeded") fingerprint = step.fingerprint;
  else if (step.state !== "failed" && step.state !== "running" && step.record?.fingerprint) {
    // Never executed in this session (blocked, waiting on a failed step, interrupted before it
    // started): its last result still holds for its last inputs. A step that defines other steps
    // keeps it only when those definitions were replayed, which did not happen here.
    const declaredSomething =
      definedStepsBefore ||
      step.record.statics.length > 0 ||
      step.record.pools.length > 0 ||
      step.record.globs.length > 0;
    if (!declaredSomething) fingerprint = step.record.fingerprint;
  }
  // Outputs of unneeded optional steps are cleaned, so their fingerprints no longer hold.
  if (step.mandatory === "no") fingerprint = null;
  // Most steps amend nothing: no four sorted copies of empty lists for them.
  const a = step.amended;
  const hasAmended = a.inp.length + a.out.length + a.vol.length + step.amendedEnv.size > 0;
  const amended = hasAmended
    ? { inp: [...a.inp].sort(), out: [...a.out].sort(), vol: [...a.vol].sort(), env: [...step.amendedEnv].sort() }
    : null;
  const r = step.record;
  if (r !== null && amended === null && unchangedRecord(r, step, creator, fingerprint)) {
    // A skipped step usually saves exactly its loaded record: keep that object rather than
    // allocate an equal one (100,000 records at the moment the director's memory peaks).
    return r;
  }
  return {
    command: step.def.command,
    workdir: step.def.workdir,
    creator,
    orphan: false,
    inp: step.def.inp,
    out: step.def.out,
    vol: step.def.vol,
    env: step.def.env,
    pool: step.def.pool,
    optional: step.def.optional,
    block: step.def.block,
    statics: step.products.statics,
    pools: step.products.pools,
    globs: step.globs,
    amended,
    fingerprint,
  };
}
