// Where in the user's plan a declaration was made, so that every error can say `plan.ts:12:5`.
// The stack is captured when the API function is called but only formatted (the expensive part,
// with source maps) when an error actually has to be reported.
import { relative } from "node:path";
import { fileURLToPath } from "node:url";

export interface CallSite {
  stack?: string;
}

/** Capture the caller of `fn` (an exported API function). Cheap: no formatting happens here. */
export function captureSite(fn: Function): CallSite {
  const site: CallSite = {};
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 4;
  Error.captureStackTrace(site, fn);
  Error.stackTraceLimit = limit;
  return site;
}

/** `plan.ts:12:5`, relative to `base` when the file lies below it. */
export function formatSite(site: CallSite, base: string): string {
  const stack = site.stack ?? "";
  for (const line of stack.split("\n").slice(1)) {
    const match = /\(?((?:file:\/\/)?\/[^():]+|[A-Za-z]:[^():]+):(\d+):(\d+)\)?\s*$/.exec(line.trim());
    if (!match) continue;
    let file = match[1]!;
    if (file.startsWith("file://")) file = fileURLToPath(file);
    const rel = relative(base, file);
    return `${rel.startsWith("..") ? file : rel}:${match[2]}:${match[3]}`;
  }
  return "plan";
}

/** An error in how the plan uses the API: reported as `file:line:col: error: message`. */
export class PlanError extends Error {
  constructor(
    message: string,
    readonly site: CallSite,
  ) {
    super(message);
    this.name = "PlanError";
  }
}
