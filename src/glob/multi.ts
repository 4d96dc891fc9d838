// Several named-glob patterns evaluated together (StepUp's NGlobMulti). The named values must be
// consistent across the patterns: `glob("data/${*n}.csv", "plots/${*n}.png")` pairs every csv with
// the png of the same name, and a name with only one half present is not a result. Results are
// built from plain path lists, so the same code serves the plan API (paths from a file-system
// walk), step-info filters (paths from a step's declared lists) and the watcher (one path at a time).
import { compilePattern, type CompiledPattern } from "./pattern.js";
import { globFiles } from "./walk.js";

/**
 * The named wildcards used in a pattern type, e.g. "name" for "data/${*name}.csv". Falls back to
 * `string` for non-literal patterns, so typed code still compiles when patterns are computed.
 */
export type NamedWildcards<P extends string> = string extends P
  ? string
  : P extends `${string}\${*${infer Name}}${infer Rest}`
    ? Name | NamedWildcards<Rest>
    : never;

/** What iterating a result yields: matches when names are used, else plain paths. */
export type GlobItem<N extends string> = [N] extends [never]
  ? string
  : string extends N
    ? GlobMatch | string
    : GlobMatch<N>;

/** One consistent combination of named values, with the paths each pattern matched for it. */
export interface GlobMatch<N extends string = string> {
  /** The named values, e.g. `m.values.name`. */
  readonly values: Readonly<Record<N, string>>;
  /** Per pattern (in the order given), the sorted paths matched with these values. */
  readonly files: readonly (readonly string[])[];
  /** The one path pattern `i` matched for these values; throws unless there is exactly one. */
  file(i?: number): string;
}

type Values = Record<string, string>;

class Match<N extends string> implements GlobMatch<N> {
  constructor(
    readonly values: Readonly<Record<N, string>>,
    readonly files: readonly (readonly string[])[],
    private readonly patterns: readonly string[],
  ) {}

  file(i = 0): string {
    const files = this.files[i];
    if (files === undefined) {
      throw new Error(`Glob match has no pattern ${i} (there are ${this.files.length} patterns)`);
    }
    if (files.length !== 1) {
      throw new Error(
        `Expected exactly one file for pattern ${JSON.stringify(this.patterns[i])} with ` +
          `${JSON.stringify(this.values)}, found ${files.length}: ${JSON.stringify(files)}`,
      );
    }
    return files[0]!;
  }
}

function compareValues(names: readonly string[], a: Values, b: Values): number {
  for (const name of names) {
    const x = a[name]!;
    const y = b[name]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function sortedUnion(lists: Iterable<readonly string[]>): string[] {
  const all = new Set<string>();
  for (const list of lists) for (const p of list) all.add(p);
  return [...all].sort();
}

/** The outcome of one multi-pattern glob. Immutable. */
export class GlobResult<N extends string = string> implements Iterable<GlobItem<N>> {
  /** The normalized patterns, in the order given. */
  readonly patterns: readonly string[];
  /** All named wildcards over all patterns, sorted. */
  readonly names: readonly string[];
  private readonly compiled: readonly CompiledPattern[];
  private readonly perPattern: readonly (readonly string[])[];
  private readonly combos: readonly Match<N>[];

  /**
   * `perPattern[i]` holds candidate paths for pattern `i`; paths it does not match are dropped,
   * so any superset (even the same list for every pattern) is fine.
   */
  constructor(compiled: readonly CompiledPattern[], perPattern: readonly (readonly string[])[]) {
    if (compiled.length !== perPattern.length) throw new Error("GlobResult: one path list per pattern is required");
    this.compiled = compiled;
    this.patterns = compiled.map((c) => c.pattern);
    this.names = [...new Set(compiled.flatMap((c) => c.names))].sort();

    // Group each pattern's matches by the values of that pattern's own names.
    const grouped = compiled.map((c, i) => {
      const groups = new Map<string, { values: Values; files: string[] }>();
      for (const path of [...new Set(perPattern[i])].sort()) {
        const values = c.match(path);
        if (values === undefined) continue;
        const key = JSON.stringify(c.names.map((n) => values[n]));
        const group = groups.get(key);
        if (group === undefined) groups.set(key, { values, files: [path] });
        else group.files.push(path);
      }
      return groups;
    });
    this.perPattern = grouped.map((groups) => sortedUnion([...groups.values()].map((g) => g.files)));

    // Natural join of the per-pattern groups on shared names. Every partial combination has all
    // names of the patterns seen so far, so the shared names are fixed per pattern and a hash
    // index on them avoids comparing every pair.
    type Combo = { values: Values; files: (readonly string[])[] };
    let partials: Combo[] = [{ values: {}, files: [] }];
    const assigned = new Set<string>();
    compiled.forEach((c, i) => {
      const shared = c.names.filter((n) => assigned.has(n));
      const index = new Map<string, { values: Values; files: string[] }[]>();
      for (const group of grouped[i]!.values()) {
        const key = JSON.stringify(shared.map((n) => group.values[n]));
        const bucket = index.get(key);
        if (bucket === undefined) index.set(key, [group]);
        else bucket.push(group);
      }
      const next: Combo[] = [];
      for (const partial of partials) {
        for (const group of index.get(JSON.stringify(shared.map((n) => partial.values[n]))) ?? []) {
          next.push({ values: { ...partial.values, ...group.values }, files: [...partial.files, group.files] });
        }
      }
      partials = next;
      for (const n of c.names) assigned.add(n);
    });
    const names = this.names;
    this.combos = partials
      .map((p) => {
        const values = Object.fromEntries(names.map((n) => [n, p.values[n]!])) as Record<N, string>;
        return new Match<N>(values, p.files, this.patterns);
      })
      .sort((a, b) => compareValues(names, a.values, b.values));
  }

  /** The consistent combinations, sorted by their values (in name order). */
  matches(): GlobMatch<N>[] {
    return [...this.combos];
  }

  /**
   * Sorted union of every path matched by any single pattern, consistent or not: StepUp declares
   * all of these static, and the watcher must notice when any of them changes.
   */
  files(): string[] {
    return sortedUnion(this.perPattern);
  }

  /** Sorted paths pattern `i` matched on its own (consistency not required). */
  filesOf(i: number): string[] {
    const files = this.perPattern[i];
    if (files === undefined) throw new Error(`Glob has no pattern ${i} (there are ${this.patterns.length} patterns)`);
    return [...files];
  }

  /** Sorted union of the paths that belong to at least one consistent combination. */
  consistentFiles(): string[] {
    return sortedUnion(this.combos.flatMap((m) => m.files));
  }

  /** The number of items iteration yields: combinations with names, else consistent paths. */
  get length(): number {
    return this.names.length > 0 ? this.combos.length : this.consistentFiles().length;
  }

  /** True when nothing consistent matched; `if (!glob(...).isEmpty())` is the StepUp `if glob(...)`. */
  isEmpty(): boolean {
    return this.combos.length === 0;
  }

  /** The only consistent path; throws when there are none or several. */
  single(): string {
    const files = this.consistentFiles();
    if (files.length !== 1) {
      const list = this.patterns.map((p) => JSON.stringify(p)).join(", ");
      throw new Error(
        `Expected exactly one file matching glob ${list}, found ${files.length}` +
          (files.length > 0 ? `: ${JSON.stringify(files)}` : ""),
      );
    }
    return files[0]!;
  }

  /** True when `path` matches at least one of the patterns (the watcher's relevance test). */
  mayMatch(path: string): boolean {
    return this.compiled.some((c) => c.match(path) !== undefined);
  }

  *[Symbol.iterator](): Iterator<GlobItem<N>> {
    if (this.names.length > 0) {
      for (const m of this.combos) yield m as unknown as GlobItem<N>;
    } else {
      for (const p of this.consistentFiles()) yield p as unknown as GlobItem<N>;
    }
  }
}

/**
 * Compile a pattern list with shared `subs`. A `subs` entry no pattern uses is an error: it is
 * almost always a typo, and silently ignoring it would widen the glob.
 */
export function compilePatterns(
  patterns: readonly string[],
  subs?: Readonly<Record<string, string>>,
): CompiledPattern[] {
  if (patterns.length === 0) throw new Error("At least one pattern is required for glob.");
  const compiled = patterns.map((p) => compilePattern(p, subs));
  if (subs !== undefined) {
    const used = new Set(compiled.flatMap((c) => c.names));
    for (const name of Object.keys(subs)) {
      if (!used.has(name)) {
        throw new Error(
          `Substitution for "${name}" does not match a named wildcard in glob ` +
            patterns.map((p) => JSON.stringify(p)).join(", "),
        );
      }
    }
  }
  return compiled;
}

/** Glob the file system under `root` (absolute) with named-value consistency across patterns. */
export function globMulti<const P extends readonly string[]>(
  root: string,
  patterns: P,
  subs?: Readonly<Record<string, string>>,
): GlobResult<NamedWildcards<P[number]>> {
  const compiled = compilePatterns(patterns, subs);
  return new GlobResult(compiled, compiled.map((c) => globFiles(root, c)));
}

/** Like globMulti, but matches a given list of paths instead of the file system. */
export function globPaths<const P extends readonly string[]>(
  patterns: P,
  paths: Iterable<string>,
  subs?: Readonly<Record<string, string>>,
): GlobResult<NamedWildcards<P[number]>> {
  const compiled = compilePatterns(patterns, subs);
  const list = [...paths];
  return new GlobResult(compiled, compiled.map(() => list));
}

/**
 * Whether `path` could be matched by any of the patterns (compiled ones are reused as they are).
 * Consistency is not considered: a path matching one pattern can complete a combination later.
 */
export function matchPath(
  patterns: readonly (string | CompiledPattern)[],
  path: string,
  subs?: Readonly<Record<string, string>>,
): boolean {
  return patterns.some((p) => (typeof p === "string" ? compilePattern(p, subs) : p).match(path) !== undefined);
}
