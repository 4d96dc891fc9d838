// The second half of `npm run build`: bundles the CLI that tsc compiled into dist/ into one
// CommonJS file, dist/cli/bundle.cjs, which bin/tsup.js runs through a V8 code cache
// (src/cli/launch.ts says why), then makes that cache by running tsup on a tiny workflow. Also
// bundles the plan API (`tsup-flow`) into one ES module, dist/api/bundle.mjs, which steps load
// instead of a dozen modules (src/api/loader.ts).
//
// Usage: node --import tsx scripts/bundle.ts
import { build, type BuildOptions, type Metafile } from "esbuild";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { BUNDLE_URL_NAME } from "../src/cli/launch.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const bundlePath = join(dist, "cli", "bundle.cjs");
const cachePath = `${bundlePath}.v8cache`;

function fail(message: string): never {
  process.stderr.write(`scripts/bundle.ts: ${message}\n`);
  process.exit(1);
}

/** Bundle `entry` into `outfile` for Node 20; any esbuild error or warning fails the build. */
async function bundle(what: string, options: BuildOptions & { entry: string; outfile: string }): Promise<Metafile> {
  const { entry, ...rest } = options;
  const result = await build({ entryPoints: [entry], bundle: true, platform: "node", target: "node20", metafile: true, logLevel: "silent", ...rest });
  if (result.errors.length > 0 || result.warnings.length > 0) {
    const all = [...result.errors, ...result.warnings].map((m) => `${m.location?.file ?? ""}:${m.location?.line ?? ""} ${m.text}`);
    fail(`esbuild reported, for ${what}:\n${all.join("\n")}`);
  }
  return result.metafile!;
}

const cliInputs = await bundle("the CLI", {
  entry: join(dist, "cli", "main.js"),
  outfile: bundlePath,
  format: "cjs",
  // Native addons stay in node_modules; lzma-native is loaded through createRequire anyway. The
  // terminal UI (ink has top-level await, which CommonJS cannot hold) is imported on demand by URL
  // (cli/esm-import.ts), so esbuild never sees it; ink and react are listed to keep it that way.
  external: ["@napi-rs/blake-hash", "lzma-native", "esbuild", "ink", "react"],
  define: { "import.meta.url": BUNDLE_URL_NAME },
});

// Every module in the bundle sees the bundle's URL as import.meta.url. dist/cli/bundle.cjs sits one
// directory below dist/, so a URL relative to import.meta.url ("../api/loader.js") resolves as it
// does in the module's own file only for modules one directory below dist/ as well.
for (const input of Object.keys(cliInputs.inputs)) {
  const abs = resolve(root, input);
  if (!abs.startsWith(dist + sep)) continue;
  if (!readFileSync(abs, "utf8").includes("import.meta")) continue;
  if (relative(dist, abs).split(sep).length !== 2) {
    fail(`${relative(root, abs)} uses import.meta but is not one directory below dist/: URLs relative to it would resolve wrongly in the bundle`);
  }
}

const apiInputs = await bundle("the API", {
  entry: join(dist, "api", "index.js"),
  outfile: join(dist, "api", "bundle.mjs"),
  format: "esm",
});
// The API bundle sits next to index.js, so import.meta.url would do, but nothing uses it, and
// anything that does should be looked at: it was written for its own file.
for (const input of Object.keys(apiInputs.inputs)) {
  if (readFileSync(resolve(root, input), "utf8").includes("import.meta")) {
    fail(`${input} uses import.meta and is part of the API bundle: check that it still works there`);
  }
}

// The code cache: a no-op run is where start-up time shows, so the cache is written by one (a
// cold run first, whose cache is then dropped). Without it tsup still works, and its first run
// writes the cache, so a failure here is only reported.
rmSync(cachePath, { force: true });
const work = mkdtempSync(join(tmpdir(), "tsup-warmup-"));
try {
  writeFileSync(join(work, "a.txt"), "warm-up\n");
  writeFileSync(
    join(work, "plan.ts"),
    'import { declareStatic, step } from "tsup-flow";\ndeclareStatic("a.txt");\nstep("cp a.txt b.txt", { inp: "a.txt", out: "b.txt" });\n',
  );
  const tsup = join(root, "bin", "tsup.js");
  for (const phase of ["cold", "no-op"]) {
    if (phase === "no-op") rmSync(cachePath, { force: true });
    const run = spawnSync(process.execPath, [tsup, "-n", "-w1"], { cwd: work, encoding: "utf8" });
    if (run.status !== 0) {
      process.stderr.write(`scripts/bundle.ts: warning: the ${phase} warm-up run failed (exit ${run.status}); no code cache made\n${run.stdout}${run.stderr}`);
      rmSync(cachePath, { force: true });
      break;
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
