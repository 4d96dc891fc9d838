// The command line. This is the only module that reads process.argv and process.env, installs
// signal handlers, picks the reporter and decides the exit status.
import { Command, CommanderError, Option } from "commander";
import { statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runOnce } from "../director/run.js";
import type { EventSink } from "../events.js";
import { createJsonReporter, LineReporter } from "../report/lines.js";
import { EXIT, exitCodeFor } from "./exit-codes.js";
import { runAct } from "./act.js";
import { runStatus } from "./control.js";
import { parseWorkers } from "./workers-option.js";

interface BuildFlags {
  nonInteractive?: boolean;
  workers: number;
  explain?: boolean;
  showPerf?: boolean;
  root?: string;
  json?: boolean;
}

function program(): Command {
  const cmd = new Command("tsup")
    .description("Run the workflow declared in plan.ts, skipping steps whose inputs did not change.")
    .argument("[plan]", "the plan file, in the root folder", "plan.ts")
    .option("-n, --non-interactive", "run once and exit (no watching, no keys)")
    .addOption(
      new Option("-w, --workers <n>", "worker processes: a count (4) or a fraction of the CPUs (0.5)")
        .argParser((v) => parseWorkers(v))
        .default(availableParallelism(), "number of CPUs"),
    )
    .option("-e, --explain", "explain why steps were not skipped")
    .option("-s, --show-perf", "prefix every line with the elapsed time and number of running steps")
    .option("--root <dir>", "the project folder (default: $TSUP_ROOT or the current folder)")
    .option("--json", "print events as JSON lines instead of text")
    .addHelpText(
      "after",
      `
Examples:
  tsup -n -w4        build once with four workers, then exit
  tsup -n -e         build once and explain every step that could not be skipped

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
  if (argv[2] === "status") return runStatus(argv.slice(3), process.env["TSUP_ROOT"]);
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
  const sink: EventSink = flags.json
    ? createJsonReporter(write)
    : new LineReporter({ write, color, width, showPerf: flags.showPerf === true, now: () => performance.now() });

  const stop = new AbortController();
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      // Second signal: do not wait for the grace period. Workers kill their steps' process
      // groups when they lose us.
      process.exit(signal === "SIGINT" ? EXIT.interrupted : EXIT.terminated);
    }
    signalled = signal;
    sink.emit({ kind: "warning", message: `Received ${signal}: stopping running steps (again to force)` });
    stop.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const outcome = await runOnce({
    root,
    planFile: planArg,
    workers: flags.workers,
    explain: flags.explain === true,
    sink,
    env: process.env,
    tsNode: process.execPath,
    tsLoader: fileURLToPath(new URL("../api/loader.js", import.meta.url)),
    tsupBin: fileURLToPath(new URL("../../bin/tsup.js", import.meta.url)),
    checkpointMs: Number(process.env["TSUP_CHECKPOINT_SECONDS"] ?? 30) * 1000 || 30_000,
    now: () => performance.now(),
    stop: stop.signal,
  });
  flush();
  if (outcome.kind === "locked") {
    process.stderr.write(`tsup: ${outcome.message}\n`);
    return EXIT.usage;
  }
  if (signalled) return signalled === "SIGINT" ? EXIT.interrupted : EXIT.terminated;
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
