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

/** A tsup left running in the background (watch mode), driven with the control subcommands. */
export interface Background {
  child: ChildProcess;
  /** Everything it printed so far. */
  output(): string;
  /** Report lines printed after `mark` (a length of output() taken earlier). */
  linesSince(mark: number): Array<[string, string]>;
  /** Run `tsup <args>` (a control subcommand) in the same folder. */
  control(...args: string[]): Promise<RunResult>;
  /** Resolves with the exit of the background tsup. */
  done: Promise<RunResult>;
  /** Wait until output() matches `pattern` (polling), or fail with the output. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

export function startTsup(dir: string, args: string[] = ["-w2"], env: Record<string, string> = {}): Background {
  let stdout = "";
  let stderr = "";
  const started = Date.now();
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: dir,
    env: { ...process.env, CI: "true", FORCE_COLOR: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<RunResult>((resolvePromise) => {
    child.on("close", (code, signal) =>
      resolvePromise({ code, signal, stdout, stderr, lines: parseLines(stdout), ms: Date.now() - started }),
    );
  });
  // A test that fails half-way must not leave a tsup watching forever.
  after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return {
    child,
    output: () => stdout,
    linesSince: (mark) => parseLines(stdout.slice(mark)),
    control: async (...a) => {
      // `tsup &` then `tsup wait` races with the director writing .stepup/director.json.
      const until = Date.now() + 20000;
      for (;;) {
        let pid: number | undefined;
        try {
          pid = (JSON.parse(readFileSync(join(dir, ".stepup", "director.json"), "utf8")) as { pid: number }).pid;
        } catch {
          pid = undefined;
        }
        if (pid === child.pid || child.exitCode !== null || Date.now() > until) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      return tsup(dir, a, { timeoutMs: 30000 });
    },
    done,
    async waitFor(pattern, timeoutMs = 20000) {
      const until = Date.now() + timeoutMs;
      while (!pattern.test(stdout)) {
        if (Date.now() > until || child.exitCode !== null) {
          throw new Error(`waited in vain for ${pattern}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}
