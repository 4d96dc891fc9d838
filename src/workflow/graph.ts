// The workflow graph of one session: files, steps, pools, and the rules that keep them consistent.
// Pure data and logic, no I/O. Every declaration is validated completely before anything is
// changed, so a rejected declaration leaves the graph exactly as it was.
//
// Two relations matter:
//  - supplier -> consumer: a file is required by the steps that read it (inputs, workdir, the
//    directory an output goes into); a step supplies its outputs. This one must stay acyclic.
//  - creator -> product: the step (or the root, for the boot plan) that declared a static file,
//    a pool or a step. When a step is skipped, its products are declared again from its record.
//
// No graph walk here is recursive: chains of 100,000 steps must not overflow the stack.
import { describeStep } from "../events.js";
import { isAlwaysStatic, isDirPath, parentPath } from "../paths.js";
import type { Fingerprint, GlobRecord, SavedStep } from "../state/types.js";
import { sameDefinition, type StepDefinition } from "./definition.js";

export type { StepDefinition } from "./definition.js";

/**
 * File states:
 *  static   declared by a user (never deleted by tsup)
 *  pending  an output not built yet, or a placeholder for an input nobody declared (yet)
 *  built    an output of a step that succeeded or was skipped
 *  volatile an output that is cleaned but never hashed and never an input
 */
export type FileState = "static" | "pending" | "built" | "volatile";

/**
 * Step states: pending (waiting for inputs, blocked, or not needed) -> queued (handed to the
 * scheduler) -> running -> succeeded | failed. A skipped step goes straight to succeeded.
 */
export type StepState = "pending" | "queued" | "running" | "succeeded" | "failed";

/** yes: must run; implied: optional but something mandatory needs it; no: optional, unneeded. */
export type Mandatory = "yes" | "implied" | "no";

// At 100,000 steps every per-node allocation counts (Node 20 has 8-byte pointers, an empty Set
// costs about 150 bytes, and the first push() gives an array room for 17 elements). Containers
// that most nodes never fill start as the shared, frozen empties below and are replaced by a
// node's own container on first write (only Graph writes them). Frozen, so that a write that
// forgets to do so throws instead of changing every node at once.
const NO_STEPS: StepNode[] = Object.freeze([]) as unknown as StepNode[];
const NO_FILES: FileNode[] = Object.freeze([]) as unknown as FileNode[];
const NO_STRINGS: string[] = Object.freeze([]) as unknown as string[];
const NO_GLOBS: GlobRecord[] = Object.freeze([]) as unknown as GlobRecord[];
const NO_FILE_SET: ReadonlySet<FileNode> = new Set<FileNode>();

/** What a step declared while it ran (or while it was replayed), in order. */
export interface Products {
  statics: string[];
  steps: StepNode[];
  pools: Array<[string, number]>;
}
const NO_PRODUCTS: Products = Object.freeze({
  statics: Object.freeze([]) as unknown as string[],
  steps: NO_STEPS,
  pools: Object.freeze([]) as unknown as Array<[string, number]>,
});

/** What a step declared about itself with amend() (root-relative paths). */
export interface AmendedPaths {
  inp: string[];
  out: string[];
  vol: string[];
}
const NO_AMENDED: AmendedPaths = Object.freeze({
  inp: Object.freeze([]) as unknown as string[],
  out: Object.freeze([]) as unknown as string[],
  vol: Object.freeze([]) as unknown as string[],
});

/** The shared empty `amendedEnv`: clear() is harmless, add() would change every step. */
class NoEnv extends Set<string> {
  override add(): this {
    throw new Error("internal error: amendedEnv must be replaced before it is added to");
  }
}
const NO_ENV: Set<string> = new NoEnv();

/** The step's own products, allocated on its first declaration. */
function ownProducts(step: StepNode): Products {
  if (step.products === NO_PRODUCTS) step.products = { statics: [], steps: [], pools: [] };
  return step.products;
}

let lastVisitStamp = 0;

/** A new stamp for FileNode.visited and StepNode.visited, different from every earlier one. */
export function visitStamp(): number {
  return ++lastVisitStamp;
}

export class FileNode {
  state: FileState = "pending";
  /** The step that lists this file as an output or volatile output. */
  producer: StepNode | null = null;
  /** The step that declared this file static; null with state static means the root did. */
  declarer: StepNode | null = null;
  /** Steps that cannot start before this file is available (changed only by Graph). */
  consumers: StepNode[] = NO_STEPS;
  /**
   * A static file that a skipped step declared before but that is gone now. It stays declared
   * (so nothing else can claim the path) and its consumers wait until it is back.
   */
  absent = false;
  /**
   * Stamp of the last walk over all steps that met this file (see visitStamp): such a walk can
   * tell whether it saw a file before without a set of 200,000 paths beside it.
   */
  visited = 0;
  constructor(readonly path: string) {}

  get available(): boolean {
    return (this.state === "static" && !this.absent) || this.state === "built";
  }

  addConsumer(step: StepNode): void {
    // Most files have one consumer: a one-element list, not the 17 slots push() would reserve.
    if (this.consumers.length === 0) this.consumers = [step];
    else this.consumers.push(step);
  }
}


export class StepNode {
  state: StepState = "pending";
  mandatory: Mandatory;
  /**
   * Every file that must be available before the step starts: inputs, workdir, output dirs.
   * This and the other node lists below are changed only by Graph (see NO_STEPS).
   */
  requires: FileNode[] = NO_FILES;
  /** How many of `requires` are not available yet. */
  waiting = 0;
  outputs: FileNode[] = NO_FILES;
  volatiles: FileNode[] = NO_FILES;
  /** What this step declared while it ran (or while it was replayed), in order. */
  products: Products = NO_PRODUCTS;
  /** What the step declared about itself with amend() (root-relative paths), in this session. */
  amended: AmendedPaths = NO_AMENDED;
  /** Requirements added by amend(); removed again before the step reruns. */
  amendedRequires: ReadonlySet<FileNode> = NO_FILE_SET;
  /** True while `amended` came from the previous run's record rather than from this session. */
  amendedFromRecord = false;
  /**
   * Amended inputs that were not available when amended: the step must run again later. Like
   * `globs`, a shared frozen empty list until something is added (addRescheduleDue): two empty
   * arrays per step were some 6 MB at 100,000 steps.
   */
  rescheduleDueTo: string[] = NO_STRINGS;
  /** Env vars the step depends on beyond its definition (getenv, `${VAR}` in paths); see Graph.addEnv. */
  amendedEnv: Set<string> = NO_ENV;
  /** The step's record from an earlier run with the same definition: a candidate for skipping. */
  record: SavedStep | null = null;
  /** Index of `record` in the loaded state, to find the steps it defined. */
  recordIndex = -1;
  /** The fingerprint of this session's successful execution or skip. */
  fingerprint: Fingerprint | null = null;
  /** Globs the step ran while it executed (or replayed), with the files they matched (addGlob). */
  globs: GlobRecord[] = NO_GLOBS;
  /** True when the step was skipped (replayed) in this session rather than executed. */
  replayed = false;
  /**
   * Stamp of the last walk over all steps that met this step (see visitStamp), and what that
   * walk noted about it: the state to save notes the step's position in the list it saves, so
   * that the steps it defined find it without a map of 100,000 steps.
   */
  visited = 0;
  visitIndex = -1;

  constructor(
    readonly key: string,
    readonly def: StepDefinition,
    readonly creator: StepNode | null,
  ) {
    this.mandatory = def.optional ? "no" : "yes";
  }

  /** Set for the boot plan, whatever its file is called. */
  isBootPlan = false;

  /** Plans (the boot plan and sub-plans) fail with their own exit status. */
  get isPlan(): boolean {
    if (this.isBootPlan) return true;
    const first = this.def.command.split(/\s/, 1)[0] ?? "";
    return first === "plan.ts" || first.endsWith("/plan.ts");
  }

  /** Ready to be checked for skipping or to run. */
  get runnable(): boolean {
    return this.state === "pending" && this.waiting === 0 && this.mandatory !== "no" && !this.def.block;
  }
}

export interface PoolDef {
  size: number;
  definedBy: StepNode | null;
}

export function stepKey(command: string, workdir: string): string {
  return describeStep({ command, workdir });
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: string };

function fail<T>(error: string): Outcome<T> {
  return { ok: false, error };
}

/** Note a glob the step ran (see StepNode.globs). */
export function addGlob(step: StepNode, glob: GlobRecord): void {
  if (step.globs === NO_GLOBS) step.globs = [];
  step.globs.push(glob);
}

/** Note amended inputs the step must wait for before it runs again (see StepNode.rescheduleDueTo). */
export function addRescheduleDue(step: StepNode, paths: readonly string[]): void {
  if (paths.length === 0) return;
  if (step.rescheduleDueTo === NO_STRINGS) step.rescheduleDueTo = [];
  step.rescheduleDueTo.push(...paths);
}

/** Forget the inputs the step waited for (it is about to run again). */
export function clearRescheduleDue(step: StepNode): void {
  step.rescheduleDueTo = NO_STRINGS;
}

export function describeStepKey(step: StepNode | null): string {
  return step === null ? "the root" : `step \`${step.key}\``;
}

/**
 * Make the definition name its files with the nodes' own string objects. A path declared static
 * by the plan and then used as an input arrives as two equal strings: with one of them, memory
 * holds each path once, and comparing paths or looking them up in a map (fingerprints, the file
 * table, the state file) finds the same object instead of comparing characters, which at 100,000
 * steps made saving the state markedly slower.
 */
function sharePathStrings(def: StepDefinition, step: StepNode): void {
  // requires starts with the inputs, in order, unless an input was listed twice.
  const inp = def.inp;
  for (let j = 0; j < inp.length && j < step.requires.length; j++) {
    const path = step.requires[j]!.path;
    if (inp[j] === path) inp[j] = path;
  }
  for (let j = 0; j < def.out.length; j++) def.out[j] = step.outputs[j]!.path;
  for (let j = 0; j < def.vol.length; j++) def.vol[j] = step.volatiles[j]!.path;
}

/** Lists up to this long are searched by scanning them (see PathSet). */
const SCAN_MAX = 8;

/**
 * A set of distinct paths in insertion order that scans its list while it is short. Nearly every
 * step names a handful of paths, and the three Sets defineStep made per step cost more than
 * scanning them; a step with thousands of inputs still gets a Set.
 */
class PathSet {
  readonly items: string[];
  private set: Set<string> | null = null;

  /** Uses `items` itself, no copy: give a PathSet that will be added to a fresh array. */
  constructor(items: string[]) {
    this.items = items;
    if (items.length > SCAN_MAX) this.set = new Set(items);
  }

  has(path: string): boolean {
    if (this.set !== null) return this.set.has(path);
    const items = this.items;
    for (let i = 0; i < items.length; i++) if (items[i] === path) return true;
    return false;
  }

  add(path: string): void {
    if (this.has(path)) return;
    this.items.push(path);
    if (this.set !== null) this.set.add(path);
    else if (this.items.length > SCAN_MAX) this.set = new Set(this.items);
  }
}

export class Graph {
  readonly files = new Map<string, FileNode>();
  readonly steps = new Map<string, StepNode>();
  readonly pools = new Map<string, PoolDef>();
  /** Called (synchronously) whenever a step becomes runnable. Must not call back into the graph. */
  onRunnable: (step: StepNode) => void = () => {};

  constructor() {
    this.files.set("./", this.newStatic("./", null));
  }

  private newStatic(path: string, declarer: StepNode | null): FileNode {
    const node = new FileNode(path);
    node.state = "static";
    node.declarer = declarer;
    return node;
  }

  /** The node for `path`, creating it (always-static paths as static, others as placeholders). */
  private fileNode(path: string): FileNode {
    let node = this.files.get(path);
    if (!node) {
      node = isAlwaysStatic(path) ? this.newStatic(path, null) : new FileNode(path);
      this.files.set(path, node);
    }
    return node;
  }

  // ----------------------------------------------------------------------------------------
  // Static files

  /**
   * Declare `paths` static, with their parent directories. Existing static paths are fine.
   * `recordAsProduct` is false for files a deferred glob declares on use: they are not part of
   * what the declaring step replays.
   */
  declareStatic(
    declarer: StepNode | null,
    paths: string[],
    recordAsProduct = true,
    /** Paths among `paths` (or their parents) that do not exist: declared, but not available. */
    absent?: ReadonlySet<string>,
  ): Outcome<void> {
    // Validate everything first: the parents too, since they will be declared implicitly.
    const toDeclare: string[] = [];
    const seen = new Set<string>();
    const chain: string[] = [];
    for (let k = 0; k < paths.length; k++) {
      const path = paths[k]!;
      // Up to the first path already seen: its parents were seen with it.
      chain.length = 0;
      for (let p: string | undefined = path; p !== undefined && !isAlwaysStatic(p) && !seen.has(p); p = parentPath(p)) {
        chain.push(p);
      }
      for (let i = chain.length - 1; i >= 0; i--) {
        const p = chain[i]!;
        seen.add(p);
        const node = this.files.get(p);
        // Declared again: nothing to do, unless it was absent and is now known to exist.
        if (node?.state === "static" && !(node.absent && !absent?.has(p))) continue;
        if (node?.producer) {
          const what = p === path ? p : `${path} lies in ${p}, which`;
          return fail(
            `${what} is an output of ${describeStepKey(node.producer)} and cannot also be declared static`,
          );
        }
        toDeclare.push(p);
      }
    }
    for (let k = 0; k < toDeclare.length; k++) {
      const p = toDeclare[k]!;
      const node = this.fileNode(p);
      node.state = "static";
      node.declarer = declarer;
      if (absent?.has(p)) node.absent = true;
      else {
        node.absent = false;
        this.release(node);
      }
    }
    if (declarer && recordAsProduct) ownProducts(declarer).statics.push(...paths);
    return { ok: true, value: undefined };
  }

  // ----------------------------------------------------------------------------------------
  // Pools

  definePool(definer: StepNode | null, name: string, size: number): Outcome<void> {
    if (!Number.isInteger(size) || size < 1) {
      return fail(`pool "${name}" needs a size of at least 1 (an integer), got ${size}`);
    }
    this.pools.set(name, { size, definedBy: definer });
    if (definer) ownProducts(definer).pools.push([name, size]);
    return { ok: true, value: undefined };
  }

  // ----------------------------------------------------------------------------------------
  // Steps

  defineStep(creator: StepNode | null, def: StepDefinition): Outcome<StepNode> {
    const key = stepKey(def.command, def.workdir);
    const existing = this.steps.get(key);
    if (existing) {
      // A step that runs again after RESCHEDULE declares the same steps again: that is fine.
      if (existing.creator === creator && sameDefinition(existing.def, def)) return { ok: true, value: existing };
      return fail(`step \`${key}\` is defined twice (first by ${describeStepKey(existing.creator)})`);
    }
    if (!isDirPath(def.workdir)) return fail(`workdir must be a directory: ${def.workdir}`);
    if (def.pool !== null && !this.pools.has(def.pool)) {
      return fail(`unknown pool "${def.pool}": define it with pool("${def.pool}", size) before using it`);
    }
    const outSet = new PathSet(def.out);
    for (let j = 0; j < def.out.length; j++) {
      const problem = this.checkNewProduct(def.out[j]!, "output");
      if (problem) return fail(problem);
    }
    for (let j = 0; j < def.vol.length; j++) {
      const path = def.vol[j]!;
      if (isDirPath(path)) return fail(`a volatile output cannot be a directory: ${path}`);
      if (outSet.has(path)) return fail(`${path} is both an output and a volatile output`);
      const problem = this.checkNewProduct(path, "volatile output");
      if (problem) return fail(problem);
      if (this.files.get(path)?.consumers.length) {
        return fail(`volatile output ${path} is used as an input of another step`);
      }
    }
    const volSet = new PathSet(def.vol);
    const requires = new PathSet([def.workdir]);
    for (let j = 0; j < def.inp.length; j++) {
      const path = def.inp[j]!;
      if (outSet.has(path)) return fail(`${path} is both an input and an output of this step`);
      if (volSet.has(path)) return fail(`${path} is both an input and a volatile output of this step`);
      const node = this.files.get(path);
      if (node?.state === "volatile") {
        return fail(`input ${path} is a volatile output of ${describeStepKey(node.producer)}`);
      }
      requires.add(path);
    }
    // Indexed loops here and below: for-of allocates in code that has not been optimized yet,
    // which is all of it in a run that replays a few thousand steps once.
    for (let j = 0; j < def.out.length + def.vol.length; j++) {
      const dir = parentPath(j < def.out.length ? def.out[j]! : def.vol[j - def.out.length]!);
      if (dir !== undefined && !outSet.has(dir)) requires.add(dir);
    }
    const cycle = this.findCycle(requires, def.out, key);
    if (cycle) return fail(cycle);

    // Valid: apply.
    const step = new StepNode(key, def, creator);
    this.steps.set(key, step);
    if (creator) ownProducts(creator).steps.push(step);
    // Sized up front: filling an array by push() reserves 17 slots for these few nodes.
    const paths = requires.items;
    step.requires = new Array<FileNode>(paths.length);
    for (let r = 0; r < paths.length; r++) step.requires[r] = this.fileNode(paths[r]!);
    for (let j = 0; j < step.requires.length; j++) {
      const node = step.requires[j]!;
      node.addConsumer(step);
      if (!node.available) step.waiting++;
    }
    if (def.out.length > 0) {
      step.outputs = new Array<FileNode>(def.out.length);
      for (let j = 0; j < def.out.length; j++) {
        const node = this.fileNode(def.out[j]!);
        node.producer = step;
        node.state = "pending";
        step.outputs[j] = node;
      }
    }
    if (def.vol.length > 0) {
      step.volatiles = def.vol.map((path) => this.fileNode(path));
      for (const node of step.volatiles) {
        node.producer = step;
        node.state = "volatile";
      }
    }
    sharePathStrings(def, step);
    if (step.mandatory === "no" && step.outputs.some((o) => o.consumers.some((c) => c.mandatory !== "no"))) {
      step.mandatory = "implied";
    }
    if (step.mandatory !== "no") this.implySuppliers(step);
    if (step.runnable) this.onRunnable(step);
    return { ok: true, value: step };
  }

  /** Why `path` cannot become a new output, or undefined when it can. */
  private checkNewProduct(path: string, what: string): string | undefined {
    if (isAlwaysStatic(path)) return `${path} cannot be an ${what}`;
    const node = this.files.get(path);
    if (!node) return undefined;
    if (node.producer) return `${path} is already an output of ${describeStepKey(node.producer)}`;
    if (node.state === "static") {
      const by = node.declarer ? describeStepKey(node.declarer) : "the root";
      return `${path} is declared static (by ${by}) and cannot be an ${what}`;
    }
    return undefined;
  }

  /**
   * A new step reading `requires` and writing `outputs` closes a cycle when something already
   * consuming one of its outputs leads, through outputs and their consumers, back to one of its
   * requirements. Only outputs that already exist as placeholders can have consumers, so the
   * usual case costs nothing.
   */
  private findCycle(requires: PathSet, outputs: string[], key: string): string | undefined {
    // The walk reaches files only as outputs of steps, so a requirement nobody produces (a
    // static file, a new placeholder) can never close a cycle. Declaring a chain in reverse
    // order then stays linear instead of walking the rest of the chain for every step.
    let reachable = false;
    const paths = requires.items;
    for (let j = 0; j < paths.length; j++) if (this.files.get(paths[j]!)?.producer) reachable = true;
    if (!reachable) return undefined;
    for (const out of outputs) {
      const start = this.files.get(out);
      if (!start || start.consumers.length === 0) continue;
      // Iterative DFS over files; `via` remembers how each file was reached, to print the cycle.
      const via = new Map<FileNode, { from: FileNode; step: StepNode } | null>([[start, null]]);
      const stack: FileNode[] = [start];
      while (stack.length > 0) {
        const file = stack.pop()!;
        if (requires.has(file.path)) return this.cycleMessage(key, file, via);
        for (const consumer of file.consumers) {
          for (const next of consumer.outputs) {
            if (!via.has(next)) {
              via.set(next, { from: file, step: consumer });
              stack.push(next);
            }
          }
        }
      }
    }
    return undefined;
  }

  private cycleMessage(
    key: string,
    end: FileNode,
    via: Map<FileNode, { from: FileNode; step: StepNode } | null>,
  ): string {
    const chain: string[] = [];
    for (let file: FileNode | undefined = end; file; ) {
      chain.push(file.path);
      const link = via.get(file);
      if (!link) break;
      chain.push(`step \`${link.step.key}\``);
      file = link.from;
    }
    chain.reverse();
    const lines = [`step \`${key}\``, ...chain, `step \`${key}\``];
    return `this step would close a dependency cycle:\n  ${lines.join("\n  -> ")}`;
  }

  /** Mark optional producers of everything `step` needs as implied, transitively. */
  private implySuppliers(step: StepNode): void {
    const stack: StepNode[] = [step];
    while (stack.length > 0) {
      const current = stack.pop()!;
      for (let j = 0; j < current.requires.length; j++) {
        const producer = current.requires[j]!.producer;
        if (producer && producer.mandatory === "no") {
          producer.mandatory = "implied";
          stack.push(producer);
          if (producer.runnable) this.onRunnable(producer);
        }
      }
    }
  }

  // ----------------------------------------------------------------------------------------
  // Amended information: a running step declares more inputs and outputs about itself.

  /**
   * Add inputs, outputs and volatile outputs to `step`. Inputs that are not available yet are
   * returned as `missing` (the step will be rescheduled once they are). Already declared inputs
   * are fine; the step's own outputs are not.
   */
  amendStep(step: StepNode, inp: string[], out: string[], vol: string[]): Outcome<{ missing: string[] }> {
    const own = new Set<FileNode>([...step.outputs, ...step.volatiles]);
    const ownPaths = new Set([...own].map((f) => f.path));
    const newOut = out.filter((p) => !ownPaths.has(p));
    const newVol = vol.filter((p) => !ownPaths.has(p));
    for (const path of newOut) {
      const problem = this.checkNewProduct(path, "output");
      if (problem) return fail(problem);
    }
    for (const path of newVol) {
      if (isDirPath(path)) return fail(`a volatile output cannot be a directory: ${path}`);
      const problem = this.checkNewProduct(path, "volatile output");
      if (problem) return fail(problem);
    }
    const allOut = new Set([...ownPaths, ...newOut, ...newVol]);
    const required = new Set(step.requires.map((f) => f.path));
    const added = new Set<string>();
    for (const path of inp) {
      if (allOut.has(path)) return fail(`${path} is both an input and an output of this step`);
      const node = this.files.get(path);
      if (node?.state === "volatile") return fail(`input ${path} is a volatile output of ${describeStepKey(node.producer)}`);
      if (!required.has(path)) added.add(path);
    }
    for (const path of [...newOut, ...newVol]) {
      const dir = parentPath(path);
      if (dir !== undefined && !allOut.has(dir) && !required.has(dir)) added.add(dir);
    }
    const cycle = this.findCycle(new PathSet([...added]), [...allOut], step.key);
    if (cycle) return fail(cycle);

    if (added.size > 0) {
      const amendedRequires = new Set(step.amendedRequires);
      const requires = [...step.requires];
      for (const path of added) {
        const node = this.fileNode(path);
        requires.push(node);
        amendedRequires.add(node);
        node.addConsumer(step);
        if (!node.available) step.waiting++;
      }
      step.requires = requires;
      step.amendedRequires = amendedRequires;
    }
    if (newOut.length > 0) step.outputs = [...step.outputs, ...newOut.map((path) => this.fileNode(path))];
    for (const path of newOut) {
      const node = this.files.get(path)!;
      node.producer = step;
      node.state = "pending";
    }
    if (newVol.length > 0) step.volatiles = [...step.volatiles, ...newVol.map((path) => this.fileNode(path))];
    for (const path of newVol) {
      const node = this.files.get(path)!;
      node.producer = step;
      node.state = "volatile";
    }
    const newInp = inp.filter((p) => !step.amended.inp.includes(p));
    if (newInp.length + newOut.length + newVol.length > 0) {
      const a = step.amended;
      step.amended = { inp: [...a.inp, ...newInp], out: [...a.out, ...newOut], vol: [...a.vol, ...newVol] };
    }
    if (step.mandatory !== "no") this.implySuppliers(step);
    const missing = inp.filter((p) => !this.files.get(p)!.available);
    return { ok: true, value: { missing } };
  }

  /** Forget what the step amended (before it runs again, or when that information is outdated). */
  dropAmended(step: StepNode): void {
    if (step.amendedRequires.size > 0) {
      const keep: FileNode[] = [];
      for (const node of step.requires) {
        if (!step.amendedRequires.has(node)) {
          keep.push(node);
          continue;
        }
        const i = node.consumers.indexOf(step);
        if (i >= 0) node.consumers.splice(i, 1);
        if (!node.available) step.waiting--;
        this.forgetIfUnused(node);
      }
      step.requires = keep;
      step.amendedRequires = NO_FILE_SET;
    }
    const dropped = step.amended === NO_AMENDED ? undefined : new Set([...step.amended.out, ...step.amended.vol]);
    if (dropped && dropped.size > 0) {
      for (const list of [step.outputs, step.volatiles]) {
        for (const f of list) {
          if (!dropped.has(f.path)) continue;
          f.producer = null;
          f.state = "pending";
          this.forgetIfUnused(f);
        }
      }
      step.outputs = step.outputs.filter((f) => !dropped.has(f.path));
      step.volatiles = step.volatiles.filter((f) => !dropped.has(f.path));
    }
    step.amended = NO_AMENDED;
    step.amendedFromRecord = false;
    // Runs before every execution: keep an empty list rather than allocate another one.
    if (step.rescheduleDueTo.length > 0) step.rescheduleDueTo = NO_STRINGS;
  }

  /** Placeholders nobody needs any more disappear, so they are not reported or saved. */
  private forgetIfUnused(node: FileNode): void {
    if (node.state === "pending" && !node.producer && node.consumers.length === 0) this.files.delete(node.path);
  }

  /** Make a step runnable again after a RESCHEDULE, once what it waits for is there. */
  reschedule(step: StepNode): void {
    step.state = "pending";
    if (step.runnable) this.onRunnable(step);
  }

  // ----------------------------------------------------------------------------------------
  // Env vars

  addEnv(step: StepNode, names: string[]): void {
    for (const name of names) {
      if (step.def.env.includes(name) || step.amendedEnv.has(name)) continue;
      if (step.amendedEnv === NO_ENV) step.amendedEnv = new Set();
      step.amendedEnv.add(name);
    }
  }

  // ----------------------------------------------------------------------------------------
  // Execution results

  /** The step succeeded (ran or was skipped): its outputs become available. */
  markSucceeded(step: StepNode): void {
    step.state = "succeeded";
    const outputs = step.outputs;
    for (let j = 0; j < outputs.length; j++) {
      outputs[j]!.state = "built";
      this.release(outputs[j]!);
    }
  }

  markFailed(step: StepNode): void {
    step.state = "failed";
  }

  /** `file` just became available: its consumers wait for one thing less. */
  private release(file: FileNode): void {
    const consumers = file.consumers;
    for (let j = 0; j < consumers.length; j++) {
      const consumer = consumers[j]!;
      consumer.waiting--;
      if (consumer.runnable) this.onRunnable(consumer);
    }
  }

  // ----------------------------------------------------------------------------------------
  // Reporting

  /** Every env var the step depends on, sorted. */
  envOf(step: StepNode): string[] {
    // Asked for every skip check: the usual step, with at most one env var, costs no new arrays.
    if (step.amendedEnv.size === 0 && step.def.env.length <= 1) return step.def.env;
    return [...new Set([...step.def.env, ...step.amendedEnv])].sort();
  }
}
