// Commands that talk to a tsup already running in a folder (found through .stepup/director.json).
import { join, resolve } from "node:path";
import type { StatusReport } from "../director/session.js";
import { describeStep } from "../events.js";
import { DirectorClient } from "../rpc/client.js";
import { readDirectorInfo } from "../rpc/locate.js";

/** `tsup status [--json]`: phase, running steps, pools and counts. Exit 0, or 1 when none runs. */
export async function runStatus(args: string[], rootOption: string | undefined): Promise<number> {
  const root = resolve(rootOption ?? process.cwd());
  const info = readDirectorInfo(join(root, ".stepup"));
  if (!info) {
    process.stderr.write(`tsup: no tsup is running in ${root}\n`);
    return 1;
  }
  let client: DirectorClient;
  try {
    client = await DirectorClient.connect(info.socket, null, () => {});
  } catch (err) {
    process.stderr.write(`tsup: ${(err as Error).message}\n`);
    return 1;
  }
  try {
    const report = (await client.call("status", null)) as StatusReport;
    process.stdout.write(args.includes("--json") ? `${JSON.stringify(report)}\n` : formatStatus(report));
    return 0;
  } catch (err) {
    process.stderr.write(`tsup: ${(err as Error).message}\n`);
    return 1;
  } finally {
    client.close();
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
