// The command line. This is the only module that reads process.argv and process.env, installs
// signal handlers, picks the reporter and decides the exit status.
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { readFileSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runOnce } from "../director/run.js";
import type { EventSink } from "../events.js";
import { createJsonReporter, LineReporter } from "../report/lines.js";
import { EXIT, exitCodeFor } from "./exit-codes.js";
import { runAct } from "./act.js";
import { CONTROL_COMMANDS, runControl } from "./control.js";
import type { Controller } from "../director/controller.js";
import { readKeys } from "../tui/keys.js";
import type { Tui } from "../tui/start.js";
import { parseWorkers } from "./workers-option.js";
import { esmImport } from "./esm-import.js";

interface BuildFlags {
  nonInteractive?: boolean;
  auto?: boolean;
  debounce: number;
  workers: number;
  explain?: boolean;
  showPerf?: boolean;
  root?: string;
  json?: boolean;
}

/** The version in tsup's own package.json (two folders up from dist/cli/ and src/cli/). */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

function program(): Command {
  const cmd = new Command("tsup")
    .description("Run the workflow declared in plan.ts, skipping steps whose inputs did not change.")
    .version(packageVersion(), "-V, --version", "print the version of tsup and exit")
    .argument("[plan]", "the plan file, in the root folder", "plan.ts")
    .option("-n, --non-interactive", "run once and exit (no watching, no keys)")
    .addOption(
      new Option("-w, --workers <n>", "steps that may run at once: a count (4) or a fraction of the CPUs (0.5)")
        .argParser((v) => parseWorkers(v))
        .default(availableParallelism(), "number of CPUs"),
    )
    .option("-a, --auto", "in the watch phase, rerun by itself once changed files settle (no need to press r)")
    .addOption(
      new Option("--debounce <ms>", "with --auto: how long files must stay unchanged before the rerun")
        .argParser((v) => {
          const ms = Number(v);
          if (!Number.isFinite(ms) || ms < 0) throw new InvalidArgumentError("expected a number of milliseconds");
          return ms;
        })
        .default(300),
    )
    .option("-e, --explain", "explain why steps were not skipped")
    .option("-s, --show-perf", "prefix every line with the elapsed time and number of running steps")
    .option("--root <dir>", "the project folder (default: $TSUP_ROOT or the current folder)")
    .option("--json", "print events as JSON lines instead of text")
    .addHelpText(
      "after",
      `
Examples:
  tsup               build, then watch files; keys: r run, q quit, ? help
  tsup -n -w4        build once with four workers, then exit
  tsup -n -e         build once and explain every step that could not be skipped
  tsup --auto        build, then rebuild whenever watched files change

Commands for a tsup running in this folder (see docs/reference/cli.md):
  tsup status | run | wait | join | shutdown | graph [PREFIX]
  tsup watch-update PATH | watch-delete PATH

Exit status: 0 success, 1 internal error, 2 usage error, 3 a plan failed,
4 a step failed, 5 steps remain pending, 130/143 interrupted (see docs/reference/cli.md).`,
    )
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  return cmd;
}

async function main(argv: string[]): Promise<number> {
  // Subcommands used from inside running steps; everything else is a build.
  if (argv[2] === "act") return runAct(argv.slice(3));
  if (argv[2] !== undefined && CONTROL_COMMANDS.has(argv[2])) {
    return runControl(argv[2], argv.slice(3), process.env["TSUP_ROOT"]);
  }
  const cmd = program();
  try {
    cmd.parse(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are successes; everything else is a usage error.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    throw err;
  }
  const flags = cmd.opts<BuildFlags>();
  const planArg = cmd.args[0] ?? "plan.ts";
  const root = resolve(flags.root ?? process.env["TSUP_ROOT"] ?? process.cwd());
  if (planArg.includes("/")) {
    process.stderr.write(`tsup: the plan must be a file in the root folder, got ${planArg}\n`);
    return EXIT.usage;
  }
  const planStat = statSync(resolve(root, planArg), { throwIfNoEntry: false });
  if (!planStat?.isFile()) {
    process.stderr.write(
      `tsup: no ${planArg} in ${root}\n` +
        `Create it (see docs/guide.md), or run tsup in the folder that holds it.\n`,
    );
    return EXIT.usage;
  }
  if (root !== process.cwd()) process.chdir(root);

  const isTty = process.stdout.isTTY === true;
  const ci = process.env["CI"] !== undefined && process.env["CI"] !== "" && process.env["CI"] !== "false";
  const color = process.env["FORCE_COLOR"] ? process.env["FORCE_COLOR"] !== "0" : isTty && !ci && !process.env["NO_COLOR"];
  const width = (isTty ? process.stdout.columns : undefined) ?? (Number(process.env["COLUMNS"]) || 80);
  // When the reader goes away (`tsup -n | head`), keep building and saving; just stop printing.
  let stdoutGone = false;
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") stdoutGone = true;
    else throw err;
  });
  // One write per event would be one system call per step: thousands of SKIP lines cost more
  // than the skip checks. Lines are gathered and written together once per turn of the event loop
  // (each event is still written whole, so lines never interleave).
  let pending: string[] = [];
  let flushScheduled = false;
  const flush = (): void => {
    flushScheduled = false;
    if (pending.length === 0) return;
    const text = pending.join("");
    pending = [];
    if (!stdoutGone) process.stdout.write(text);
  };
  const write = (text: string): void => {
    pending.push(text);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
  };
  const interactive = flags.nonInteractive !== true;
  const stdinTty = process.stdin.isTTY === true;
  // The live view needs a terminal on both ends; CI logs, pipes and -n get plain lines.
  const useTui = interactive && isTty && stdinTty && !ci && !flags.json;
  let controller: Controller | undefined;
  const pendingKeys: Array<Parameters<Controller["key"]>[0]> = [];
  const onKey = (key: Parameters<Controller["key"]>[0]): void => {
    if (controller) controller.key(key);
    else pendingKeys.push(key);
  };
  let tui: Tui | undefined;
  let stopKeys: (() => void) | undefined;
  let sink: EventSink;
  if (useTui) {
    // ink and react take about half a second to load: only when the live view is used.
    const { startTui } = (await esmImport(new URL("../tui/start.js", import.meta.url).href)) as typeof import("../tui/start.js");
    tui = startTui({
      stdout: process.stdout,
      stdin: process.stdin,
      color,
      showPerf: flags.showPerf === true,
      workers: flags.workers,
      onKey,
      now: () => performance.now(),
    });
    sink = tui.sink;
  } else {
    sink = flags.json
      ? createJsonReporter(write)
      : new LineReporter({ write, color, width, showPerf: flags.showPerf === true, now: () => performance.now() });
    if (interactive && stdinTty && !flags.json) stopKeys = readKeys(process.stdin, onKey);
  }
  /** Give the terminal back: cooked mode, visible cursor. Safe to call more than once. */
  const restoreTerminal = async (): Promise<void> => {
    stopKeys?.();
    stopKeys = undefined;
    await tui?.close();
  };

  const stop = new AbortController();
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      // Second signal: do not wait for the grace period. Workers kill their steps' process
      // groups when they lose us.
      stopKeys?.();
      if (process.stdin.isTTY) process.stdin.setRawMode(false);
      if (tui) process.stdout.write("\x1b[?25h\n");
      process.exit(signal === "SIGINT" ? EXIT.interrupted : EXIT.terminated);
    }
    signalled = signal;
    sink.emit({ kind: "warning", message: `Received ${signal}: stopping running steps (again to force)` });
    stop.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  let outcome;
  try {
    outcome = await runOnce({
      root,
      planFile: planArg,
      workers: flags.workers,
      explain: flags.explain === true,
      sink,
      env: process.env,
      tsNode: process.execPath,
      tsLoader: fileURLToPath(new URL("../api/loader.js", import.meta.url)),
      tsupBin: fileURLToPath(new URL("../../bin/tsup.js", import.meta.url)),
      now: () => performance.now(),
      stop: stop.signal,
      interactive,
      autoRerunMs: flags.auto ? flags.debounce : undefined,
      progressMs: tui ? 200 : undefined,
      keys: tui !== undefined || stopKeys !== undefined,
      onController: (c) => {
        controller = c;
        for (const key of pendingKeys.splice(0)) c.key(key);
      },
    });
  } finally {
    await restoreTerminal();
    flush();
  }
  if (outcome.kind === "locked") {
    process.stderr.write(`tsup: ${outcome.message}\n`);
    return EXIT.usage;
  }
  if (signalled) return signalled === "SIGINT" ? EXIT.interrupted : EXIT.terminated;
  // Ctrl-C and a second q arrive as keys in raw mode, not as signals.
  if (outcome.interrupted) return EXIT.interrupted;
  return exitCodeFor(outcome.summary, outcome.internalError);
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`tsup: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = EXIT.internal;
  },
);
