// Synchronous file-system walk for one compiled pattern. The plan API needs glob results before
// it can continue declaring steps, so this is deliberately sync (no event-loop hand-off).
//
// The walk starts at the pattern's static prefix and tracks, per directory, the set of pattern
// parts that may come next (an NFA state set). That lets "**" be handled without recursion blowup
// or duplicate visits: every directory is read at most once per walk, and a directory is only
// read when some state still needs a listing (literal parts are looked up with a single stat).
// The per-component matchers may over-approximate (they ignore back-references), so every
// candidate is finally confirmed with the pattern's full regex.
import { readdirSync, statSync, type Dirent, type Stats } from "node:fs";
import { join, resolve } from "node:path";
import type { CompiledPattern, PatternPart } from "./pattern.js";

interface Entry {
  name: string;
  isDir: boolean;
}

/** Add the states reachable without consuming a component ("**" may match zero directories). */
function closure(parts: readonly PatternPart[], states: Iterable<number>): number[] {
  const result = new Set<number>();
  for (let i of states) {
    result.add(i);
    while (parts[i]?.kind === "globstar") result.add(++i);
  }
  return [...result].sort((a, b) => a - b);
}

/** The states after consuming one entry named `name`. */
function advance(parts: readonly PatternPart[], states: readonly number[], entry: Entry): number[] {
  const next: number[] = [];
  for (const i of states) {
    const part = parts[i];
    if (part === undefined) continue;
    if (part.kind === "globstar") {
      // A "**" in the middle only passes through directories; as the last part it also takes
      // files (everything below the directory matches).
      if (entry.isDir || i === parts.length - 1) next.push(i);
    } else if (part.kind === "literal" ? part.name === entry.name : part.test(entry.name)) {
      next.push(i + 1);
    }
  }
  return closure(parts, next);
}

/** Follows symlinks; undefined when the path does not exist (or is a dangling link). */
function statOrUndefined(absPath: string): Stats | undefined {
  try {
    return statSync(absPath, { throwIfNoEntry: false });
  } catch {
    // ENOTDIR, EACCES, ELOOP...: for globbing purposes the path is simply not there.
    return undefined;
  }
}

function listEntries(absDir: string): Entry[] {
  let dirents: Dirent[];
  try {
    dirents = readdirSync(absDir, { withFileTypes: true });
  } catch {
    // Unreadable or vanished while walking: nothing in it can be matched.
    return [];
  }
  return dirents.map((d) => {
    let isDir = d.isDirectory();
    // A symlink to a directory is reported as a directory (it behaves like one for every tool);
    // a dangling link stays a file, like Python's glob lists it.
    if (d.isSymbolicLink()) isDir = statOrUndefined(join(absDir, d.name))?.isDirectory() ?? false;
    return { name: d.name, isDir };
  });
}

/**
 * All existing paths matched by `pattern`, sorted, in the pattern's own form: root-relative
 * (possibly starting with "../") or absolute, directories with a trailing "/". `root` is the
 * absolute project root that relative patterns are resolved against. Hidden entries are included.
 */
export function globFiles(root: string, pattern: CompiledPattern): string[] {
  const { parts, staticPrefix } = pattern;
  const relStart = staticPrefix === "./" ? "" : staticPrefix;
  const absStart = resolve(root, staticPrefix);
  const startStat = statOrUndefined(absStart);
  if (startStat === undefined || !startStat.isDirectory()) return [];

  const candidates: string[] = [];
  const initial = closure(parts, [0]);
  // The prefix directory itself matches when the rest can match nothing ("data/**", "/").
  if (initial.includes(parts.length)) candidates.push(staticPrefix);

  // Directory identities on the current descent chain: a symlink back to an ancestor would
  // otherwise make "**" loop forever. Distinct links to one directory are each walked (their
  // paths differ), just like real tools see them.
  const ancestors = new Set<string>();
  const visit = (absDir: string, relDir: string, states: readonly number[], id: string): void => {
    ancestors.add(id);
    const needsListing = states.some((i) => parts[i] !== undefined && parts[i]!.kind !== "literal");
    let entries: Entry[];
    if (needsListing) {
      entries = listEntries(absDir);
    } else {
      // Only literal names can follow: stat them instead of reading a possibly huge directory.
      entries = [];
      for (const i of states) {
        const part = parts[i];
        if (part?.kind !== "literal") continue;
        const st = statOrUndefined(join(absDir, part.name));
        if (st !== undefined) entries.push({ name: part.name, isDir: st.isDirectory() });
      }
    }
    for (const entry of entries) {
      const next = advance(parts, states, entry);
      if (next.length === 0) continue;
      const rel = relDir + entry.name + (entry.isDir ? "/" : "");
      if (next.includes(parts.length)) candidates.push(rel);
      if (!entry.isDir || !next.some((i) => i < parts.length)) continue;
      const absChild = join(absDir, entry.name);
      const st = statOrUndefined(absChild);
      if (st === undefined) continue;
      const childId = `${st.dev}:${st.ino}`;
      // Only a "**" can revisit an ancestor endlessly; other parts bound the depth, so a link
      // like "loop/self" is still followed by "loop/*/f.txt".
      if (ancestors.has(childId) && next.some((i) => parts[i]?.kind === "globstar")) continue;
      visit(absChild, rel, next, childId);
    }
    ancestors.delete(id);
  };
  if (initial.some((i) => i < parts.length)) visit(absStart, relStart, initial, `${startStat.dev}:${startStat.ino}`);

  // The full regex settles back-references, "." / ".." exclusions and the file/directory rule.
  const matched = new Set(candidates.filter((p) => pattern.match(p) !== undefined));
  return [...matched].sort();
}
