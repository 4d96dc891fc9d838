// End-to-end: failing steps, exit codes, interruption, the instance lock, a corrupt state file,
// and the command line itself.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { BIN, freshProjects, show, tsup, withAction, type RunResult } from "./harness.js";

const fresh = freshProjects();

const imports = `import { declareStatic, step } from "tsup-flow";\n`;

/** Running (a zombie waiting for a reaper that never comes, in some containers, is not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

describe("failures", () => {
  test("a failing step shows its output and return code; dependents wait; others go on (exit 4)", async () => {
    const p = fresh({
      "plan.ts": `${imports}
step("echo oops; echo bad >&2; exit 7", { out: "never.txt" });
step("cat \${inp} > \${out}", { inp: "never.txt", out: "after.txt" });
step("echo independent > \${out}", { out: "independent.txt" });
`,
    });
    const r = await tsup(p.dir);
    assert.equal(r.code, 4, show(r));
    assert.deepEqual(withAction(r, "FAIL"), ["echo oops; echo bad >&2; exit 7"]);
    assert.match(r.stdout, /Return code\s+7/);
    assert.match(r.stdout, /─ Standard output ─+\noops\n/);
    assert.match(r.stdout, /─ Standard error ─+\nbad\n/);
    assert.ok(existsSync(p.path("independent.txt")));
    assert.ok(!existsSync(p.path("after.txt")));
    assert.match(r.stdout, /WARNING │ 1 step failed, see error messages above/);
    assert.match(r.stdout, /1 step remains pending/);
    assert.match(r.stdout, /never\.txt\s+its step failed/);
    // A failed step is never skipped: it runs again next time.
    const again = await tsup(p.dir);
    assert.ok(withAction(again, "START").includes("echo oops; echo bad >&2; exit 7"), show(again));
  });

  test("exit 0 without creating a declared output is a failure", async () => {
    const p = fresh({ "plan.ts": `${imports}step("true", { out: "promised.txt" });\n` });
    const r = await tsup(p.dir);
    assert.equal(r.code, 4, show(r));
    assert.match(r.stdout, /─ Expected outputs not created ─+\npromised\.txt/);
  });

  test("a static input deleted between runs makes its consumers wait, naming the file", async () => {
    const p = fresh({
      "plan.ts": `${imports}declareStatic("in.txt");\nstep("cat \${inp}", { inp: "in.txt" });\n`,
      "in.txt": "x\n",
    });
    assert.equal((await tsup(p.dir)).code, 0);
    rmSync(p.path("in.txt"));
    // StepUp bug 8 replayed the consumer and failed it with "Invalid inputs". Here the plan is
    // unchanged and skipped; the file stays declared, and its consumer waits for it.
    const r = await tsup(p.dir);
    assert.equal(r.code, 5, show(r));
    assert.deepEqual(withAction(r, "START"), [], show(r));
    assert.match(r.stdout, /MISSING {2}in\.txt {2}declared static by \.\/plan\.ts, but it does not exist/);
    p.write("in.txt", "x\n");
    const back = await tsup(p.dir);
    assert.equal(back.code, 0, show(back));
    assert.deepEqual(withAction(back, "START"), [], "same content as before: nothing reruns");
  });
});

describe("interruption", () => {
  test("SIGTERM stops running steps and their children, saves the state, exits 143 within 2 s", async () => {
    const p = fresh({
      "plan.ts": `${imports}
step("echo done > \${out}", { out: "quick.txt" });
step("sh -c 'echo $$ > child.pid; exec sleep 60' & echo $! > bg.pid; sleep 60", { inp: "quick.txt" });
`,
    });
    let killedAt = 0;
    const r = await tsup(p.dir, ["-n", "-w2"], {
      timeoutMs: 30000,
      onSpawn: (child) => {
        const poll = setInterval(() => {
          if (existsSync(p.path("child.pid"))) {
            clearInterval(poll);
            setTimeout(() => {
              killedAt = Date.now();
              child.kill("SIGTERM");
            }, 200);
          }
        }, 50);
      },
    });
    const elapsed = Date.now() - killedAt;
    assert.equal(r.code, 143, show(r));
    assert.ok(elapsed < 2000, `took ${elapsed} ms to exit`);
    const childPid = Number(readFileSync(p.path("child.pid"), "utf8"));
    const bgPid = Number(readFileSync(p.path("bg.pid"), "utf8"));
    await new Promise((res) => setTimeout(res, 200));
    assert.ok(!alive(childPid), "the step's child process survived");
    assert.ok(!alive(bgPid), "the step's background process survived");
    assert.ok(existsSync(p.path(".stepup/workflow.mpk.xz")), "state saved");
    // The finished step is remembered: the next run skips it.
    p.write("plan.ts", `${imports}step("echo done > \${out}", { out: "quick.txt" });\n`);
    const next = await tsup(p.dir);
    assert.ok(withAction(next, "SKIP").includes("echo done > quick.txt"), show(next));
  });

  test("Ctrl-C (SIGINT to the whole foreground group) stops everything and exits 130", async () => {
    const p = fresh({
      "plan.ts": `${imports}step("sh -c 'echo $$ > child.pid; exec sleep 60'; sleep 60");\n`,
    });
    // Own process group, like a shell job: the terminal sends SIGINT to every process in it.
    const child = spawn(process.execPath, [BIN, "-n", "-w2"], {
      cwd: p.dir,
      env: { ...process.env, CI: "true" },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((res) => child.on("close", (code) => res(code)));
    while (!existsSync(p.path("child.pid"))) await new Promise((res) => setTimeout(res, 50));
    const sentAt = Date.now();
    process.kill(-child.pid!, "SIGINT");
    const code = await exited;
    assert.ok(Date.now() - sentAt < 2000, "exited within 2 s");
    assert.equal(code, 130, stdout);
    await new Promise((res) => setTimeout(res, 200));
    assert.ok(!alive(Number(readFileSync(p.path("child.pid"), "utf8"))), "the step's process survived");
    assert.match(stdout, /Received SIGINT/);
  });

  test("a step that ignores SIGTERM is killed with SIGKILL after the grace period", async () => {
    const p = fresh({
      "plan.ts": `${imports}step("trap '' TERM; echo $$ > stubborn.pid; while true; do sleep 0.1; done");\n`,
    });
    let killedAt = 0;
    const r = await tsup(p.dir, ["-n"], {
      timeoutMs: 30000,
      onSpawn: (child) => {
        const poll = setInterval(() => {
          if (existsSync(p.path("stubborn.pid"))) {
            clearInterval(poll);
            killedAt = Date.now();
            child.kill("SIGTERM");
          }
        }, 50);
      },
    });
    assert.equal(r.code, 143, show(r));
    assert.ok(Date.now() - killedAt < 2500, `took ${Date.now() - killedAt} ms`);
    await new Promise((res) => setTimeout(res, 200));
    assert.ok(!alive(Number(p.read("stubborn.pid"))), "the stubborn step survived");
  });

  test("after SIGKILL, finished work is skipped and nothing is left running", async () => {
    const p = fresh({
      "plan.ts": `${imports}
for (let i = 0; i < 20; i++) step(\`echo \${i} > \${"\${out}"}\`, { out: \`quick\${i}.txt\` });
step("test -e fast || { echo $$ > slow.pid; sleep 60; }; echo done > \${out}", { out: "slow.txt" });
`,
    });
    const r = await tsup(p.dir, ["-n", "-w2"], {
      timeoutMs: 30000,
      onSpawn: (child) => {
        const poll = setInterval(() => {
          if (existsSync(p.path("slow.pid")) && existsSync(p.path("quick19.txt"))) {
            clearInterval(poll);
            // Kill the director without warning while the slow step runs.
            setTimeout(() => child.kill("SIGKILL"), 300);
          }
        }, 50);
      },
    });
    assert.equal(r.signal, "SIGKILL", show(r));
    await new Promise((res) => setTimeout(res, 500));
    assert.ok(!alive(Number(p.read("slow.pid"))), "the running step outlived the director");
    p.write("fast", "");
    const next = await tsup(p.dir, ["-n", "-w2"]);
    // The stale lock of the killed run is taken over; finished steps are skipped, the one that
    // was running when tsup died runs again.
    assert.equal(next.code, 0, show(next));
    const quick = (d: string): boolean => /^echo \d+ > quick/.test(d);
    assert.equal(withAction(next, "START").filter(quick).length, 0, show(next));
    assert.equal(withAction(next, "SKIP").filter(quick).length, 20, show(next));
    assert.ok(withAction(next, "START").some((d) => d.startsWith("test -e fast")), show(next));
  });

  test("a second tsup in the same folder is refused", async () => {
    const p = fresh({ "plan.ts": `${imports}step("sleep 3");\n` });
    let second: Promise<RunResult> | undefined;
    const first = tsup(p.dir, ["-n"], {
      onSpawn: () => {
        const poll = setInterval(() => {
          if (existsSync(p.path(".stepup/lock"))) {
            clearInterval(poll);
            second = tsup(p.dir, ["-n"]);
          }
        }, 20);
      },
    });
    const r1 = await first;
    assert.ok(second);
    const r2 = await second;
    assert.equal(r1.code, 0, show(r1));
    assert.equal(r2.code, 2, show(r2));
    assert.match(r2.stderr, /already running in this folder/);
  });
});

describe("state file", () => {
  test("a corrupt state file gives a warning, is kept, and the build starts from scratch", async () => {
    const p = fresh({ "plan.ts": `${imports}step("echo x > \${out}", { out: "x.txt" });\n` });
    assert.equal((await tsup(p.dir)).code, 0);
    const state = p.path(".stepup/workflow.mpk.xz");
    const good = readFileSync(state);
    writeFileSync(state, good.subarray(0, Math.floor(good.length / 2)));
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /WARNING │/);
    assert.deepEqual(withAction(r, "START").sort(), ["./plan.ts", "echo x > x.txt"]);
    assert.ok(readdirSync(p.path(".stepup")).some((f) => f.startsWith("workflow.mpk.xz.bad")), "copy kept");
    // And the new state is good again.
    const again = await tsup(p.dir);
    assert.deepEqual(withAction(again, "START"), [], show(again));
  });

  test("a file of another format is treated the same way", async () => {
    const p = fresh({ "plan.ts": `${imports}step("echo x > \${out}", { out: "x.txt" });\n` });
    p.write(".stepup/workflow.mpk.xz", "this is not xz at all");
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /WARNING │/);
    assert.equal(p.read("x.txt"), "x\n");
  });
});

describe("command line", () => {
  test("no plan.ts: usage error, nothing created", async () => {
    const p = fresh();
    const r = await tsup(p.dir);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /no plan\.ts in /);
    assert.ok(!existsSync(p.path(".stepup")));
  });

  test("--version prints the package version and exits 0, even without a plan", async () => {
    const p = fresh();
    const version = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
    for (const flag of ["--version", "-V"]) {
      const r = await tsup(p.dir, [flag]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, `${version}\n`);
    }
    assert.ok(!existsSync(p.path(".stepup")));
  });

  test("a Node.js older than 20.15 gets a clear message, not a link error", async () => {
    const p = fresh({ "plan.ts": `${imports}`, "old-node.mjs": `Object.defineProperty(process.versions, "node", { value: "20.14.1" });\n` });
    const r = await tsup(p.dir, ["-n"], { env: { NODE_OPTIONS: `--import ${p.path("old-node.mjs")}` } });
    assert.equal(r.code, 2, show(r));
    assert.equal(r.stderr, "tsup: needs Node.js 20.15 or newer; this is Node.js 20.14.1\n");
    assert.ok(!existsSync(p.path(".stepup")));
  });

  test("bad worker counts are usage errors", async () => {
    const p = fresh({ "plan.ts": `${imports}` });
    for (const w of ["0", "abc", "0.1"]) {
      const r = await tsup(p.dir, ["-n", "-w", w]);
      assert.equal(r.code, 2, `-w ${w}: ${show(r)}`);
      assert.match(r.stderr, /workers/);
    }
  });

  test("-s prefixes lines with elapsed time and running count", async () => {
    const p = fresh({ "plan.ts": `${imports}step("true");\n` });
    const r = await tsup(p.dir, ["-n", "-s"]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^\s+\d+\.\d\d\s+\d+\s+START │ \.\/plan\.ts$/m);
  });

  test("without a terminal there are no escape codes or carriage returns", async () => {
    const p = fresh({ "plan.ts": `${imports}step("printf '\\\\033[31mred\\\\033[0m\\\\n'");\n` });
    const r = await tsup(p.dir);
    assert.equal(r.code, 0, show(r));
    assert.doesNotMatch(r.stdout, /\x1b|\r/);
    assert.match(r.stdout, /\nred\n/);
  });

  test("on a terminal the output is coloured", async () => {
    const p = fresh({ "plan.ts": `${imports}step("true");\n` });
    const env: NodeJS.ProcessEnv = { ...process.env, TERM: "xterm" };
    delete env["CI"];
    delete env["NO_COLOR"];
    delete env["FORCE_COLOR"];
    // `script` gives tsup a pseudo-terminal as stdout.
    const out = execFileSync("script", ["-qec", `'${process.execPath}' '${BIN}' -n`, "/dev/null"], {
      cwd: p.dir,
      env,
      encoding: "utf8",
    });
    assert.match(out, /\x1b\[[0-9;]*m/, "escape codes expected on a terminal");
    assert.match(out, /SUCCESS/);
  });

  test("--json prints one event per line", async () => {
    const p = fresh({ "plan.ts": `${imports}step("true");\n` });
    const r = await tsup(p.dir, ["-n", "--json"]);
    assert.equal(r.code, 0, show(r));
    const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { kind: string });
    assert.ok(events.some((e) => e.kind === "start"));
    assert.ok(events.some((e) => e.kind === "finish"));
  });
});

describe("edge cases of the command line and API", () => {
  test("a closed stdout (tsup | head) does not stop the build or the save", async () => {
    const p = fresh({ "plan.ts": `${imports}for (let i = 0; i < 50; i++) step(\`echo \${i} > \${"\${out}"}\`, { out: \`f\${i}.txt\` });\n` });
    const out = execFileSync("bash", ["-c", `set -o pipefail; node '${BIN}' -n --json | head -1; echo "rc=\${PIPESTATUS[0]}"`], {
      cwd: p.dir,
      env: { ...process.env, CI: "true" },
      encoding: "utf8",
    });
    assert.match(out, /rc=0/, out);
    assert.ok(existsSync(p.path("f49.txt")));
    assert.ok(existsSync(p.path(".stepup/workflow.mpk.xz")));
  });

  test("mkdir() resolves env vars in the directory name", async () => {
    const p = fresh({ "plan.ts": `import { mkdir } from "tsup-flow";\nmkdir("\${OUTDIR}");\n` });
    const r = await tsup(p.dir, ["-n"], { env: { OUTDIR: "results" } });
    assert.equal(r.code, 0, show(r));
    assert.ok(existsSync(p.path("results")));
    assert.ok(!existsSync(p.path("${OUTDIR}")));
  });

  test("a boot plan with another name that fails exits with the plan status", async () => {
    const p = fresh({ "build.ts": `throw new Error("broken build plan");\n` });
    const r = await tsup(p.dir, ["-n", "build.ts"]);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /FAIL │ \.\/build\.ts/);
  });
});

describe("tsup status", () => {
  test("shows the running steps and pools of a tsup running in the folder", async () => {
    const p = fresh({
      "plan.ts": `import { pool, step } from "tsup-flow";\npool("one", 1);\nfor (const c of ["A", "B"]) step(\`touch started\${c}; sleep 3; echo \${c}\`, { pool: "one" });\n`,
    });
    const status = () =>
      spawnSync(process.execPath, [BIN, "status", "--json"], { cwd: p.dir, encoding: "utf8", env: { ...process.env, TSUP_ROOT: p.dir } });
    const build = tsup(p.dir, ["-n", "-w2"]);
    while (!existsSync(p.path("startedA")) && !existsSync(p.path("startedB"))) await new Promise((res) => setTimeout(res, 50));
    const r = status();
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as {
      running: Array<{ command: string; pool: string }>;
      pools: Array<{ name: string; size: number; running: number; queued: number }>;
    };
    assert.equal(report.running.length, 1, r.stdout);
    assert.equal(report.running[0]!.pool, "one");
    assert.deepEqual(report.pools, [{ name: "one", size: 1, running: 1, queued: 1 }]);
    assert.equal((await build).code, 0);
    const after = status();
    assert.equal(after.status, 1);
    assert.match(after.stderr, /no tsup is running in /);
  });
});
