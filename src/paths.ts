// Workflow paths: normalized, relative to the project root unless absolute, and a trailing "/"
// means "directory". This module is pure string logic so that the plan-side API and the director
// agree on every path without touching the file system.
import { posix } from "node:path";

/** Normalize like `path.posix.normalize`, but keep a trailing slash and never produce "./x". */
export function normPath(path: string): string {
  if (path === "") throw new Error("empty path");
  const isDir = path.endsWith("/") || path.endsWith("/.") || path === "." || path === "..";
  let result = posix.normalize(path);
  if (result.endsWith("/") && result !== "/") result = result.slice(0, -1);
  if (result === ".") return "./";
  if (isDir && result !== "/") result += "/";
  return result;
}

export function isDirPath(path: string): boolean {
  return path.endsWith("/");
}

export function isAbsPath(path: string): boolean {
  return path.startsWith("/");
}

/** Paths that always exist and need no declaration: the root, "/", and chains of "../". */
export function isAlwaysStatic(path: string): boolean {
  // The regular expression only for paths that can match it: this runs for every path defined.
  return path === "./" || path === "/" || (path.startsWith("../") && /^(\.\.\/)+$/.test(path));
}

/** The directory holding `path` ("a/b" -> "a/", "a" -> "./"), or undefined for always-static paths. */
export function parentPath(path: string): string | undefined {
  if (isAlwaysStatic(path)) return undefined;
  const bare = path.endsWith("/") ? path.slice(0, -1) : path;
  const slash = bare.lastIndexOf("/");
  if (slash < 0) return "./";
  if (slash === 0) return "/";
  return bare.slice(0, slash + 1);
}

/**
 * Translate a path given relative to `workdir` (itself root-relative, or absolute) into the
 * root-relative form the workflow stores. Absolute paths stay absolute.
 */
export function joinWorkdir(workdir: string, path: string): string {
  if (isAbsPath(path)) return normPath(path);
  if (workdir === "./" || workdir === ".") return normPath(path);
  return normPath(posix.join(workdir, path) + (path.endsWith("/") || path === "." ? "/" : ""));
}

/** The inverse of joinWorkdir: how a root-relative path is written from inside `workdir`. */
export function relativeTo(workdir: string, path: string): string {
  if (isAbsPath(path)) return path;
  if (workdir === "./") return path;
  const rel = posix.relative(workdir, path === "./" ? "." : path);
  if (rel === "") return "./";
  return isDirPath(path) ? normPath(rel + "/") : rel;
}

/** The `ROOT` value for a step: how to get from its workdir back to the root. */
export function rootFrom(workdir: string): string {
  if (workdir === "./") return "./";
  return relativeTo(workdir, "./");
}
