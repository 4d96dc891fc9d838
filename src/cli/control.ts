// Commands that talk to a tsup already running in a folder (found through .stepup/director.json).
import { join, relative, resolve } from "node:path";
import type { StatusReport } from "../director/session.js";
import { describeStep } from "../events.js";
import { DirectorClient } from "../rpc/client.js";
import { readDirectorInfo } from "../rpc/locate.js";

/** Subcommands that talk to a running tsup (everything else on the command line is a build). */
export const CONTROL_COMMANDS = new Set([
  "status",
  "run",
  "wait",
  "join",
  "shutdown",
  "graph",
  "watch-update",
  "watch-delete",
]);

const USAGE: Record<string, string> = {
  status: "tsup status [--json]      phase, running steps, pools and counts",
  run: "tsup run                  start a run phase (like the key r); only while watching",
  wait: "tsup wait                 return once tsup is watching (nothing runs)",
  join: "tsup join                 let the current run finish, then exit; returns when tsup is gone",
  shutdown: "tsup shutdown             finish running steps, start nothing new, exit",
  graph: "tsup graph [PREFIX]       write PREFIX.txt, PREFIX_supplier.dot, PREFIX_creator.dot (default .stepup/graph)",
  "watch-update": "tsup watch-update PATH    return once the watch phase has recorded PATH as updated",
  "watch-delete": "tsup watch-delete PATH    return once the watch phase has recorded PATH as deleted",
};

/**
 * Run a control subcommand against the tsup running in the root folder. Exit status 0 when it did
 * what was asked, 1 when no tsup runs there or it refused, 2 for a usage error.
 */
export async function runControl(command: string, args: string[], rootOption: string | undefined): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    process.stdout.write(`${USAGE[command] ?? command}\n`);
    return 0;
  }
  const root = resolve(rootOption ?? process.cwd());
  const usage = (): number => {
    process.stderr.write(`tsup ${command}: usage: ${USAGE[command]}\n`);
    return 2;
  };
  let callArgs: unknown = null;
  const positional = args.filter((a) => !a.startsWith("--"));
  if (command === "watch-update" || command === "watch-delete") {
    if (positional.length !== 1) return usage();
    const rel = relative(root, resolve(positional[0]!));
    if (rel.startsWith("..") && !positional[0]!.startsWith("/")) {
      process.stderr.write(`tsup ${command}: ${positional[0]} is outside the project ${root}\n`);
      return 2;
    }
    callArgs = { path: rel.startsWith("..") ? resolve(positional[0]!) : rel === "" ? "./" : rel };
  } else if (command === "graph") {
    if (positional.length > 1) return usage();
    callArgs = { prefix: positional[0] ?? "" };
  } else if (positional.length > 0 || args.some((a) => a !== "--json" || command !== "status")) {
    return usage();
  }
  const info = readDirectorInfo(join(root, ".stepup"));
  if (!info) {
    process.stderr.write(`tsup ${command}: no tsup is running in ${root}\n`);
    return 1;
  }
  let client: DirectorClient;
  try {
    client = await DirectorClient.connect(info.socket, null, () => {});
  } catch (err) {
    process.stderr.write(`tsup ${command}: ${(err as Error).message}\n`);
    return 1;
  }
  try {
    const answer = (await client.call(command, callArgs)) as Record<string, unknown> | null;
    return report(command, args, answer);
  } catch (err) {
    process.stderr.write(`tsup ${command}: ${(err as Error).message}\n`);
    return 1;
  } finally {
    client.close();
  }
}

function report(command: string, args: string[], answer: Record<string, unknown> | null): number {
  const out = (text: string): void => void process.stdout.write(`${text}\n`);
  switch (command) {
    case "status":
      process.stdout.write(args.includes("--json") ? `${JSON.stringify(answer)}\n` : formatStatus(answer as unknown as StatusReport));
      return 0;
    case "run":
      if (answer?.["started"]) return 0;
      process.stderr.write(`tsup run: not started: ${String(answer?.["message"])}\n`);
      return 1;
    case "wait":
      if (answer === null) {
        process.stderr.write("tsup wait: tsup exited before it started watching\n");
        return 1;
      }
      return 0;
    case "join":
    case "shutdown":
      out(`tsup finished: ${String(answer?.["summary"])}`);
      return 0;
    case "graph":
      out(`Workflow graph written to ${(answer?.["files"] as string[]).join(", ")}`);
      return 0;
    default:
      if (answer?.["recorded"]) {
        if (answer["byHand"]) out("recorded (the watcher did not report it; tsup recorded it when asked)");
        return 0;
      }
      process.stderr.write(`tsup ${command}: not recorded: ${String(answer?.["reason"])}\n`);
      return 1;
  }
}

export function formatStatus(r: StatusReport): string {
  const c = r.counts;
  const lines = [
    `phase     ${r.phase}`,
    `steps     ${c.running} running, ${c.succeeded} done (${c.skipped} skipped), ${c.failed} failed, ${c.pending} pending`,
  ];
  for (const p of r.pools) lines.push(`pool      ${p.name}: ${p.running}/${p.size} running, ${p.queued} queued`);
  for (const s of r.running) {
    const pool = s.pool ? `  [${s.pool}]` : "";
    lines.push(`running   ${s.seconds.toFixed(1).padStart(7)} s  ${describeStep(s)}${pool}`);
  }
  return `${lines.join("\n")}\n`;
}
