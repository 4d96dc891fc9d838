// How plan.ts and TypeScript steps are compiled and loaded (src/api/loader.ts, ts-hooks.ts):
// imports between TypeScript files, compile errors, stack traces, and the cache of compiled files.
import assert from "node:assert/strict";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { freshProjects, show, tsup, withAction } from "./harness.js";

const fresh = freshProjects();
const caches: string[] = [];
after(() => caches.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** The compiled files in a cache folder (it also holds the pruning marker). */
function compiledFiles(cache: string): string[] {
  return readdirSync(cache).filter((name) => name.endsWith(".mjs"));
}

/** A private cache folder, so that a test sees exactly the entries its own runs made. */
function freshCache(): string {
  const dir = mkdtempSync(join(tmpdir(), "tsup-ts-cache-test-"));
  caches.push(dir);
  return dir;
}

describe("TypeScript plans and steps", () => {
  test("tsup-flow is the API bundled into one module, and a step's import of it is not a source of its", async () => {
    const p = fresh({
      "plan.ts": `
import { step } from "tsup-flow";
import { writeFileSync } from "node:fs";
writeFileSync("api-url.txt", import.meta.resolve("tsup-flow"));
step("true");
`,
    });
    const r = await tsup(p.dir, ["-n", "-w1"]);
    assert.equal(r.code, 0, show(r));
    assert.match(readFileSync(join(p.dir, "api-url.txt"), "utf8"), /^file:\/\/.*\/dist\/api\/bundle\.mjs$/);
    // The plan's sources are its own files: a rerun with nothing edited skips it.
    const again = await tsup(p.dir, ["-n", "-w1"]);
    assert.equal(again.code, 0, show(again));
    assert.match(again.stdout, /DIRECTOR │ 0 executed/, show(again));
  });

  test("a plan imports TypeScript helpers as ./x.js, ./x and ./dir, the way tsc resolves them", async () => {
    const p = fresh({
      "plan.ts": `
import { step } from "tsup-flow";
import { outName } from "./lib/names.js";
import { greeting } from "./lib/greet";
import { version } from "./lib";
step(\`echo '\${greeting("plan")} \${version}' > \${outName}\`, { out: outName });
`,
      "lib/names.ts": `export const outName: string = "hello.txt";\n`,
      "lib/greet.mts": `export function greeting(who: string): string { return "hi " + who; }\n`,
      "lib/index.ts": `export const version: number = 3;\n`,
    });
    const r = await tsup(p.dir, ["-n", "-w2"], { env: { TSUP_TS_CACHE: freshCache() } });
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("hello.txt"), "hi plan 3\n");
  });

  test("editing a module the plan imports, or tsconfig.json, makes the plan run again", async () => {
    const p = fresh({
      "plan.ts": `import { step } from "tsup-flow";\nimport { n } from "./lib/n.js";\nstep(\`echo \${n} > n.txt\`, { out: "n.txt" });\n`,
      "lib/n.ts": `export const n: number = 1;\n`,
      "tsconfig.json": `{ "compilerOptions": {} }\n`,
    });
    const env = { TSUP_TS_CACHE: freshCache() };
    let r = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("n.txt"), "1\n");
    r = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.deepEqual(withAction(r, "SKIP"), ["./plan.ts", "echo 1 > n.txt"], show(r));
    // The imported files' hashes were saved with the state: nothing new was learned, nothing saved.
    assert.deepEqual(withAction(r, "WORKFLOW"), ["Loaded from .stepup/workflow.mpk.xz"], show(r));
    p.write("lib/n.ts", `export const n: number = 2;\n`);
    r = await tsup(p.dir, ["-n", "-w2", "-e"], { env });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /NOSKIP │ \.\/plan\.ts[\s\S]*Modified input\s+lib\/n\.ts/, show(r));
    assert.equal(p.read("n.txt"), "2\n");
    // The tsconfig.json the plan was compiled with counts too.
    r = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.deepEqual(withAction(r, "SKIP"), ["./plan.ts", "echo 2 > n.txt"], show(r));
    p.write("tsconfig.json", `{ "compilerOptions": { "strict": true } }\n`);
    r = await tsup(p.dir, ["-n", "-w2", "-e"], { env });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /Modified input\s+tsconfig\.json/, show(r));
    // A module that is gone: the plan runs again, and fails on its import.
    rmSync(p.path("lib/n.ts"));
    r = await tsup(p.dir, ["-n", "-w2", "-e"], { env });
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /Source file gone\s+lib\/n\.ts/, show(r));
  });

  test("a TypeScript step runs again when a module it imports changes", async () => {
    const p = fresh({
      "plan.ts": `import { declareStatic, step } from "tsup-flow";\ndeclareStatic("gen.ts");\nstep("gen.ts", { inp: "gen.ts", out: "out.txt" });\n`,
      "gen.ts": `import { writeFileSync } from "node:fs";\nimport { text } from "./util.js";\nwriteFileSync("out.txt", text + "\\n");\n`,
      "util.ts": `export const text: string = "one";\n`,
    });
    const env = { TSUP_TS_CACHE: freshCache() };
    let r = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("out.txt"), "one\n");
    r = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.deepEqual(withAction(r, "SKIP"), ["./plan.ts", "gen.ts"], show(r));
    p.write("util.ts", `export const text: string = "two";\n`);
    r = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(withAction(r, "SKIP"), ["./plan.ts"], show(r));
    assert.equal(p.read("out.txt"), "two\n");
    // The same for a step that ends with process.exit(): the loader noted the file as it loaded it.
    p.write("gen.ts", p.read("gen.ts") + "process.exit(0);\n");
    r = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.equal(r.code, 0, show(r));
    p.write("util.ts", `export const text: string = "three";\n`);
    r = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.deepEqual(withAction(r, "START"), ["gen.ts"], show(r));
    assert.equal(p.read("out.txt"), "three\n");
  });

  test("a syntax error names file, line and column, shows the line, and prints no stack trace", async () => {
    const p = fresh({
      "plan.ts": `import { step } from "tsup-flow";\nimport { x } from "./helper.js";\nstep("echo " + x);\n`,
      "helper.ts": `export const x: number = 1;\nexport const y: number = ;\n`,
    });
    const r = await tsup(p.dir, ["-n", "-w2"], { env: { TSUP_TS_CACHE: freshCache() } });
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /helper\.ts:2:26: error: Unexpected ";"\n\s+export const y: number = ;\n\s+\^/, show(r));
    assert.doesNotMatch(r.stdout, /esbuild|node:internal|    at /, show(r));
  });

  test("the nearest tsconfig.json applies, comments and all; a broken one is named in the error", async () => {
    const p = fresh({
      // As \`tsc --init\` writes it: comments and trailing commas.
      "tsconfig.json": `{\n  // options\n  "compilerOptions": {\n    /* legacy decorators */\n    "experimentalDecorators": true,\n  },\n}\n`,
      "plan.ts": `
import { step } from "tsup-flow";
const seen: string[] = [];
function mark(_target: object, key: string): void { seen.push(key); }
class Jobs { @mark build(): void {} }
new Jobs();
step(\`echo \${seen.join(",")} > seen.txt\`, { out: "seen.txt" });
`,
    });
    let r = await tsup(p.dir, ["-n", "-w2"], { env: { TSUP_TS_CACHE: freshCache() } });
    assert.equal(r.code, 0, show(r));
    // Legacy decorators run when the class is defined, with the method's name.
    assert.equal(p.read("seen.txt"), "build\n");
    // The plan was compiled with it, so the edit alone makes the plan run again.
    p.write("tsconfig.json", `{ "compilerOptions": { "target": `);
    r = await tsup(p.dir, ["-n", "-w2"], { env: { TSUP_TS_CACHE: freshCache() } });
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /tsconfig\.json:1:\d+: error: Unexpected end of file in JSON/, show(r));
  });

  test("a CommonJS TypeScript file gets a clear error", async () => {
    const p = fresh({
      "plan.ts": `import { step } from "tsup-flow";\nimport "./old.cts";\nstep("true");\n`,
      "old.cts": `module.exports = {};\n`,
    });
    const r = await tsup(p.dir, ["-n", "-w2"], { env: { TSUP_TS_CACHE: freshCache() } });
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /old\.cts: error: tsup runs TypeScript files as ES modules/, show(r));
  });

  test("stack traces of a crashing TypeScript step name the lines of the TypeScript source", async () => {
    const p = fresh({
      "plan.ts": `import { step } from "tsup-flow";\nstep("crash.ts");\n`,
      // Types on the lines before the throw: the JavaScript esbuild makes has other columns.
      "crash.ts": `interface A { a: number }\nconst list: A[] = [];\nfunction explode(items: A[]): never {\n  throw new Error("boom " + items.length);\n}\nexplode(list);\n`,
    });
    const r = await tsup(p.dir, ["-n", "-w2"], { env: { TSUP_TS_CACHE: freshCache() } });
    assert.equal(r.code, 4, show(r));
    assert.match(r.stdout, /Error: boom 0\n\s+at explode \(\S*crash\.ts:4:9\)/, show(r));
  });

  test("compiled files are cached by content: reused while the source is the same, redone when it changes", async () => {
    const cache = freshCache();
    const p = fresh({
      "plan.ts": `import { step } from "tsup-flow";\nconst n: number = 1;\nstep(\`echo \${n} > n.txt\`, { out: "n.txt" });\n`,
    });
    const env = { TSUP_TS_CACHE: cache };
    let r = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("n.txt"), "1\n");
    const entries = compiledFiles(cache);
    assert.equal(entries.length, 1, `one compiled file: ${entries.join(", ")}`);
    // Proof that the plan, run again, comes from the cache: doctor the entry, forget the state.
    const entry = join(cache, entries[0]!);
    writeFileSync(entry, readFileSync(entry, "utf8").replace("const n = 1;", "const n = 7;"));
    rmSync(p.path(".stepup"), { recursive: true });
    r = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("n.txt"), "7\n", show(r));
    // A changed source is compiled again, into a new entry.
    p.write("plan.ts", p.read("plan.ts").replace("= 1;", "= 2;"));
    r = await tsup(p.dir, ["-n", "-w2"], { env });
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("n.txt"), "2\n");
    assert.equal(compiledFiles(cache).length, 2);
  });

  test("cache entries unused for 30 days are deleted, at most once a day, after a compile", async () => {
    const cache = freshCache();
    const day = 24 * 3600;
    const now = Date.now() / 1000;
    writeFileSync(join(cache, "old.mjs"), "export {};\n");
    utimesSync(join(cache, "old.mjs"), now - 40 * day, now - 40 * day);
    writeFileSync(join(cache, "recent.mjs"), "export {};\n");
    utimesSync(join(cache, "recent.mjs"), now - 3 * day, now - 3 * day);
    // Pruned less than a day ago: a compile leaves the old entry alone.
    writeFileSync(join(cache, "pruned"), "");
    const p = fresh({ "plan.ts": `import { step } from "tsup-flow";\nstep("true");\n` });
    let r = await tsup(p.dir, ["-n", "-w2"], { env: { TSUP_TS_CACHE: cache } });
    assert.equal(r.code, 0, show(r));
    assert.ok(existsSync(join(cache, "old.mjs")));
    // Pruned two days ago: the next compile (of an edited plan) deletes it.
    utimesSync(join(cache, "pruned"), now - 2 * day, now - 2 * day);
    p.write("plan.ts", `import { step } from "tsup-flow";\nstep("true && true");\n`);
    r = await tsup(p.dir, ["-n", "-w2"], { env: { TSUP_TS_CACHE: cache } });
    assert.equal(r.code, 0, show(r));
    assert.ok(!existsSync(join(cache, "old.mjs")), "unused for 40 days");
    assert.ok(existsSync(join(cache, "recent.mjs")), "used 3 days ago");
    assert.equal(compiledFiles(cache).length, 3, "recent.mjs and the two versions of plan.ts");
  });

  test("the cache folder must be the user's own, writable by nobody else", async () => {
    const plan = `import { step } from "tsup-flow";\nconst n: number = 4;\nstep(\`echo \${n} > n.txt\`, { out: "n.txt" });\n`;
    // Ours but open to everyone: tightened, then used.
    const open = freshCache();
    chmodSync(open, 0o777);
    let p = fresh({ "plan.ts": plan });
    let r = await tsup(p.dir, ["-n", "-w2"], { env: { TSUP_TS_CACHE: open } });
    assert.equal(r.code, 0, show(r));
    assert.equal(statSync(open).mode & 0o777, 0o700);
    assert.equal(compiledFiles(open).length, 1);
    // Someone else's: compiled files in it would run as our code, so it is not used at all.
    const foreign = freshCache();
    try {
      chownSync(foreign, 65534, 65534);
    } catch {
      return; // Not root: no folder can be handed to another user here.
    }
    p = fresh({ "plan.ts": plan });
    r = await tsup(p.dir, ["-n", "-w2"], { env: { TSUP_TS_CACHE: foreign } });
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("n.txt"), "4\n");
    assert.deepEqual(readdirSync(foreign), []);
  });

  test("an unwritable cache only costs speed", async () => {
    const p = fresh({
      "plan.ts": `import { step } from "tsup-flow";\nconst n: number = 5;\nstep(\`echo \${n} > n.txt\`, { out: "n.txt" });\n`,
    });
    // A regular file where the cache folder should be: nothing can be written below it.
    const blocker = join(freshCache(), "file");
    writeFileSync(blocker, "");
    const r = await tsup(p.dir, ["-n", "-w2"], { env: { TSUP_TS_CACHE: join(blocker, "cache") } });
    assert.equal(r.code, 0, show(r));
    assert.equal(p.read("n.txt"), "5\n");
  });
});
