// The workflow graph as text (`graph.txt`) and as Graphviz dot (`graph_supplier.dot`,
// `graph_creator.dot`), written on the key `g` and by `tsup graph` (docs/reference/graph.md).
// Pure functions of the graph: the caller writes the files.
//
// The two relations of src/workflow/graph.ts are kept apart, as StepUp does:
//  - creator -> product: who declared a step, a static file or a pool (`created by`/`creates`).
//    The root stands for the director itself, which declares the boot plan and its file.
//  - supplier -> consumer: files a step requires, and the outputs it supplies
//    (`consumes`/`supplies` on steps, `produced by`/`supplies` on files).
// Every relation is printed from both ends, so one block answers "what about this node?".
//
// Output for 100,000 steps runs to millions of lines: everything is collected in arrays and
// joined once, and no walk recurses.
import type { FileNode, Graph, PoolDef, StepNode } from "../workflow/graph.js";

export type DotKind = "supplier" | "creator";

const ROOT_KEY = "root:";
const LABEL_WIDTH = 20;
/** Dot labels are wrapped so that long commands do not make boxes as wide as the page. */
const WRAP_WIDTH = 24;

// Keys follow StepUp's `kind:name`, so the text reads the same and a grep for `step:` or
// `file:` finds what one expects. A line break inside a command would split a relation line in
// two, so in keys (not in the `command` property) it is shown as `\n`.
function oneLine(text: string): string {
  return text.includes("\n") || text.includes("\r") ? text.replace(/\r\n|\r|\n/g, "\\n") : text;
}

function fileKey(file: FileNode): string {
  return `file:${oneLine(file.path)}`;
}

function stepKeyText(step: StepNode): string {
  return `step:${oneLine(step.key)}`;
}

function poolKey(name: string): string {
  return `pool:${oneLine(name)}`;
}

function creatorKey(step: StepNode | null): string {
  return step === null ? ROOT_KEY : stepKeyText(step);
}

/**
 * The state as users should read it. The graph keeps one `pending` for two different things;
 * a file nobody produces and nobody declared static will never become available by itself, so
 * it is shown as `missing`. A static file that is gone blocks its consumers just the same.
 */
function fileState(file: FileNode): string {
  if (file.state === "pending" && file.producer === null) return "missing";
  if (file.state === "static" && file.absent) return "static (absent)";
  return file.state;
}

function stepState(step: StepNode): string {
  if (step.state === "succeeded" && step.replayed) return "succeeded (skipped)";
  if (step.state === "pending" && step.waiting > 0) {
    return `pending (waiting for ${step.waiting} input${step.waiting === 1 ? "" : "s"})`;
  }
  return step.state;
}

// ---------------------------------------------------------------------------------------------
// Text

/** Appends the lines of one node block; `lines` is shared so that nothing is concatenated twice. */
class Block {
  /** Padded names, built once: a dump of 100,000 steps would otherwise pad millions of times. */
  private readonly padded = new Map<string, string>();

  constructor(private readonly lines: string[]) {}

  private pad(name: string): string {
    let text = this.padded.get(name);
    if (text === undefined) {
      text = name.padStart(LABEL_WIDTH);
      this.padded.set(name, text);
    }
    return text;
  }

  /** A property; a multi-line value continues under the first line, aligned with it. */
  prop(name: string, value: string): void {
    if (!value.includes("\n") && !value.includes("\r")) {
      this.lines.push(`${this.pad(name)} = ${value}`);
      return;
    }
    const parts = value.split(/\r\n|\r|\n/);
    this.lines.push(`${this.pad(name)} = ${parts[0] ?? ""}`);
    for (let i = 1; i < parts.length; i++) this.lines.push(`${this.pad("")}   ${parts[i]}`);
  }

  /** A multi-valued property: the name only on the first line, as StepUp prints it. */
  props(name: string, values: readonly string[]): void {
    values.forEach((v, i) => this.prop(i === 0 ? name : "", v));
  }

  /** Relation lines repeat the role, so that every line can be grepped on its own. */
  rel(role: string, others: string[]): void {
    if (others.length > 1) others.sort();
    const label = this.pad(role);
    for (const other of others) this.lines.push(`${label}   ${other}`);
  }
}

/** Who created what, inverted once from the `creator`/`declarer`/`definedBy` fields. */
function createdIndex(graph: Graph): Map<StepNode | null, string[]> {
  const index = new Map<StepNode | null, string[]>();
  const add = (creator: StepNode | null, key: string): void => {
    const list = index.get(creator);
    if (list) list.push(key);
    else index.set(creator, [key]);
  };
  for (const file of graph.files.values()) if (file.state === "static") add(file.declarer, fileKey(file));
  for (const step of graph.steps.values()) add(step.creator, stepKeyText(step));
  for (const [name, pool] of graph.pools) add(pool.definedBy, poolKey(name));
  return index;
}

function poolUsers(graph: Graph): Map<string, string[]> {
  const users = new Map<string, string[]>();
  for (const step of graph.steps.values()) {
    if (step.def.pool === null) continue;
    const list = users.get(step.def.pool);
    if (list) list.push(stepKeyText(step));
    else users.set(step.def.pool, [stepKeyText(step)]);
  }
  return users;
}

/**
 * Every node, one block each, separated by blank lines: the root first, then files, steps and
 * pools, each in the order they entered the graph. Property names are right-aligned to 20
 * columns; relation lists are sorted so that two dumps of the same workflow compare equal.
 */
export function graphText(graph: Graph): string {
  const lines: string[] = [];
  const block = new Block(lines);
  const created = createdIndex(graph);
  const users = poolUsers(graph);

  lines.push(ROOT_KEY);
  block.rel("creates", created.get(null) ?? []);
  lines.push("");

  for (const file of graph.files.values()) {
    lines.push(fileKey(file));
    block.prop("path", file.path);
    block.prop("state", fileState(file));
    if (file.state === "static") block.rel("created by", [creatorKey(file.declarer)]);
    if (file.producer) block.rel("produced by", [stepKeyText(file.producer)]);
    block.rel("supplies", file.consumers.map(stepKeyText));
    lines.push("");
  }

  for (const step of graph.steps.values()) {
    const def = step.def;
    lines.push(stepKeyText(step));
    block.prop("workdir", def.workdir);
    block.prop("command", def.command);
    block.prop("state", stepState(step));
    if (step.isPlan) block.prop("plan", step.isBootPlan ? "yes (boot plan)" : "yes");
    if (def.optional) block.prop("optional", step.mandatory === "implied" ? "yes (needed)" : "yes (not needed)");
    if (def.block) block.prop("block", "yes");
    if (def.pool !== null) block.prop("pool", def.pool);
    block.props("env var", def.env);
    block.props("env var (amended)", [...step.amendedEnv].sort());
    block.props("inp (amended)", step.amended.inp);
    block.props("out (amended)", step.amended.out);
    block.props("vol (amended)", step.amended.vol);
    if (step.amendedFromRecord) block.prop("amended from", "previous run");
    block.prop("fingerprint", step.fingerprint ? "yes" : "no");
    block.rel("created by", [creatorKey(step.creator)]);
    block.rel("consumes", step.requires.map(fileKey));
    block.rel("creates", created.get(step) ?? []);
    block.rel("supplies", [...step.outputs, ...step.volatiles].map(fileKey));
    lines.push("");
  }

  for (const [name, pool] of graph.pools) {
    lines.push(poolKey(name));
    block.prop("name", name);
    block.prop("size", String(pool.size));
    block.rel("created by", [creatorKey(pool.definedBy)]);
    block.rel("used by", users.get(name) ?? []);
    lines.push("");
  }

  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Dot

/**
 * Break `text` into lines of at most `width` characters, preferring to break after a space or
 * a slash (commands and paths), and splitting longer words. Existing line breaks are kept.
 */
export function wrapLabel(text: string, width = WRAP_WIDTH): string[] {
  const out: string[] = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    let rest = line;
    while (rest.length > width) {
      let cut = -1;
      // Scanning back at most `width` characters keeps the whole wrap linear in the text.
      for (let i = width; i > 0; i--) {
        const c = rest[i - 1];
        if (c === " " || c === "/") {
          cut = i;
          break;
        }
      }
      if (cut <= 0) cut = width;
      out.push(rest.slice(0, cut).trimEnd());
      rest = rest.slice(cut).trimStart();
    }
    out.push(rest);
  }
  return out;
}

/**
 * A quoted dot string for a label: each wrapped line escaped on its own, joined with `\n`
 * (dot's centred line break). Only `"` and `\` are special inside quotes; escaping the backslash
 * also keeps a command's `\l` or `\N` from being read as a dot escape sequence.
 */
export function dotLabel(text: string): string {
  // Most paths and many commands need neither wrapping nor escaping.
  if (text.length <= WRAP_WIDTH && !/["\\\r\n]/.test(text)) return `"${text}"`;
  const lines = wrapLabel(text).map((l) => l.replace(/\\/g, "\\\\").replace(/"/g, '\\"'));
  return `"${lines.join("\\n")}"`;
}

function stepLabel(step: StepNode): string {
  return step.def.workdir === "./" ? step.def.command : `${step.def.command}\n(wd=${step.def.workdir})`;
}

function stepAttrs(step: StepNode): string {
  // Plans are doubled so that the structure of the build (who declares what) stands out.
  let attrs = `shape=ellipse, label=${dotLabel(stepLabel(step))}`;
  if (step.isPlan) attrs += ", peripheries=2";
  if (step.state === "failed") attrs += ", color=red";
  if (step.mandatory === "no" || step.def.block) attrs += ", style=dashed";
  return attrs;
}

function fileAttrs(file: FileNode): string {
  let attrs = `shape=box, label=${dotLabel(file.path)}`;
  if (file.state === "volatile") attrs += ", style=dashed";
  else if (!file.available && file.producer === null) attrs += ", color=red";
  return attrs;
}

function poolAttrs(name: string, pool: PoolDef): string {
  return `shape=component, label=${dotLabel(`pool ${name} (${pool.size})`)}`;
}

/**
 * A `strict digraph` with `rankdir=BT` (sources at the bottom). Nodes get short ids (`f3`, `s7`,
 * `p0`, `root`) so that the size stays proportional to the graph, and carry their text only in
 * the label.
 *
 * - supplier: files -> steps that require them, steps -> their outputs and volatile outputs.
 *   Directories nobody produces (`./`, static directories) are left out: every step requires
 *   its workdir, and those edges would bury everything else.
 * - creator: the root and steps -> the steps, static files (directories included) and pools
 *   they declared. Outputs are not declared by anyone, so they do not appear.
 */
export function graphDot(graph: Graph, kind: DotKind): string {
  const lines: string[] = [`strict digraph ${kind} {`, "  rankdir=BT;", "  node [fontsize=10];"];
  const fileIds = new Map<FileNode, string>();
  const stepIds = new Map<StepNode, string>();
  for (const step of graph.steps.values()) stepIds.set(step, `s${stepIds.size}`);

  const supplier = kind === "supplier";
  const shown = (file: FileNode): boolean =>
    supplier ? !(file.path.endsWith("/") && file.producer === null) : file.state === "static";

  if (!supplier) lines.push(`  root [shape=hexagon, label="root"];`);
  for (const file of graph.files.values()) {
    if (!shown(file)) continue;
    const id = `f${fileIds.size}`;
    fileIds.set(file, id);
    lines.push(`  ${id} [${fileAttrs(file)}];`);
  }
  for (const [step, id] of stepIds) lines.push(`  ${id} [${stepAttrs(step)}];`);

  if (supplier) {
    for (const [step, id] of stepIds) {
      for (const file of step.requires) {
        const from = fileIds.get(file);
        if (from !== undefined) lines.push(`  ${from} -> ${id};`);
      }
      for (const file of [...step.outputs, ...step.volatiles]) {
        const to = fileIds.get(file);
        if (to !== undefined) lines.push(`  ${id} -> ${to};`);
      }
    }
  } else {
    // Steps are never removed from the graph, so every creator has an id; a dump must not throw.
    const idOf = (step: StepNode | null): string => (step === null ? "root" : (stepIds.get(step) ?? "root"));
    let p = 0;
    for (const [name, pool] of graph.pools) {
      const id = `p${p++}`;
      lines.push(`  ${id} [${poolAttrs(name, pool)}];`);
      lines.push(`  ${idOf(pool.definedBy)} -> ${id};`);
    }
    for (const [file, id] of fileIds) lines.push(`  ${idOf(file.declarer)} -> ${id};`);
    for (const [step, id] of stepIds) lines.push(`  ${idOf(step.creator)} -> ${id};`);
  }

  lines.push("}", "");
  return lines.join("\n");
}
