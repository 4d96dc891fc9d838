// `tsup act ...`: what a running step written in any language (shell, Python, R) uses to talk to
// the director that runs it. The director is found through the step's environment
// (TSUP_DIRECTOR_SOCKET, TSUP_STEP_KEY, TSUP_ROOT), which tsup sets for every step.
import { Command, CommanderError } from "commander";
import { existsSync, statSync } from "node:fs";
import { isAbsolute, relative, resolve } from "node:path";
import { normPath } from "../paths.js";
import { DirectorClient } from "../rpc/client.js";
import { ENV_ROOT, ENV_SOCKET, ENV_STEP_KEY } from "../rpc/protocol.js";

/** Exit statuses of `tsup act amend`, documented in docs/reference/cli.md. */
export const ACT_EXIT = {
  keepGoing: 0,
  error: 1,
  usage: 2,
  /** Some amended inputs do not exist yet: stop now, tsup runs the step again later. */
  stop: 75,
} as const;

const collect = (value: string, previous: string[]): string[] => [...previous, value];

interface AmendFlags {
  inp: string[];
  out: string[];
  vol: string[];
  env: string[];
}

export async function runAct(args: string[]): Promise<number> {
  let code: number = ACT_EXIT.usage;
  const program = new Command("tsup act")
    .description("Talk to the tsup director from a running step (any language).")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  program
    .command("amend")
    .description(
      "Declare more inputs, outputs, volatile outputs or env vars of the running step. " +
        "Paths are relative to the current directory. " +
        "Exit status 0: go on; 75: an input does not exist yet, stop now (tsup reruns the step " +
        "when it does); 1: rejected or not running under tsup.",
    )
    .option("--inp <path>", "an input (repeat for more)", collect, [])
    .option("--out <path>", "an output (repeat for more)", collect, [])
    .option("--vol <path>", "a volatile output (repeat for more)", collect, [])
    .option("--env <name>", "an env var the step depends on (repeat for more)", collect, [])
    .action(async (flags: AmendFlags) => {
      code = await amend(flags);
    });
  try {
    await program.parseAsync(args, { from: "user" });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : ACT_EXIT.usage;
    throw err;
  }
  return code;
}

async function amend(flags: AmendFlags): Promise<number> {
  const socket = process.env[ENV_SOCKET];
  const root = process.env[ENV_ROOT];
  if (!socket || !root) {
    process.stderr.write("tsup act: not running inside a tsup step (TSUP_DIRECTOR_SOCKET is not set)\n");
    return ACT_EXIT.error;
  }
  // Relative to where the step is now, whatever directory it changed to.
  // Written the way the plan API writes them: root-relative (also "../x" outside the root),
  // absolute only when given absolute, so both name the same file the same way.
  const toRoot = (p: string): string => {
    if (isAbsolute(p)) return normPath(p);
    const rel = relative(root, resolve(p));
    const out = rel === "" ? "./" : rel;
    return normPath(p.endsWith("/") && out !== "./" ? `${out}/` : out);
  };
  const request = {
    inp: flags.inp.map(toRoot),
    out: flags.out.map(toRoot),
    vol: flags.vol.map(toRoot),
    env: flags.env,
  };
  let client: DirectorClient;
  try {
    client = await DirectorClient.connect(socket, process.env[ENV_STEP_KEY] ?? null, () => {});
  } catch (err) {
    process.stderr.write(`tsup act: ${(err as Error).message}\n`);
    return ACT_EXIT.error;
  }
  try {
    const answer = (await client.call("amend", request)) as { keepGoing: boolean; missing: string[] };
    if (!answer.keepGoing) {
      process.stderr.write(`tsup act: not available yet: ${answer.missing.join(" ")}\n`);
      return ACT_EXIT.stop;
    }
    for (const p of flags.inp) {
      if (!existsSync(p) || statSync(p).isDirectory() !== p.endsWith("/")) {
        process.stderr.write(`tsup act: amended input does not exist (or is of the wrong kind): ${p}\n`);
        return ACT_EXIT.error;
      }
    }
    return ACT_EXIT.keepGoing;
  } catch (err) {
    process.stderr.write(`tsup act: ${(err as Error).message}\n`);
    return ACT_EXIT.error;
  } finally {
    client.close();
  }
}
