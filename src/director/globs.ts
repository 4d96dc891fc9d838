// A step that called glob() saw a set of files; if the same patterns now match other files, the
// step must run again even though none of its declared inputs changed (a new data file appeared).
import { globMulti } from "../glob/multi.js";
import { joinWorkdir } from "../paths.js";
import type { StepNode } from "../workflow/graph.js";
import type { FileTable } from "./files.js";

/** Why the step's globs no longer match what they matched, or undefined when nothing changed. */
export function globChanged(step: StepNode, files: FileTable): string | undefined {
  const globs = step.record?.globs;
  // Asked for every skip check; most steps have no globs (and an empty for-of still allocates).
  if (globs === undefined || globs.length === 0) return undefined;
  for (const glob of globs) {
    // A deferred glob matches nothing up front: what its matches are used for is checked by
    // the fingerprints of the steps that use them.
    if (glob.deferred) continue;
    let now: string[];
    try {
      now = globMulti(files.abs(glob.workdir), glob.patterns, glob.subs)
        .files()
        .map((p) => joinWorkdir(glob.workdir, p));
    } catch (err) {
      return `${"Glob failed".padEnd(20)} ${glob.patterns.join(" ")}: ${(err as Error).message}`;
    }
    const before = new Set(glob.matches);
    const added = now.filter((p) => !before.has(p));
    const nowSet = new Set(now);
    const removed = glob.matches.filter((p) => !nowSet.has(p));
    if (added.length > 0 || removed.length > 0) {
      const parts = [...added.map((p) => `+${p}`), ...removed.map((p) => `-${p}`)];
      return `${"Glob matches changed".padEnd(20)} ${glob.patterns.join(" ")}: ${parts.join(" ")}`;
    }
  }
  return undefined;
}
