import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { cacheHeader, cachedDataFor } from "../../src/cli/launch.js";

const dir = mkdtempSync(join(tmpdir(), "tsup-launch-"));
after(() => rmSync(dir, { recursive: true, force: true }));

// launchBundle runs a script and writes its cache on exit, so each launch is a child process. It
// runs the compiled module: `npm test` builds dist/ first.
const launchModule = pathToFileURL(fileURLToPath(new URL("../../dist/cli/launch.js", import.meta.url))).href;

function launch(bundle: string, cache: string): { cacheUsed: boolean; output: string } {
  const code = `import { launchBundle } from ${JSON.stringify(launchModule)};
const r = launchBundle(${JSON.stringify(bundle)}, ${JSON.stringify(cache)});
process.stderr.write(JSON.stringify(r));`;
  const run = spawnSync(process.execPath, ["--input-type=module", "-e", code], { encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  return { output: run.stdout, ...(JSON.parse(run.stderr) as { cacheUsed: boolean }) };
}

/** A bundle that shows what the wrapper hands it, and a value that differs between versions. */
function writeBundle(path: string, value: string): void {
  writeFileSync(
    path,
    `function answer() { return ${JSON.stringify(value)}; }
process.stdout.write([answer(), __tsupBundleUrl, __filename, typeof require("node:path").join, typeof module.exports].join(" "));`,
  );
}

test("the bundle runs with CommonJS globals and the import.meta.url stand-in, then from its cache", () => {
  const bundle = join(dir, "a.cjs");
  const cache = `${bundle}.v8cache`;
  writeBundle(bundle, "one");
  const first = launch(bundle, cache);
  assert.equal(first.output, `one ${pathToFileURL(bundle).href} ${bundle} function object`);
  assert.equal(first.cacheUsed, false);
  assert.ok(existsSync(cache), "the first run writes the cache");
  assert.ok(readFileSync(cache).subarray(0, 16).equals(cacheHeader(readFileSync(bundle))));
  const second = launch(bundle, cache);
  assert.equal(second.cacheUsed, true);
  assert.equal(second.output, first.output);
});

test("a rebuilt bundle of the same length never runs the old cached code", () => {
  const bundle = join(dir, "b.cjs");
  const cache = `${bundle}.v8cache`;
  writeBundle(bundle, "old");
  launch(bundle, cache);
  assert.equal(launch(bundle, cache).cacheUsed, true);
  // Same length: V8 alone would take the cached code for it.
  writeBundle(bundle, "new");
  const rebuilt = launch(bundle, cache);
  assert.equal(rebuilt.cacheUsed, false);
  assert.match(rebuilt.output, /^new /);
  assert.equal(launch(bundle, cache).cacheUsed, true, "and the cache is made again for the new bundle");
});

test("a corrupt cache is ignored and replaced", () => {
  const bundle = join(dir, "c.cjs");
  const cache = `${bundle}.v8cache`;
  writeBundle(bundle, "c");
  writeFileSync(cache, Buffer.concat([cacheHeader(readFileSync(bundle)), Buffer.from("not V8's data at all")]));
  const run = launch(bundle, cache);
  assert.equal(run.cacheUsed, false);
  assert.match(run.output, /^c /);
  assert.equal(launch(bundle, cache).cacheUsed, true);
  writeFileSync(cache, "short");
  assert.equal(launch(bundle, cache).cacheUsed, false);
});

test("a cache that cannot be written is no error", () => {
  const bundle = join(dir, "d.cjs");
  writeBundle(bundle, "d");
  const run = launch(bundle, join(dir, "no-such-dir", "d.cjs.v8cache"));
  assert.equal(run.cacheUsed, false);
  assert.match(run.output, /^d /);
});

test("cachedDataFor takes the data only after a header for this very source", () => {
  const source = Buffer.from("let x = 1;");
  const data = Buffer.from("v8 data");
  const file = Buffer.concat([cacheHeader(source), data]);
  assert.deepEqual(cachedDataFor(file, source), data);
  assert.equal(cachedDataFor(file, Buffer.from("let x = 2;")), undefined);
  assert.equal(cachedDataFor(file, Buffer.from("let x = 1; ")), undefined);
  assert.equal(cachedDataFor(undefined, source), undefined);
  assert.equal(cachedDataFor(cacheHeader(source), source), undefined, "a header without data");
});

test("code from the cache imports ES modules through the importer launch provides", () => {
  const bundle = join(dir, "e.cjs");
  const cache = `${bundle}.v8cache`;
  const esm = join(dir, "e.mjs");
  writeFileSync(esm, "export const greeting = 'hello from ESM';\n");
  // The bundle's esmImport, reduced to its lookup of the importer.
  writeFileSync(
    bundle,
    `async function later() {
  const mod = await globalThis[Symbol.for("tsup.esmImport")](${JSON.stringify(pathToFileURL(esm).href)});
  process.stdout.write(mod.greeting);
}
later();`,
  );
  const runs = [launch(bundle, cache), launch(bundle, cache)];
  assert.deepEqual(runs.map((r) => r.cacheUsed), [false, true]);
  for (const r of runs) assert.equal(r.output, "hello from ESM");
});
