// Named glob patterns: one pattern compiled into (a) a whole-path regular expression that is the
// single source of truth for "does this path match, and with which named values", and (b) a list
// of per-component matchers after the static prefix, which the file-system walker uses to prune
// directories it never needs to read. Pure string logic: no file-system access here, so the
// watcher can test single paths cheaply.
//
// Syntax (patterns are root-relative or absolute, "/" separated, trailing "/" = directory):
//   *          any run of characters except "/" (possibly empty)
//   ?          exactly one character except "/"
//   [abc]      one character from the set; ranges like [a-z]; "]" first is a literal member
//   [!abc]     one character not in the set (and not "/"); [^abc] is accepted as a synonym
//   **         a whole path component: zero or more directories ("**/x", "a/**/x", "a/**", "**")
//   ${*name}   a named wildcard (name = identifier): like "*" but never empty, or the glob
//              fragment subs[name]; every use of one name in a pattern must match the same text
//
// Choices that differ from (or pin down) StepUp v1.3.1:
//   - Named wildcards never match the empty string (StepUp bug 10, spec §14). This also holds for
//     a substitution: a fragment that could match nothing (like "*") is treated as "?*".
//   - A run of two or more "*" that is not a whole path component (e.g. "a**b", "**.txt") acts as
//     a single "*", like StepUp does; it never crosses "/".
//   - A pattern ending in "/" matches directories only; any other pattern matches files only,
//     except a trailing "**", which matches the directory before it and everything below it
//     (files and directories), so "data/**" gives "data/", "data/sub/", "data/sub/x", ...
//   - Wildcards never match the special components "." and "..", so "*/x" does not match "../x"
//     and "**" does not match "./" or leave the root; a literal ".." in a pattern is fine.
//   - There is no backslash escape (paths are POSIX and "\\" is an ordinary character); use a
//     class like "[*]" to match a literal wildcard character.
import { normPath } from "../paths.js";

/** One step of the walk below the static prefix. */
export type PatternPart =
  /** A component without wildcards: can be looked up with a single stat instead of a listing. */
  | { readonly kind: "literal"; readonly name: string }
  /** A component with wildcards; `test` ignores back-references (the full regex checks them). */
  | { readonly kind: "wild"; readonly test: (name: string) => boolean }
  /** "**": zero or more directories (or, as the last part, anything below). */
  | { readonly kind: "globstar" };

export interface CompiledPattern {
  /** The normalized pattern text. */
  readonly pattern: string;
  /** Distinct named wildcards, sorted (the order StepUp uses for its result keys). */
  readonly names: readonly string[];
  /** Longest leading directory without wildcards ("data/raw/" for "data/raw/*.csv", else "./"). */
  readonly staticPrefix: string;
  readonly hasWildcards: boolean;
  /** True when the pattern ends in "/" and therefore only matches directories. */
  readonly dirOnly: boolean;
  /** The components after `staticPrefix`, for the walker. */
  readonly parts: readonly PatternPart[];
  /** Named values if `path` (normalized, root-relative or absolute) matches, else undefined. */
  match(path: string): Record<string, string> | undefined;
}

type Token =
  | { kind: "lit"; text: string }
  | { kind: "star" }
  | { kind: "one" }
  | { kind: "class"; source: string }
  | { kind: "name"; name: string };

type Component = { kind: "globstar" } | { kind: "segment"; tokens: Token[]; text: string };

const IDENTIFIER = /^[_a-zA-Z][_a-zA-Z0-9]*$/;
/** What "*" inside one component matches. */
const NON_SLASH_ANY = "[^/]*";
/** Guard in front of every wildcard component: "." and ".." are never produced by a wildcard. */
const NOT_DOT_OR_DOTDOT = "(?!\\.\\.?(?:/|$))";
/** One arbitrary (wildcard-matched) path component, as used by "**". */
const ANY_COMPONENT = `${NOT_DOT_OR_DOTDOT}[^/]+`;

function fail(pattern: string, why: string): never {
  throw new Error(`Invalid glob pattern ${JSON.stringify(pattern)}: ${why}`);
}

function escapeRegex(text: string): string {
  // No "-" here: outside a class, a backslash before "-" is a syntax error in "u" mode.
  return text.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}

/** Escape one character for use inside a regex character class (regex in "u" mode). */
function escapeClassChar(ch: string): string {
  return /[\\\]\[^-]/.test(ch) ? `\\${ch}` : ch;
}

/**
 * Parse a character class starting at `chars[start] === "["`. Returns the regex source and the
 * index just after the closing "]".
 */
function parseClass(pattern: string, chars: string[], start: number): { source: string; end: number } {
  let i = start + 1;
  let negated = false;
  if (chars[i] === "!" || chars[i] === "^") {
    negated = true;
    i++;
  }
  const members: string[] = [];
  let first = true;
  for (;;) {
    const ch = chars[i];
    if (ch === undefined) fail(pattern, 'unclosed "[" (a character class cannot span "/")');
    if (ch === "]" && !first) break;
    first = false;
    const dash = chars[i + 1];
    const hi = chars[i + 2];
    if (dash === "-" && hi !== undefined && hi !== "]") {
      // Compare code points, not UTF-16 units, because the regex runs in "u" mode.
      if (ch.codePointAt(0)! > hi.codePointAt(0)!) fail(pattern, `invalid range "${ch}-${hi}" in class`);
      members.push(`${escapeClassChar(ch)}-${escapeClassChar(hi)}`);
      i += 3;
    } else {
      members.push(escapeClassChar(ch));
      i++;
    }
  }
  // "/" is added to a negated class so that no class can ever match a separator.
  return { source: negated ? `[^/${members.join("")}]` : `[${members.join("")}]`, end: i + 1 };
}

/** Split one path component (no "/") into tokens. `allowNames` is false for subs fragments. */
function tokenize(pattern: string, text: string, allowNames: boolean): Token[] {
  const chars = Array.from(text); // code points, so "?" and classes see whole characters
  const tokens: Token[] = [];
  const pushLit = (ch: string): void => {
    const last = tokens[tokens.length - 1];
    if (last?.kind === "lit") last.text += ch;
    else tokens.push({ kind: "lit", text: ch });
  };
  let i = 0;
  while (i < chars.length) {
    const ch = chars[i]!;
    if (ch === "*") {
      // Runs of stars inside a component collapse to one "*" (see the header comment).
      if (tokens[tokens.length - 1]?.kind !== "star") tokens.push({ kind: "star" });
      i++;
    } else if (ch === "?") {
      tokens.push({ kind: "one" });
      i++;
    } else if (ch === "[") {
      const { source, end } = parseClass(pattern, chars, i);
      tokens.push({ kind: "class", source });
      i = end;
    } else if (ch === "$" && chars[i + 1] === "{" && chars[i + 2] === "*") {
      if (!allowNames) fail(pattern, "a substitution cannot contain a named wildcard");
      const close = chars.indexOf("}", i + 3);
      if (close < 0) fail(pattern, 'unclosed "${*" (a named wildcard cannot span "/")');
      const name = chars.slice(i + 3, close).join("");
      if (!IDENTIFIER.test(name)) fail(pattern, `bad wildcard name ${JSON.stringify(name)} (must be an identifier)`);
      tokens.push({ kind: "name", name });
      i = close + 1;
    } else {
      pushLit(ch);
      i++;
    }
  }
  return tokens;
}

function isWild(tokens: readonly Token[]): boolean {
  return tokens.some((t) => t.kind !== "lit");
}

/** Regex source of the fragment a named wildcard stands for (never matches the empty string). */
function fragmentSource(pattern: string, name: string, sub: string | undefined): string {
  if (sub === undefined) return "[^/]+";
  if (sub === "") fail(pattern, `substitution for "${name}" is empty`);
  if (sub.includes("/")) fail(pattern, `substitution for "${name}" (${JSON.stringify(sub)}) contains "/"`);
  const tokens = tokenize(pattern, sub, false);
  // Literals, "?" and classes consume at least one character, so only an all-"*" fragment can
  // match the empty string; it becomes "one or more" instead.
  if (tokens.every((t) => t.kind === "star")) return "[^/]+";
  return tokens.map((t) => tokenSource(t, undefined)).join("");
}

/**
 * Regex source of one token. `names` maps a name to its fragment and tracks which names already
 * have a capture group; when undefined (per-component matchers) names are plain groups.
 */
function tokenSource(
  token: Token,
  names: { fragments: Map<string, string>; seen: Set<string> | undefined } | undefined,
): string {
  switch (token.kind) {
    case "lit":
      return escapeRegex(token.text);
    case "star":
      return NON_SLASH_ANY;
    case "one":
      return "[^/]";
    case "class":
      return token.source;
    case "name": {
      const fragment = names?.fragments.get(token.name) ?? "[^/]+";
      const seen = names?.seen;
      if (seen === undefined) return `(?:${fragment})`;
      if (seen.has(token.name)) return `\\k<${token.name}>`;
      seen.add(token.name);
      return `(?<${token.name}>${fragment})`;
    }
  }
}

function parseComponents(pattern: string, body: string): Component[] {
  if (body === "") return [];
  return body.split("/").map((text): Component => {
    if (text === "") fail(pattern, 'empty path component ("//")');
    if (/^\*{2,}$/.test(text)) return { kind: "globstar" };
    return { kind: "segment", tokens: tokenize(pattern, text, true), text };
  });
}

/**
 * Compile one (root-relative or absolute) pattern. `subs` maps named wildcards to glob fragments
 * replacing their default; entries for names the pattern does not use are ignored, so one `subs`
 * object can serve several patterns.
 */
export function compilePattern(pattern: string, subs?: Readonly<Record<string, string>>): CompiledPattern {
  if (pattern === "") throw new Error("Invalid glob pattern \"\": the pattern is empty");
  const normalized = normPath(pattern);
  const absolute = normalized.startsWith("/");
  const dirOnly = normalized.endsWith("/");
  let body = normalized;
  if (absolute) body = body.slice(1);
  if (dirOnly && body.endsWith("/")) body = body.slice(0, -1);
  const raw = parseComponents(normalized, body);
  // Consecutive "**" components mean the same as one; merging keeps the regex linear.
  const components = raw.filter((c, i) => !(c.kind === "globstar" && raw[i - 1]?.kind === "globstar"));

  const names = new Set<string>();
  for (const c of components) {
    if (c.kind === "segment") for (const t of c.tokens) if (t.kind === "name") names.add(t.name);
  }
  const fragments = new Map<string, string>();
  for (const name of names) {
    const sub = subs !== undefined && Object.hasOwn(subs, name) ? subs[name] : undefined;
    fragments.set(name, fragmentSource(normalized, name, sub));
  }

  // Whole-path regex. Each segment is followed by "/" unless it is the last one of a file
  // pattern; a "**" brings its own separators so that it can also match nothing at all.
  let source = absolute ? "/" : "";
  const seen = new Set<string>();
  components.forEach((c, i) => {
    const last = i === components.length - 1;
    if (c.kind === "globstar") {
      source += `(?:${ANY_COMPONENT}/)*`;
      if (last && !dirOnly) source += `(?:${ANY_COMPONENT})?`;
      return;
    }
    if (isWild(c.tokens)) source += NOT_DOT_OR_DOTDOT;
    source += c.tokens.map((t) => tokenSource(t, { fragments, seen })).join("");
    if (!last || dirOnly) source += "/";
  });
  let regex: RegExp;
  try {
    regex = new RegExp(`^${source}$`, "u");
  } catch (err) {
    // Should not happen (every piece is escaped), but a clear message beats a regex dump.
    fail(normalized, `cannot be compiled (${(err as Error).message})`);
  }

  // Static prefix: the leading literal components, excluding the last component even when the
  // whole pattern is literal (the walker then stats that one entry instead of walking).
  const firstWild = components.findIndex((c) => c.kind === "globstar" || isWild(c.tokens));
  const hasWildcards = firstWild >= 0;
  const prefixLength = hasWildcards ? firstWild : Math.max(components.length - 1, 0);
  const prefixNames = components.slice(0, prefixLength).map((c) => (c.kind === "segment" ? c.text : "**"));
  let staticPrefix: string;
  if (prefixNames.length > 0) staticPrefix = `${absolute ? "/" : ""}${prefixNames.join("/")}/`;
  else staticPrefix = absolute ? "/" : "./";

  const parts = components.slice(prefixLength).map((c): PatternPart => {
    if (c.kind === "globstar") return { kind: "globstar" };
    if (!isWild(c.tokens)) return { kind: "literal", name: c.text };
    const componentRegex = new RegExp(
      `^${NOT_DOT_OR_DOTDOT}${c.tokens.map((t) => tokenSource(t, { fragments, seen: undefined })).join("")}$`,
      "u",
    );
    return { kind: "wild", test: (name) => componentRegex.test(name) };
  });

  const sortedNames = [...names].sort();
  return {
    pattern: normalized,
    names: sortedNames,
    staticPrefix,
    hasWildcards,
    dirOnly,
    parts,
    match(path: string): Record<string, string> | undefined {
      const m = regex.exec(path);
      if (m === null) return undefined;
      // fromEntries defines own properties, so even a name like "__proto__" is stored safely.
      return Object.fromEntries(sortedNames.map((n) => [n, m.groups?.[n] ?? ""]));
    },
  };
}
