// The one closed union of things that happen during a tsup session. Reporters (plain lines, the
// terminal UI, JSON) see nothing else, so everything a user can be shown must be expressible here.
// Pure data: no I/O, no imports from the rest of tsup.

/** A titled block of text shown under a line (step output, explanations, pending details). */
export interface Page {
  title: string;
  text: string;
}

/** How a step is named in reports: its command, plus the workdir when it is not the root. */
export interface StepRef {
  key: string;
  command: string;
  workdir: string;
  pool?: string | undefined;
}

export type StepCounts = {
  /** Steps that are mandatory (or implied) and known so far. */
  total: number;
  /** Executed with success in this phase (skipped steps are counted in `skipped` only). */
  succeeded: number;
  skipped: number;
  failed: number;
  running: number;
  /** Waiting for inputs or for a free worker / pool slot. */
  pending: number;
};

export type PoolUsage = { name: string; size: number; running: number; queued: number };

export type TsupEvent =
  | { kind: "director"; message: string }
  | { kind: "workflow"; message: string; pages?: Page[] }
  | { kind: "phase"; phase: "run" | "watch" }
  | { kind: "start"; step: StepRef; time: number }
  | { kind: "skip"; step: StepRef; pages: Page[] }
  | { kind: "noskip"; step: StepRef; pages: Page[] }
  | {
      kind: "finish";
      step: StepRef;
      outcome: "success" | "fail" | "reschedule";
      pages: Page[];
      durationMs: number;
    }
  | { kind: "clean"; path: string }
  | { kind: "warning"; message: string; pages?: Page[] }
  | { kind: "error"; message: string; pages?: Page[] }
  | { kind: "updated" | "deleted"; path: string }
  | { kind: "keyboard"; message: string; pages?: Page[] }
  | { kind: "progress"; counts: StepCounts; pools: PoolUsage[]; workers: number };

/** The upper-case word in front of the `│` of a report line. */
export type Action =
  | "DIRECTOR"
  | "WORKFLOW"
  | "PHASE"
  | "START"
  | "SUCCESS"
  | "FAIL"
  | "SKIP"
  | "NOSKIP"
  | "RESCHEDULE"
  | "CLEAN"
  | "WARNING"
  | "ERROR"
  | "UPDATED"
  | "DELETED"
  | "KEYBOARD";

export interface EventSink {
  emit(event: TsupEvent): void;
}

/** Describe a step the way every report line does: `cmd` or `cmd  # wd=sub/`. */
export function describeStep(step: Pick<StepRef, "command" | "workdir">): string {
  return step.workdir === "./" ? step.command : `${step.command}  # wd=${step.workdir}`;
}

export function unreachable(value: never): never {
  throw new Error(`unreachable: ${JSON.stringify(value)}`);
}
