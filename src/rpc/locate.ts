// How commands such as `tsup status` find the director running in a folder: it writes its socket
// path and PID to `.stepup/director.json` while it runs.
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isAlive } from "../state/lock.js";

export const DIRECTOR_FILE = "director.json";

export interface DirectorInfo {
  socket: string;
  pid: number;
}

export function writeDirectorInfo(stepupDir: string, info: DirectorInfo): void {
  const path = join(stepupDir, DIRECTOR_FILE);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(info)}\n`);
  renameSync(`${path}.tmp`, path);
}

export function removeDirectorInfo(stepupDir: string, pid: number): void {
  const info = readDirectorInfo(stepupDir);
  if (info?.pid === pid) rmSync(join(stepupDir, DIRECTOR_FILE), { force: true });
}

/** The director running in this folder, or undefined (none, or one that died without cleaning up). */
export function readDirectorInfo(stepupDir: string): DirectorInfo | undefined {
  let info: unknown;
  try {
    info = JSON.parse(readFileSync(join(stepupDir, DIRECTOR_FILE), "utf8"));
  } catch {
    return undefined;
  }
  const { socket, pid } = (info ?? {}) as Partial<DirectorInfo>;
  if (typeof socket !== "string" || typeof pid !== "number") return undefined;
  if (!isAlive(pid) || !existsSync(socket)) return undefined;
  return { socket, pid };
}
