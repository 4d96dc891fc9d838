// Exit statuses, documented in docs/reference/cli.md. When several apply, the most severe wins:
// internal error, then a failed plan, then a failed step, then pending steps.
import type { PhaseSummary } from "../director/finalize.js";

export const EXIT = {
  ok: 0,
  internal: 1,
  usage: 2,
  planFailed: 3,
  stepFailed: 4,
  pending: 5,
  interrupted: 130,
  terminated: 143,
} as const;

export function exitCodeFor(summary: PhaseSummary, internalError: boolean): number {
  if (internalError) return EXIT.internal;
  if (summary.failedPlans > 0) return EXIT.planFailed;
  if (summary.failedSteps > 0) return EXIT.stepFailed;
  if (summary.pending > 0) return EXIT.pending;
  return EXIT.ok;
}
