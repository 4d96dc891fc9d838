// Loaded with `node --import <this file>` before every `.ts` step (plan.ts above all). It makes
// TypeScript run on Node 20, which cannot strip types itself, and makes `import ... from
// "tsup-flow"` resolve to this very installation of tsup, whether or not the user's project has
// tsup-flow among its dependencies (npx and global installs leave it out). A plan must talk to the
// director that runs it, so using this copy of the API is also the only correct choice. The hooks
// themselves are in ts-hooks.ts.
import { existsSync, writeSync } from "node:fs";
import { register } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { COMPILE_ERROR, type HookData } from "./hook-data.js";

/**
 * Where compiled TypeScript is kept: $TSUP_TS_CACHE, else tsup's folder in the user's cache
 * ($XDG_CACHE_HOME or ~/.cache), else one in the temporary folder. Deleting it is always safe.
 */
function cacheDir(env: NodeJS.ProcessEnv): string | null {
  const fixed = env["TSUP_TS_CACHE"];
  if (fixed !== undefined) return fixed === "" ? null : resolve(fixed);
  const base = env["XDG_CACHE_HOME"] || (env["HOME"] ? join(env["HOME"], ".cache") : "");
  if (base !== "") return join(base, "tsup", "ts");
  return join(tmpdir(), `tsup-ts-${process.getuid?.() ?? "user"}`);
}

// A compile error of the user's TypeScript (see ts-hooks.ts) that nobody caught: print what is
// wrong and where, and nothing of Node's report of an uncaught exception around it. Any other
// uncaught exception gets Node's usual report.
process.on("uncaughtExceptionMonitor", (err: unknown) => {
  if ((err as { code?: unknown } | null)?.code !== COMPILE_ERROR) return;
  writeSync(2, `${(err as Error).message}\n`);
  process.exit(1);
});

// Stack traces then show the lines of the TypeScript source (ts-hooks.ts adds inline source maps).
process.setSourceMapsEnabled(true);
// The API as one module (scripts/bundle.ts), when built: each module a step imports costs a
// round trip to the loader thread, and the API's own are a dozen. index.js is the same code.
const bundled = new URL("./bundle.mjs", import.meta.url);
const apiUrl = existsSync(bundled) ? bundled.href : new URL("./index.js", import.meta.url).href;
const data: HookData = { apiUrl, cacheDir: cacheDir(process.env) };
register("./ts-hooks.js", import.meta.url, { data });
