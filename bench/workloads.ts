// Workload generation for the benchmark suite (bench/suite.ts): one abstract list of steps per
// workload, written out as a tsup plan, a build.ninja, a Makefile and a script for `xargs -P`.
//
// The list of steps is the single source of truth. ninja, make and xargs get it verbatim, one
// command per step. The tsup plan instead contains a loop, like a real plan would, because a
// plan.ts with 100,000 literal step() calls would measure tsx parsing a huge file rather than
// tsup. The loop must therefore produce exactly the same commands; the runner checks that by
// comparing tsup's START lines of every cold build with this list (see checkStartedCommands).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export type Kind = "flat" | "chain" | "fan" | "pool";
export const KINDS: readonly Kind[] = ["flat", "chain", "fan", "pool"];

export type Tool = "tsup" | "ninja" | "make" | "xargs";
export const TOOLS: readonly Tool[] = ["tsup", "ninja", "make", "xargs"];

export interface StepSpec {
  command: string;
  inp: string[];
  out: string[];
}

/** A phase of the xargs script: commands run by one `xargs -P <parallel>`, after the previous phase. */
export interface XargsPhase {
  commands: string[];
  parallel: number;
}

export interface Workload {
  kind: Kind;
  /** The N of the workload: number of steps, not counting the fan-in step or tsup's plan. */
  n: number;
  steps: StepSpec[];
  /** Static input files with their initial content. */
  inputs: Map<string, string>;
  /** Pool that every step is in (only the pool workload). */
  pool: { name: string; size: number } | null;
  /** The input edited before the "one input changed" rerun. */
  changed: string;
  /** How many steps must execute after that edit (tsup's plan excluded). */
  rerunSteps: number;
  /** An output whose content proves the edit propagated to the end of the graph. */
  probe: string;
  /** Directories that must exist before a build (created by the harness for every tool). */
  dirs: string[];
  xargs: XargsPhase[];
}

export function inputContent(i: number): string {
  return `content of input file ${i}\n`;
}

/** Content written into the changed input before repetition `rep`'s rerun: new every time. */
export function editedContent(rep: number): string {
  return `edited for the one-changed rerun of repetition ${rep}\n`;
}

// One workload builder per kind. The shell commands here are what every tool runs; the plan
// templates further down must produce the same strings.

function flat(n: number, workers: number): Workload {
  const steps: StepSpec[] = [];
  const inputs = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const inp = `in/f${i}.txt`;
    const out = `out/f${i}.txt`;
    inputs.set(inp, inputContent(i));
    steps.push({ command: `cp ${inp} ${out}`, inp: [inp], out: [out] });
  }
  const mid = Math.floor(n / 2);
  return {
    kind: "flat",
    n,
    steps,
    inputs,
    pool: null,
    changed: `in/f${mid}.txt`,
    rerunSteps: 1,
    probe: `out/f${mid}.txt`,
    dirs: ["in", "out"],
    xargs: [{ commands: steps.map((s) => s.command), parallel: workers }],
  };
}

function chain(n: number): Workload {
  // Step 0 copies the only static input; step i copies the output of step i-1. Editing that
  // input therefore reruns the whole chain for every tool: the "one changed" rerun of a chain
  // measures N sequential steps with a loaded state, and the probe (the last file) proves the
  // change arrived at the end.
  const steps: StepSpec[] = [];
  let prev = "in/f0.txt";
  for (let i = 0; i < n; i++) {
    const out = `out/f${i}.txt`;
    steps.push({ command: `cp ${prev} ${out}`, inp: [prev], out: [out] });
    prev = out;
  }
  return {
    kind: "chain",
    n,
    steps,
    inputs: new Map([["in/f0.txt", inputContent(0)]]),
    pool: null,
    changed: "in/f0.txt",
    rerunSteps: n,
    probe: prev,
    dirs: ["in", "out"],
    // A chain has no parallelism: xargs runs it in order, one at a time.
    xargs: [{ commands: steps.map((s) => s.command), parallel: 1 }],
  };
}

/**
 * The fan-in command reads all N outputs without naming them on its command line: with 100,000
 * names the single `sh -c` argument would exceed Linux's 128 KiB limit per argument. `printf` is
 * a shell builtin, so the expanded glob never passes through exec; xargs splits the cat calls.
 */
export const FAN_COMMAND = "printf '%s\\n' out/f*.txt | xargs cat > all.txt";

function fan(n: number, workers: number): Workload {
  const base = flat(n, workers);
  const fanStep: StepSpec = { command: FAN_COMMAND, inp: base.steps.map((s) => s.out[0]!), out: ["all.txt"] };
  return {
    ...base,
    kind: "fan",
    steps: [...base.steps, fanStep],
    rerunSteps: 2,
    probe: "all.txt",
    xargs: [
      { commands: base.steps.map((s) => s.command), parallel: workers },
      { commands: [FAN_COMMAND], parallel: 1 },
    ],
  };
}

/** The pool workload: 200 steps of `sleep 0.05` in a pool of size 2 (ideal makespan 5 s). */
export const POOL_STEPS = 200;
export const POOL_SIZE = 2;
export const POOL_SLEEP = 0.05;

function pooled(): Workload {
  // Each step also writes a small file, so that the harness can check every step ran and ninja
  // and make have a target per step. `echo` is a shell builtin: the only process is the sleep.
  const steps: StepSpec[] = [];
  for (let i = 0; i < POOL_STEPS; i++) {
    const out = `out/p${i}.txt`;
    steps.push({ command: `sleep ${POOL_SLEEP}; echo ${i} > ${out}`, inp: [], out: [out] });
  }
  return {
    kind: "pool",
    n: POOL_STEPS,
    steps,
    inputs: new Map(),
    pool: { name: "sleepers", size: POOL_SIZE },
    changed: "",
    rerunSteps: 0,
    probe: `out/p${POOL_STEPS - 1}.txt`,
    dirs: ["out"],
    // make and xargs have no pools. Since every step is in the one pool, running them with
    // exactly pool-size jobs is equivalent.
    xargs: [{ commands: steps.map((s) => s.command), parallel: POOL_SIZE }],
  };
}

export function makeWorkload(kind: Kind, n: number, workers: number): Workload {
  switch (kind) {
    case "flat":
      return flat(n, workers);
    case "chain":
      return chain(n);
    case "fan":
      return fan(n, workers);
    case "pool":
      return pooled();
  }
}

// ---------------------------------------------------------------------------------------------
// tsup: plan.ts

/**
 * The plan of a workload, as a user would write it: a loop, `${inp}`/`${out}` placeholders.
 * The output directory is created by the harness (as for the other tools) and declared static.
 */
export function tsupPlan(w: Workload): string {
  const head = `// Generated by bench/workloads.ts: the ${w.kind} workload, N = ${w.n}.\n` +
    `import { declareStatic, pool, step } from "tsup-flow";\n\nconst N = ${w.n};\n`;
  switch (w.kind) {
    case "flat":
    case "fan":
      return (
        head +
        "const inputs = Array.from({ length: N }, (_, i) => `in/f${i}.txt`);\n" +
        "const outputs = Array.from({ length: N }, (_, i) => `out/f${i}.txt`);\n" +
        'declareStatic("out/", inputs);\n' +
        'for (let i = 0; i < N; i++) step("cp ${inp} ${out}", { inp: inputs[i]!, out: outputs[i]! });\n' +
        (w.kind === "fan" ? `step(${JSON.stringify(FAN_COMMAND.replace("all.txt", "${out}"))}, { inp: outputs, out: "all.txt" });\n` : "")
      );
    case "chain":
      return (
        head +
        'declareStatic("out/", "in/f0.txt");\n' +
        'let prev = "in/f0.txt";\n' +
        "for (let i = 0; i < N; i++) {\n" +
        "  const out = `out/f${i}.txt`;\n" +
        '  step("cp ${inp} ${out}", { inp: prev, out });\n' +
        "  prev = out;\n" +
        "}\n"
      );
    case "pool":
      return (
        head +
        'declareStatic("out/");\n' +
        `pool(${JSON.stringify(w.pool!.name)}, ${w.pool!.size});\n` +
        "for (let i = 0; i < N; i++) {\n" +
        `  step(\`sleep ${POOL_SLEEP}; echo \${i} > \` + "\${out}", ` +
        `{ out: \`out/p\${i}.txt\`, pool: ${JSON.stringify(w.pool!.name)} });\n` +
        "}\n"
      );
  }
}

// ---------------------------------------------------------------------------------------------
// ninja, make, xargs: one command per step, verbatim

function ninjaEscape(s: string): string {
  return s.replace(/\$/g, "$$$$").replace(/ /g, "$ ").replace(/:/g, "$:");
}

export function ninjaFile(w: Workload): string {
  // One generic rule whose command is set per edge, so ninja runs exactly the listed string.
  const lines = ["# Generated by bench/workloads.ts", "rule run", "  command = $cmd", ""];
  if (w.pool) lines.push(`pool ${w.pool.name}`, `  depth = ${w.pool.size}`, "");
  for (const s of w.steps) {
    lines.push(`build ${s.out.map(ninjaEscape).join(" ")}: run ${s.inp.map(ninjaEscape).join(" ")}`);
    lines.push(`  cmd = ${s.command.replace(/\$/g, "$$$$")}`);
    if (w.pool) lines.push(`  pool = ${w.pool.name}`);
  }
  return lines.join("\n") + "\n";
}

export function makefile(w: Workload): string {
  // Only explicit rules; the harness runs make with -r (no built-in implicit rules), the usual
  // setting for a generated Makefile, so make does not search for ways to remake the inputs.
  const esc = (s: string): string => s.replace(/\$/g, "$$$$");
  const outs = w.steps.flatMap((s) => s.out);
  const lines = ["# Generated by bench/workloads.ts", ".PHONY: all", `all: ${outs.join(" ")}`, ""];
  for (const s of w.steps) {
    lines.push(`${s.out.join(" ")}: ${s.inp.join(" ")}`, `\t${esc(s.command)}`);
  }
  return lines.join("\n") + "\n";
}

export function xargsScript(w: Workload): string {
  // Each line of a commands file becomes the one argument of `sh -c`, the way ninja and tsup
  // run a command. -d '\n' turns off xargs' own quote processing.
  const lines = ["#!/bin/sh", "# Generated by bench/workloads.ts", "set -e"];
  w.xargs.forEach((p, i) => lines.push(`xargs -d '\\n' -n 1 -P ${p.parallel} sh -c < xargs-phase${i}.txt`));
  return lines.join("\n") + "\n";
}

/** Writes the inputs and the build description of `tool` for workload `w` into `dir`. */
export function generate(dir: string, w: Workload, tool: Tool): void {
  mkdirSync(dir, { recursive: true });
  writeInputs(dir, w);
  switch (tool) {
    case "tsup":
      writeFileSync(join(dir, "plan.ts"), tsupPlan(w));
      break;
    case "ninja":
      writeFileSync(join(dir, "build.ninja"), ninjaFile(w));
      break;
    case "make":
      writeFileSync(join(dir, "Makefile"), makefile(w));
      break;
    case "xargs":
      writeFileSync(join(dir, "run.sh"), xargsScript(w));
      w.xargs.forEach((p, i) => writeFileSync(join(dir, `xargs-phase${i}.txt`), p.commands.join("\n") + "\n"));
      break;
  }
}

/** (Re)writes every static input with its initial content, and creates the directories. */
export function writeInputs(dir: string, w: Workload): void {
  for (const d of w.dirs) mkdirSync(join(dir, d), { recursive: true });
  for (const [path, content] of w.inputs) writeFileSync(join(dir, path), content);
}
