// A look at the terminal UI without a real workflow: synthetic steps (some skipped, some in a
// one-slot `inkscape` pool, one failing) run on fake workers, then the watch phase. Keys: `?`
// answers with a help page, `q` or Ctrl-C ends the demo. It also ends by itself after the watch
// phase has been shown for a few seconds, so it can run unattended (e.g. in tmux).
//
// Run: node --import tsx bench/tui-demo.ts [steps=40] [workers=4] [burst=0]
// `burst` first pushes that many SKIP events as fast as possible (a big no-op build), and the
// heap size is printed at the end, to see that memory stays flat however many lines scroll by.
import { performance } from "node:perf_hooks";

import type { PoolUsage, StepCounts, StepRef, TsupEvent } from "../src/events.js";
import { startTui } from "../src/tui/start.js";
import type { Key } from "../src/tui/start.js";

const stepCount = Number(process.argv[2] ?? 40);
const workers = Number(process.argv[3] ?? 4);
const burst = Number(process.argv[4] ?? 0);
const watchSeconds = Number(process.env["DEMO_WATCH_SECONDS"] ?? 4);

if (!process.stdout.isTTY) {
  console.error("tui-demo: stdout is not a terminal");
  process.exit(2);
}

let stop: () => void = () => {};
const stopped = new Promise<void>((resolve) => (stop = resolve));

const tui = startTui({
  stdout: process.stdout,
  stdin: process.stdin,
  color: true,
  showPerf: false,
  workers,
  onKey(key: Key) {
    if (key === "q" || key === "interrupt") {
      tui.sink.emit({ kind: "keyboard", message: key === "q" ? "Quit" : "Interrupted" });
      stop();
    } else if (key === "?") {
      tui.sink.emit({
        kind: "keyboard",
        message: "Help",
        pages: [{ title: "Keys", text: "q  quit\n?  this help\nCtrl-C  interrupt" }],
      });
    } else {
      const name = typeof key === "string" ? key : JSON.stringify(key.other);
      tui.sink.emit({ kind: "warning", message: `No action for key ${name}` });
    }
  },
});

const emit = (event: TsupEvent): void => tui.sink.emit(event);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function makeStep(i: number): StepRef {
  const pool = i % 5 === 0 ? "inkscape" : undefined;
  const command =
    pool !== undefined
      ? `inkscape --export-filename=figures/figure-${i}.pdf figures/figure-${i}.svg`
      : `python3 compute.py --case ${i} --out results/case-${i}.json`;
  return { key: `step:${i}`, command, workdir: i % 3 === 0 ? `chapter-${i % 7}/` : "./", pool };
}

async function main(): Promise<void> {
  emit({ kind: "director", message: "Listening on /tmp/tsup-demo.sock" });
  emit({ kind: "phase", phase: "run" });

  const heapBefore = process.memoryUsage().heapUsed;
  if (burst > 0) {
    for (let i = 0; i < burst; i++) {
      emit({ kind: "skip", step: { key: `old:${i}`, command: `cp data/${i}.csv out/`, workdir: "./" }, pages: [] });
      // Yield now and then, as a director busy with real work would.
      if (i % 5000 === 4999) await sleep(0);
    }
  }

  const steps = Array.from({ length: stepCount }, (_, i) => makeStep(i));
  const counts: StepCounts = { total: stepCount + burst, succeeded: 0, skipped: burst, failed: 0, running: 0, pending: stepCount };
  const queue = [...steps];
  const running = new Set<StepRef>();
  let poolBusy = 0;
  const pools = (): PoolUsage[] => [
    { name: "inkscape", size: 1, running: poolBusy, queued: queue.filter((s) => s.pool === "inkscape").length },
  ];
  const progress = () => emit({ kind: "progress", counts: { ...counts }, pools: pools(), workers });
  const ticker = setInterval(progress, 200);

  await new Promise<void>((resolve) => {
    const fill = (): void => {
      for (let i = 0; i < queue.length && running.size < workers; ) {
        const s = queue[i]!;
        if (s.pool === "inkscape" && poolBusy >= 1) {
          i++;
          continue;
        }
        queue.splice(i, 1);
        counts.pending -= 1;
        // Every fourth step is up to date and skipped without running.
        if (Number(s.key.split(":")[1]) % 4 === 1) {
          emit({ kind: "skip", step: s, pages: [] });
          counts.skipped += 1;
          continue;
        }
        running.add(s);
        if (s.pool !== undefined) poolBusy += 1;
        counts.running = running.size;
        emit({ kind: "start", step: s, time: performance.now() });
        const ms = 300 + Math.random() * 2500;
        setTimeout(() => {
          running.delete(s);
          if (s.pool !== undefined) poolBusy -= 1;
          counts.running = running.size;
          const fail = s.key === "step:7";
          if (fail) counts.failed += 1;
          else counts.succeeded += 1;
          emit({
            kind: "finish",
            step: s,
            outcome: fail ? "fail" : "success",
            pages: fail
              ? [{ title: "Step info", text: `command: ${s.command}\nreturn code: 1` }, { title: "Standard error", text: "Traceback (most recent call last):\n  ValueError: case 7 diverged" }]
              : [],
            durationMs: ms,
          });
          fill();
        }, ms);
      }
      if (queue.length === 0 && running.size === 0) resolve();
    };
    fill();
  });
  clearInterval(ticker);
  progress();

  emit({ kind: "workflow", message: "Run phase done", pages: [] });
  emit({ kind: "phase", phase: "watch" });
  let watchTimer: NodeJS.Timeout | undefined;
  await Promise.race([stopped, new Promise((resolve) => (watchTimer = setTimeout(resolve, watchSeconds * 1000)))]);
  clearTimeout(watchTimer);
  const heapAfter = process.memoryUsage().heapUsed;
  emit({ kind: "director", message: "See you!" });
  await tui.close();
  process.stdout.write(
    `demo closed; heap ${(heapBefore / 2 ** 20).toFixed(1)} MiB -> ${(heapAfter / 2 ** 20).toFixed(1)} MiB` +
      ` after ${burst} burst lines; stdin raw: ${String(process.stdin.isRaw)}\n`,
  );
}

main().catch(async (err: unknown) => {
  await tui.close();
  console.error(err);
  process.exitCode = 1;
});
