// The worker pool with real worker processes and real commands, each test in its own temp dir.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  constants as fsConstants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readlinkSync,
  readSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { blake3 } from "@napi-rs/blake-hash";
import { WorkerPool } from "../../src/workers/pool.js";
import type { RunRequest } from "../../src/workers/protocol.js";
import { directCommand, effectiveCommand, shellQuote, stepSnippet } from "../../src/workers/worker.js";

const dirs: string[] = [];
const pools: WorkerPool[] = [];
after(async () => {
  // A failed assertion must not leave workers (and their sleeps) behind.
  await Promise.all(pools.map((p) => p.close({ graceMs: 200 })));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "tsup-workers-"));
  dirs.push(d);
  return d;
}

/**
 * The launchers parse their requests as shell input, so the pool is tested under /bin/sh and
 * under whichever of dash and bash (what /bin/sh is on most systems) /bin/sh is not, and under
 * busybox's ash (Alpine's /bin/sh, common in containers), which runs as `sh` from a link of
 * that name.
 */
const LAUNCHER_SHELLS = ["/bin/sh"];
for (const other of ["/bin/dash", "/bin/bash", busyboxSh()]) {
  if (other !== null && existsSync(other) && realpathSync(other) !== realpathSync("/bin/sh")) LAUNCHER_SHELLS.push(other);
}

function busyboxSh(): string | null {
  const found = spawnSync("/bin/sh", ["-c", "command -v busybox"], { encoding: "utf8" }).stdout.trim();
  if (found === "") return null;
  const link = join(tempDir(), "sh");
  symlinkSync(found, link);
  return link;
}
/** The shell of the suite that runs now (suites run one after another). */
let launcherShell = "/bin/sh";

function makePool(root: string, size = 1, tsLoader = "tsx"): WorkerPool {
  const pool = new WorkerPool({ size, root, tsNode: process.execPath, tsLoader, shell: launcherShell });
  pools.push(pool);
  return pool;
}

/**
 * A pool whose launchers are up: each lane has run a step, so it has made its token FIFO and
 * takes queued steps, and no launcher's start counts in what the test measures.
 */
async function readyPool(root: string, size = 1): Promise<WorkerPool> {
  const pool = makePool(root, size);
  await Promise.all(Array.from({ length: size }, () => pool.run(req("true"))));
  return pool;
}

function req(command: string, extra: Partial<RunRequest> = {}): RunRequest {
  return { command, workdir: "./", env: {}, inputs: [], outputs: [], ...extra };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll until `cond` holds; fails the test after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** True while `pid` is a live process (a zombie counts as dead: it only waits to be reaped). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** PIDs a command wrote to `file`, one per line, once there are `n` of them. */
async function pidsFrom(file: string, n: number): Promise<number[]> {
  let pids: number[] = [];
  await until(
    () => {
      if (!existsSync(file)) return false;
      pids = readFileSync(file, "utf8").split("\n").filter(Boolean).map(Number);
      return pids.length >= n;
    },
    10_000,
    `${n} pids in ${file}`,
  );
  return pids;
}

const TWO_SLEEPS = "sleep 30 & echo $! > pids; sleep 30 & echo $! >> pids; wait";

for (const shell of LAUNCHER_SHELLS) describe(`WorkerPool (launchers run by ${shell})`, () => {
  before(() => {
    launcherShell = shell;
  });
  after(() => {
    launcherShell = "/bin/sh";
  });
  test("a simple command exec'd directly behaves as under sh -c", { timeout: 30_000 }, async () => {
    const root = tempDir();
    writeFileSync(join(root, "a b.txt"), "x\n");
    writeFileSync(join(root, "args.sh"), 'echo "$#:$1:$2:$TSUP_T"\n');
    const pool = makePool(root);
    const copied = await pool.run(req("cp 'a b.txt' 'c d.txt'"));
    assert.equal(copied.exitCode, 0, copied.stderr);
    assert.equal(readFileSync(join(root, "c d.txt"), "utf8"), "x\n");
    // A script without shebang or x bit: the shell runs it, as `sh -c ./args.sh` would.
    const script = await pool.run(req("sh args.sh 'one two' three", { env: { TSUP_T: "t" } }));
    assert.equal(script.stdout, "2:one two:three:t\n");
    const missing = await pool.run(req("no-such-program-tsup x"));
    assert.equal(missing.exitCode, 127);
    // Through /bin/sh after all, for the usual message (whichever shell /bin/sh is).
    const usual = spawnSync("/bin/sh", ["-c", "no-such-program-tsup x"], { encoding: "utf8" }).stderr;
    assert.match(usual, /no-such-program-tsup/);
    assert.equal(missing.stderr, usual);
    // The launcher is still there for the next step.
    assert.equal((await pool.run(req("true"))).exitCode, 0);
    // A program named like one of the launcher's shell functions is that program.
    mkdirSync(join(root, "bin"));
    writeFileSync(join(root, "bin/tsup_io"), '#!/bin/sh\necho "mine $1"\n', { mode: 0o755 });
    const named = await pool.run(req("tsup_io x", { env: { PATH: `${join(root, "bin")}:${process.env.PATH ?? ""}` } }));
    assert.equal(named.stdout, "mine x\n", named.stderr);
  });

  test("runs a command and captures stdout, stderr and the exit code", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root);
    assert.deepEqual(pool.launcherPids(), [], "no launcher before the first run");
    assert.equal(pool.idleCount(), 1);
    const res = await pool.run(req("echo out; echo err >&2; printf 'h\\303\\251'; exit 3"));
    // The launcher is the shell this suite is about (where /proc says which program a process runs).
    if (existsSync("/proc/self/exe")) {
      assert.equal(readlinkSync(`/proc/${pool.launcherPids()[0]}/exe`), realpathSync(launcherShell));
    }
    assert.equal(res.exitCode, 3);
    assert.equal(res.signal, null);
    assert.equal(res.stdout, "out\nhé");
    assert.equal(res.stderr, "err\n");
    assert.equal(res.spawnError, null);
    assert.deepEqual(res.invalidInputs, []);
    assert.ok(res.durationMs > 0);
    assert.equal(pool.idleCount(), 1);
    const ok = await pool.run(req("true"));
    assert.equal(ok.exitCode, 0);
    assert.equal(ok.stdout, "");
    // An exit status that looks like a signal death is still an exit status when no signal was sent.
    const fake = await pool.run(req("exit 143"));
    assert.equal(fake.exitCode, 143);
    assert.equal(fake.signal, null);
    await pool.close();
    assert.deepEqual(pool.launcherPids(), []);
  });

  test("large outputs arrive complete; background processes do not hold the step", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root);
    const big = await pool.run(req("head -c 3000000 /dev/zero | tr '\\0' x; head -c 2000000 /dev/zero | tr '\\0' y >&2"));
    assert.equal(big.exitCode, 0);
    assert.equal(big.stdout.length, 3_000_000);
    assert.match(big.stdout, /^x+$/);
    assert.equal(big.stderr.length, 2_000_000);
    const small = await pool.run(req("echo small"));
    assert.equal(small.stdout, "small\n");
    // The background sleep keeps the step's stdout open; the step is over when its shell is.
    const started = Date.now();
    const bg = await pool.run(req("sleep 5 & echo $! > pids; echo early"));
    assert.equal(bg.stdout, "early\n");
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
    const [pid] = await pidsFrom(join(root, "pids"), 1);
    assert.ok(alive(pid!));
    // Shutting the pool down takes such leftovers along.
    await pool.close();
    await until(() => !alive(pid!), 1500, "the leftover sleep to die");
  });

  test("workdir, env and the root-relative paths of a step", { timeout: 30_000 }, async () => {
    const root = tempDir();
    mkdirSync(join(root, "sub"));
    const pool = makePool(root);
    writeFileSync(join(root, "sub/data.txt"), "data");
    const res = await pool.run(
      req(`pwd; printf '%s|' "$A" "$B" "$HOME"; cat data.txt`, {
        workdir: "sub/",
        env: { A: "it's", B: "two\nlines" },
        inputs: [{ path: "sub/data.txt", known: null }],
      }),
    );
    assert.equal(res.exitCode, 0, res.stderr);
    assert.equal(res.stdout, `${join(root, "sub")}\nit's|two\nlines|${process.env.HOME ?? ""}|data`);
    // A request far longer than the launcher shell's input buffer, quotes and newlines included.
    const long = "a'b\n\"$x`".repeat(10_000);
    const big = await pool.run(req('printf %s "$LONG"', { env: { LONG: long } }));
    assert.equal(big.exitCode, 0, big.stderr);
    assert.equal(big.stdout, long);
    const abs = await pool.run(req("pwd", { workdir: join(root, "sub") + "/" }));
    assert.equal(abs.stdout, `${join(root, "sub")}\n`);
    const missing = await pool.run(req("true", { workdir: "nope/" }));
    assert.equal(missing.spawnError, "Working directory does not exist: nope/");
    assert.equal(missing.exitCode, null);
  });

  test("hashes outputs after the run, null for one not created", { timeout: 30_000 }, async () => {
    const root = tempDir();
    writeFileSync(join(root, "in.txt"), "input");
    const pool = makePool(root);
    const res = await pool.run(
      req("cp in.txt out.txt && mkdir d", {
        inputs: [{ path: "in.txt", known: null }],
        outputs: [
          { path: "out.txt", known: null },
          { path: "never.txt", known: null },
          { path: "d/", known: null },
        ],
      }),
    );
    assert.equal(res.exitCode, 0, res.stderr);
    assert.equal(res.inputHashes.length, 1);
    const expected = Buffer.from(blake3(Buffer.from("input"))).toString("hex");
    assert.equal(Buffer.from(res.inputHashes[0]!.digest).toString("hex"), expected);
    assert.equal(res.outputHashes.length, 3);
    const out = res.outputHashes[0]!;
    assert.ok(out.digest instanceof Uint8Array, "digest survives IPC as a Uint8Array");
    assert.equal(Buffer.from(out.digest).toString("hex"), expected);
    assert.equal(out.size, 5);
    assert.equal(res.outputHashes[1], null);
    assert.notEqual(res.outputHashes[2], null);
    assert.deepEqual(res.changedInputs, []);
  });

  test("invalid inputs prevent running the command", { timeout: 30_000 }, async () => {
    const root = tempDir();
    mkdirSync(join(root, "d"));
    writeFileSync(join(root, "ok.txt"), "ok");
    const pool = makePool(root);
    const res = await pool.run(
      req("touch ran", {
        inputs: [
          { path: "ok.txt", known: null },
          { path: "data.txt", known: null },
          { path: "d", known: null },
        ],
        outputs: [{ path: "ran", known: null }],
      }),
    );
    assert.deepEqual(res.invalidInputs, ["Path does not exist: data.txt", "Directory without trailing slash: d"]);
    assert.equal(existsSync(join(root, "ran")), false, "command must not run");
    assert.equal(res.exitCode, null);
    assert.equal(res.inputHashes.length, 3);
    assert.notEqual(res.inputHashes[0], null);
    assert.equal(res.inputHashes[1], null);
    assert.deepEqual(res.outputHashes, [null]);
  });

  test("reports inputs that changed while the command ran", { timeout: 30_000 }, async () => {
    const root = tempDir();
    writeFileSync(join(root, "a.txt"), "a");
    writeFileSync(join(root, "b.txt"), "b");
    const pool = makePool(root);
    const res = await pool.run(
      req("echo more >> a.txt", {
        inputs: [
          { path: "a.txt", known: null },
          { path: "b.txt", known: null },
        ],
      }),
    );
    assert.equal(res.exitCode, 0);
    assert.deepEqual(res.changedInputs, ["a.txt"]);
  });

  test("a .ts first word runs through node with the loader", { timeout: 30_000 }, async () => {
    const root = tempDir();
    // Type annotations: this only runs when the loader (tsx) was really imported.
    writeFileSync(
      join(root, "gen.ts"),
      `const args: string[] = process.argv.slice(2);\nconsole.log(JSON.stringify([process.execPath, args]));\n`,
    );
    const pool = makePool(root, 1, import.meta.resolve("tsx"));
    const res = await pool.run(req("./gen.ts one 'two words'"));
    assert.equal(res.exitCode, 0, res.stderr);
    assert.deepEqual(JSON.parse(res.stdout), [process.execPath, ["one", "two words"]]);
    // Not executable and without a shebang: run by the shell itself, it fails.
    const direct = await pool.run(req("sh -c ./gen.ts"));
    assert.notEqual(direct.exitCode, 0);
  });

  test("two runs on two workers overlap in time", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root, 2);
    assert.equal(pool.idleCount(), 2);
    // Both launchers up first, so that their startup does not count.
    await Promise.all([pool.run(req("true")), pool.run(req("true"))]);
    const stamp = (n: number): string => `date +%s%N > s${n}; sleep 1; date +%s%N > e${n}`;
    const runs = [pool.run(req(stamp(1))), pool.run(req(stamp(2)))];
    assert.equal(pool.idleCount(), 0);
    const results = await Promise.all(runs);
    for (const r of results) assert.equal(r.exitCode, 0, r.stderr);
    const t = (f: string): bigint => BigInt(readFileSync(join(root, f), "utf8").trim());
    assert.ok(t("s1") < t("e2") && t("s2") < t("e1"), "the two sleeps ran at the same time");
    assert.equal(pool.launcherPids().length, 2);
    assert.equal(pool.idleCount(), 2);
  });

  test("a step queued behind a running one starts after it, with its own output", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root, 1);
    // One lane: the second step is queued behind the first, the third waits in the pool.
    const runs = [1, 2, 3].map((n) => pool.run(req(`echo out${n}; echo err${n} >&2; date +%s%N > t${n}; sleep 0.2`)));
    assert.equal(pool.freeSlots(), 0);
    const results = await Promise.all(runs);
    results.forEach((r, i) => {
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, `out${i + 1}\n`);
      assert.equal(r.stderr, `err${i + 1}\n`);
    });
    const t = (n: number): bigint => BigInt(readFileSync(join(root, `t${n}`), "utf8").trim());
    assert.ok(t(1) < t(2) && t(2) < t(3), "one after the other, in order");
    assert.equal(pool.launcherPids().length, 1);
    assert.equal(pool.freeSlots(), 2);
  });

  test("a lane that falls idle takes over the step queued behind a long one", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = await readyPool(root, 2);
    const long = pool.run(req("sleep 3"));
    const short = pool.run(req("sleep 0.2"));
    // Both lanes busy: this one is queued on a busy lane (the first, behind the long sleep).
    const t0 = Date.now();
    const queued = pool.run(req("echo moved > moved.txt"));
    const r = await queued;
    assert.equal(r.exitCode, 0, r.stderr);
    assert.ok(Date.now() - t0 < 2500, `it waited for the long step (${Date.now() - t0} ms)`);
    assert.equal(readFileSync(join(root, "moved.txt"), "utf8"), "moved\n");
    assert.equal((await short).exitCode, 0);
    assert.equal((await long).exitCode, 0);
    // The long step's lane skipped the request it had been sent: it still runs steps in sync.
    const after = await Promise.all([pool.run(req("echo a")), pool.run(req("echo b")), pool.run(req("echo c"))]);
    assert.deepEqual(after.map((x) => x.stdout), ["a\n", "b\n", "c\n"]);
  });

  test("a step run behind another stays on that lane, even with a lane idle, and starts after it", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = await readyPool(root, 2);
    // $PPID in a step is its lane's launcher.
    const aheadReq = req("echo $PPID > ppid-a; sleep 0.6; date +%s%N > a-end");
    const ahead = pool.run(aheadReq);
    assert.equal(pool.canRunBehind(req("true")), false, "only behind a running request");
    assert.equal(pool.canRunBehind(aheadReq), true);
    const behind = pool.runBehind(aheadReq, req("date +%s%N > b-start; echo $PPID > ppid-b"));
    assert.notEqual(behind, null);
    assert.equal(pool.canRunBehind(aheadReq), false, "one step waits behind a step at most");
    assert.equal(pool.runBehind(aheadReq, req("touch never.txt")), null);
    // A step on the other lane ends meanwhile: that lane falls idle and would take over a step
    // queued on a busy lane, but not this one.
    assert.equal((await pool.run(req("sleep 0.1"))).exitCode, 0);
    const [a, b] = await Promise.all([ahead, behind!]);
    assert.equal(a.exitCode, 0, a.stderr);
    assert.equal(b.exitCode, 0, b.stderr);
    const read = (f: string): string => readFileSync(join(root, f), "utf8").trim();
    assert.ok(BigInt(read("b-start")) >= BigInt(read("a-end")), "it started before the step ahead of it was over");
    assert.equal(read("ppid-b"), read("ppid-a"), "it ran on another lane");
    assert.equal(existsSync(join(root, "never.txt")), false);
  });

  test("moveBehind takes a waiting step to an idle lane, or behind another running step", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = await readyPool(root, 3);
    const longReq = req("echo $PPID > ppid-long; sleep 3");
    const long = pool.run(longReq);
    const t0 = Date.now();

    // To an idle lane: it runs now, not after the long step.
    const idleReq = req("echo $PPID > ppid-idle");
    const toIdle = pool.runBehind(longReq, idleReq)!;
    const hooked: string[] = [];
    assert.equal(pool.moveBehind(idleReq, null, () => hooked.push("idle")), true);
    assert.deepEqual(hooked, ["idle"]);
    assert.equal((await toIdle).exitCode, 0);
    const read = (f: string): string => readFileSync(join(root, f), "utf8").trim();
    // The long step may not have got to its first line yet.
    await until(() => existsSync(join(root, "ppid-long")) && read("ppid-long") !== "", 5000, "the long step's $PPID");
    assert.notEqual(read("ppid-idle"), read("ppid-long"));
    assert.equal(pool.moveBehind(idleReq, null, () => hooked.push("again")), false, "it no longer waits anywhere");

    // Behind another running step: it runs right after that one, on that one's lane. The long
    // step's lane took a step back, so nothing more waits behind it.
    const midReq = req("echo $PPID > ppid-mid; sleep 0.3; date +%s%N > mid-end");
    const mid = pool.run(midReq);
    const hopReq = req("echo $PPID > ppid-hop; date +%s%N > hop-start");
    const pinned = pool.runBehind(midReq, req("true"))!;
    assert.equal((await pinned).exitCode, 0);
    const mid2Req = req("echo $PPID > ppid-mid2; sleep 0.3; date +%s%N > mid2-end");
    const mid2 = pool.run(mid2Req);
    const hop = pool.runBehind(mid2Req, hopReq)!;
    assert.equal(pool.moveBehind(hopReq, midReq, () => hooked.push("hop")), false, "the lane of mid already has a step behind mid");
    assert.equal((await mid).exitCode, 0);
    const mid3Req = req("echo $PPID > ppid-mid3; sleep 0.3; date +%s%N > mid3-end");
    const mid3 = pool.run(mid3Req);
    assert.equal(pool.moveBehind(hopReq, mid3Req, () => hooked.push("hop")), true);
    assert.deepEqual(hooked, ["idle", "hop"]);
    assert.equal(pool.canRunBehind(mid2Req), false, "a lane that gave a step back takes no other behind its step");
    const [m2, m3, h] = await Promise.all([mid2, mid3, hop]);
    for (const r of [m2, m3, h]) assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(read("ppid-hop"), read("ppid-mid3"));
    assert.ok(BigInt(read("hop-start")) >= BigInt(read("mid3-end")));
    assert.ok(Date.now() - t0 < 2500, "something waited for the long step");
    assert.equal((await long).exitCode, 0);
    // Every lane still runs steps in sync with its requests.
    const after = await Promise.all(["a", "b", "c", "d"].map((x) => pool.run(req(`echo ${x}`))));
    assert.deepEqual(after.map((x) => x.stdout), ["a\n", "b\n", "c\n", "d\n"]);
  });

  test("withdrawQueued hands back a step waiting behind another", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = await readyPool(root, 2);
    const aheadReq = req("sleep 0.4");
    const ahead = pool.run(aheadReq);
    const behind = pool.runBehind(aheadReq, req("touch never.txt"))!;
    pool.withdrawQueued();
    assert.equal((await behind).withdrawn, true);
    assert.equal((await ahead).exitCode, 0);
    await sleep(200);
    assert.equal(existsSync(join(root, "never.txt")), false);
    assert.equal((await pool.run(req("echo next"))).stdout, "next\n");
  });

  test("withdrawQueued hands back a queued step that never runs", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root, 1);
    const first = pool.run(req("sleep 0.5"));
    const queued = pool.run(req("touch never.txt"));
    pool.withdrawQueued();
    const r = await queued;
    assert.equal(r.withdrawn, true);
    assert.equal(r.exitCode, null);
    assert.equal((await first).exitCode, 0);
    await sleep(200);
    assert.equal(existsSync(join(root, "never.txt")), false);
    // The launcher got the skip line for it: the next step is the next one it runs.
    const next = await pool.run(req("echo next"));
    assert.equal(next.stdout, "next\n");
  });

  /** Keep this thread busy, so that the director hears nothing from its launchers meanwhile. */
  function block(ms: number): void {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      // Spin: the launcher must go on to the queued step without the director.
    }
  }

  test("a queued step starts without the director; withdrawing it then fails and it runs", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = await readyPool(root);
    const first = pool.run(req("date +%s%N > t1"));
    const queued = pool.run(req("date +%s%N > t2; echo ran"));
    // While this thread spins, the launcher finishes the first step and takes the second's go
    // token by itself: it has started by the time the withdrawal comes.
    block(1500);
    assert.ok(existsSync(join(root, "t2")), "the queued step ran while the director was busy");
    pool.withdrawQueued();
    const r = await queued;
    assert.equal(r.withdrawn, undefined);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, "ran\n");
    assert.equal((await first).exitCode, 0);
    assert.equal((await pool.run(req("echo next"))).stdout, "next\n");
  });

  test("a signal for a queued step that started meanwhile reaches it", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = await readyPool(root);
    const first = pool.run(req("true"));
    const queued = pool.run(req("echo $$ > pid; exec sleep 20"));
    block(1500);
    const started = Date.now();
    pool.signalAll("SIGTERM");
    const r = await queued;
    assert.equal(r.signal, "SIGTERM");
    assert.ok(Date.now() - started < 5000, "the sleep was cut short");
    assert.equal((await first).exitCode, 0);
    assert.equal((await pool.run(req("echo again"))).stdout, "again\n");
  });

  test("steps withdrawn one after another from behind a long step are skipped in order", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root, 1);
    const long = pool.run(req("sleep 0.5"));
    for (let i = 0; i < 3; i++) {
      const queued = pool.run(req(`touch never${i}.txt`));
      pool.withdrawQueued();
      assert.equal((await queued).withdrawn, true);
    }
    assert.equal((await long).exitCode, 0);
    const next = await pool.run(req("echo next"));
    assert.equal(next.stdout, "next\n");
    await sleep(200);
    for (let i = 0; i < 3; i++) assert.equal(existsSync(join(root, `never${i}.txt`)), false);
  });

  test("warm() starts the launcher of every idle lane, and steps then run on those", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root, 3);
    assert.deepEqual(pool.launcherPids(), []);
    pool.warm();
    const pids = pool.launcherPids();
    assert.equal(pids.length, 3);
    pool.warm();
    assert.deepEqual(pool.launcherPids(), pids, "a second warm() starts no more");
    const results = await Promise.all([pool.run(req("echo $PPID")), pool.run(req("echo $PPID")), pool.run(req("echo $PPID"))]);
    // Each step is exec'd by its launcher's subshell, so its parent is the launcher itself.
    assert.deepEqual(results.map((r) => Number(r.stdout)).sort(), [...pids].sort());
  });

  test("the director takes each step's start from the launcher's start FIFO", { timeout: 60_000 }, async () => {
    // The "+" of every step goes to a FIFO that nothing watches: unless the director reads it
    // as steps end, it fills up (64 KiB) and the launcher blocks for good.
    const root = tempDir();
    const pool = await readyPool(root);
    const [pid] = pool.launcherPids();
    const base = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).pop()!;
    for (let i = 0; i < 40; i++) {
      const queued = [pool.run(req("true")), pool.run(req("true")), pool.run(req("true"))];
      for (const r of await Promise.all(queued)) assert.equal(r.exitCode, 0);
    }
    // Opened for reading without blocking; the launcher holds a writer, so empty means EAGAIN.
    const fd = openSync(`${base}p`, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    try {
      assert.throws(() => readSync(fd, Buffer.alloc(64), 0, 64, null), /EAGAIN/, "the start FIFO holds unread starts");
    } finally {
      closeSync(fd);
    }
    assert.deepEqual(pool.launcherPids(), [pid], "all steps ran on the first launcher");
  });

  test("signalAll reaches the running step", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root);
    const run = pool.run(req(TWO_SLEEPS));
    const pids = await pidsFrom(join(root, "pids"), 2);
    pool.signalAll("SIGTERM");
    const res = await run;
    assert.equal(res.signal, "SIGTERM");
    assert.equal(res.exitCode, null);
    await until(() => pids.every((p) => !alive(p)), 2000, "both sleeps to die");
    // The worker is fine afterwards.
    assert.equal((await pool.run(req("echo again"))).stdout, "again\n");
  });

  test("a signal requested right after run() is not lost", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = await readyPool(root);
    for (let i = 0; i < 5; i++) {
      const started = Date.now();
      const run = pool.run(req("sleep 20"));
      pool.signalAll("SIGTERM");
      const res = await run;
      assert.equal(res.signal, "SIGTERM");
      assert.ok(Date.now() - started < 5000);
    }
  });

  test("close() during a step kills its whole process group", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root);
    const run = pool.run(req(TWO_SLEEPS));
    const pids = await pidsFrom(join(root, "pids"), 2);
    assert.ok(pids.every(alive));
    const launchers = pool.launcherPids();
    const started = Date.now();
    await pool.close();
    const res = await run;
    assert.equal(res.signal, "SIGTERM");
    await until(() => pids.every((p) => !alive(p)), 1500 - (Date.now() - started), "both sleeps to die");
    assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
    assert.ok(launchers.every((p) => !alive(p)), "launcher shells exited");
    assert.equal(pool.idleCount(), 0);
    await assert.rejects(pool.run(req("true")), /closed/);
  });

  test("close() escalates to SIGKILL after graceMs", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root);
    const run = pool.run(req(`trap '' TERM; echo $$ > pids; while :; do sleep 0.05; done`));
    const [pid] = await pidsFrom(join(root, "pids"), 1);
    const started = Date.now();
    await pool.close({ graceMs: 300 });
    const res = await run;
    assert.equal(res.signal, "SIGKILL");
    const took = Date.now() - started;
    assert.ok(took >= 250 && took < 2000, `took ${took} ms`);
    await until(() => !alive(pid!), 1000, "the step to die");
  });
});

describe("launcher shell", () => {
  test("a launcher killed from outside is replaced", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root);
    // The step's shell is exec'd by the launcher's subshell, so its parent is the launcher.
    const first = await pool.run(req("echo $PPID"));
    const launcher = Number(first.stdout);
    assert.ok(launcher > 0 && alive(launcher));
    process.kill(launcher, "SIGKILL");
    const next = await pool.run(req("echo $PPID"));
    assert.equal(next.exitCode, 0);
    assert.notEqual(Number(next.stdout), launcher);
    // A step that kills its launcher fails clearly, and takes nothing with it.
    const rogue = await pool.run(req("sleep 30 & echo $! > pids; kill -9 $PPID; wait"));
    assert.equal(rogue.spawnError, "The step's launcher shell died");
    const [pid] = await pidsFrom(join(root, "pids"), 1);
    await until(() => !alive(pid!), 2000, "the step's sleep to die");
    assert.equal((await pool.run(req("echo fine"))).stdout, "fine\n");
  });
});

describe("director death", () => {
  test("a SIGKILLed director takes its running steps along", { timeout: 30_000 }, async () => {
    const root = tempDir();
    // A stand-in director: a node process with a pool running a step, killed without warning
    // (no 'exit' handler runs). The launcher's watchdog must then kill the step's group.
    const script = `
      import { WorkerPool } from ${JSON.stringify(new URL("../../src/workers/pool.ts", import.meta.url).href)};
      const pool = new WorkerPool({ size: 1, root: ${JSON.stringify(root)}, tsNode: process.execPath, tsLoader: "tsx" });
      await pool.run({ command: ${JSON.stringify(TWO_SLEEPS)}, workdir: "./", env: {}, inputs: [], outputs: [] });
    `;
    const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), "--input-type=module", "-e", script], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    const exited = new Promise<void>((r) => child.on("exit", () => r()));
    const pids = await pidsFrom(join(root, "pids"), 2);
    assert.ok(pids.every(alive));
    child.kill("SIGKILL");
    await exited;
    await until(() => pids.every((p) => !alive(p)), 2000, "both sleeps to die");
  });
});

describe("large files", () => {
  test("inputs and outputs above the synchronous limit are hashed completely", { timeout: 30_000 }, async () => {
    const root = tempDir();
    const pool = makePool(root);
    const content = Buffer.alloc(9 * 1024 * 1024 + 123, "ab");
    writeFileSync(join(root, "big-in"), content);
    const res = await pool.run(req("cp big-in big-out && printf z >> big-out", {
      inputs: [{ path: "big-in", known: null }],
      outputs: [{ path: "big-out", known: null }],
    }));
    assert.equal(res.exitCode, 0, res.stderr);
    assert.deepEqual(res.inputHashes[0]?.digest, new Uint8Array(blake3(content)));
    assert.equal(res.outputHashes[0]?.size, content.length + 1);
    assert.deepEqual(res.outputHashes[0]?.digest, new Uint8Array(blake3(Buffer.concat([content, Buffer.from("z")]))));
    // A missing large input is reported like a small one.
    const missing = await pool.run(req("true", { inputs: [{ path: "big-in", known: null }, { path: "nope", known: null }] }));
    assert.deepEqual(missing.invalidInputs, ["Path does not exist: nope"]);
    assert.ok(missing.inputHashes[0] !== null);
  });
});

describe("command building", () => {
  test("a .ts or .mts first word runs through node and the loader", () => {
    assert.equal(effectiveCommand("./plan.ts", "/n/node", "/l/x.mjs"), "/n/node --import /l/x.mjs ./plan.ts");
    assert.equal(effectiveCommand("  gen.mts a b", "/my node", "file:///l.mjs"), `'/my node' --import file:///l.mjs gen.mts a b`);
    assert.equal(effectiveCommand("cat x.ts", "/n", "/l"), "cat x.ts");
    assert.equal(effectiveCommand("./x.tsx", "/n", "/l"), "./x.tsx");
    assert.equal(effectiveCommand("./x.ts>out", "/n", "/l"), "./x.ts>out");
  });

  test("shell quoting and step snippets", () => {
    assert.equal(shellQuote("a/b.c"), "a/b.c");
    assert.equal(shellQuote(""), "''");
    assert.equal(shellQuote("it's $x"), `'it'\\''s $x'`);
    assert.equal(stepSnippet("cp a b", null, {}), "command -v cp >/dev/null || exec /bin/sh -c 'cp a b'\ncp a b");
    assert.equal(stepSnippet("cp a b > c", null, {}), "exec /bin/sh -c 'cp a b > c'");
    assert.equal(
      stepSnippet("echo", "/r/d/", { A: "1", "x.y": "2" }),
      "cd /r/d/ || exit 2\nexport A=1\nexec env x.y=2 /bin/sh -c echo",
    );
    assert.equal(
      stepSnippet(" 'my cp'  'a b' c ", null, { "x.y": "2" }),
      "command -v 'my cp' >/dev/null || exec env x.y=2 /bin/sh -c ' '\\''my cp'\\''  '\\''a b'\\'' c '\nexec env x.y=2 'my cp'  'a b' c",
    );
  });

  test("only simple commands of plain words naming a program are exec'd directly", () => {
    for (const simple of ["cp a b", "./gen.py --n=3 out/x.txt", "'my tool' 'it is' x", "/n/node --import file:///l.mjs p.ts", "cp a\tb"]) {
      assert.equal(directCommand(simple)?.command, simple.trim(), simple);
    }
    for (const shelly of [
      "", "   ", "echo hi", "'echo' hi", "cd x", "test -f a", "[ -f a ]", ". ./env.sh", ": nothing", "exit 3",
      "if", "A=1 cmd", "cp $x y", "cp a b; cp c d", "cp a b && x", "cmd > out", "cmd < in", "cmd | wc",
      "cp *.txt d", "cp ~/a b", "cmd `x`", 'cp "a b" c', "cp a\\ b c", "cmd # comment", "cmd &",
      "x\ny", "(cmd)", "{ cmd; }", "-x a", "cp a{b,c} d", "cp a? b", "cp [ab] c", "!cmd",
      // The launcher's functions: the step's subshell would call those instead.
      "tsup_io x", "tsup_go", "tsup_now",
    ]) {
      assert.equal(directCommand(shelly), null, JSON.stringify(shelly));
    }
  });
});
