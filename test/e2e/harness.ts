// Runs the real bin/tsup.js in throw-away project folders and reads its output.
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = join(REPO, "bin", "tsup.js");

export interface Project {
  dir: string;
  write(path: string, text: string, mode?: number): void;
  read(path: string): string;
  path(p: string): string;
  remove(): void;
}

/** A fresh folder holding `files` (nothing else: no node_modules, no package.json). */
export function project(files: Record<string, string> = {}): Project {
  const dir = mkdtempSync(join(tmpdir(), "tsup-e2e-"));
  const p: Project = {
    dir,
    write(path, text, mode) {
      const full = join(dir, path);
      mkdirSync(dirname(full), { recursive: true });
      writeFileSync(full, text);
      if (mode !== undefined) chmodSync(full, mode);
    },
    read: (path) => readFileSync(join(dir, path), "utf8"),
    path: (path) => join(dir, path),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  for (const [path, text] of Object.entries(files)) p.write(path, text);
  return p;
}

/** `fresh(files)` makes a project that is removed when the test file is done. */
export function freshProjects(): (files?: Record<string, string>) => Project {
  const projects: Project[] = [];
  after(() => projects.forEach((p) => p.remove()));
  return (files = {}) => {
    const p = project(files);
    projects.push(p);
    return p;
  };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** [ACTION, description] for every report line. */
  lines: Array<[string, string]>;
  ms: number;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  /** Called with the child right after it starts (e.g. to send it a signal later). */
  onSpawn?: (child: ChildProcess) => void;
}

export function tsup(dir: string, args: string[] = ["-n", "-w2"], opts: RunOptions = {}): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolvePromise, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, CI: "true", ...opts.env };
    for (const [k, v] of Object.entries(opts.env ?? {})) if (v === undefined) delete env[k];
    delete env["FORCE_COLOR"];
    const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
    opts.onSpawn?.(child);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`tsup timed out after ${opts.timeoutMs ?? 60000} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, opts.timeoutMs ?? 60000);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr, lines: parseLines(stdout), ms: Date.now() - started });
    });
  });
}

export function parseLines(stdout: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const line of stdout.split("\n")) {
    const m = /^\s*([A-Z]+) │ (.*)$/.exec(line);
    if (m) out.push([m[1]!, m[2]!]);
  }
  return out;
}

/** Descriptions of the lines with this action, in order. */
export function withAction(result: RunResult, action: string): string[] {
  return result.lines.filter(([a]) => a === action).map(([, d]) => d);
}

/** A readable dump for assertion messages. */
export function show(result: RunResult): string {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}
