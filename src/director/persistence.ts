// Crash safety: the state file plus the journal of finished steps (state/journal.ts), as the
// director uses them. Killing tsup with SIGKILL at any moment must neither lose finished work
// nor let a later run skip a step whose outputs are stale:
//
// - openState: load the state file, apply the journal if it extends exactly that file, and if
//   there was a journal at all (or no usable state file), save the result as a new generation
//   and delete the journal before anything runs. A second kill then cannot lose the first run's
//   work, and the new run's journal starts empty. Without a usable state file there is nothing
//   to lose: that first save goes on in the background while the plan starts (a cold build's
//   first step waited ~35 ms for it), and no step's result is recorded before it is done
//   (StepJournal.ready).
// - StepJournal.succeeded: called by the session for every step that succeeded, before its
//   SUCCESS is reported: one synchronous append. "SUCCESS was printed" implies "the next run
//   skips it" (unless its files change).
// - StepJournal.save: at the end of a run (or phase), save the state as a new generation, then
//   delete the journal. A kill in between leaves a journal of the old generation, which the next
//   run ignores: its entries are in the new file already.
// - StepJournal.endWithoutSaving: when the journal already says everything the run changed (a
//   few steps ran, nothing was dropped, no other file hash changed), the run ends with the
//   journal left in place instead of rewriting the whole state file, which at 100,000 steps costs
//   more than a second. An end marker (END_FILE) tells the next run that the journal was left on
//   purpose: it then applies it without a word and goes on appending to it. Only entries past the
//   marker count as recovered from a crash. Once the journal holds more than journalLimit()
//   entries, the next run that ends compacts it.
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { EventSink } from "../events.js";
import { applyJournal, isGeneration, JOURNAL_FILE, JournalWriter, newGeneration, readJournal, removeJournal, type JournalEntry } from "../state/journal.js";
import { keepCopy, loadState, saveState, STATE_FILE, type LoadResult, type LoadWarning } from "../state/store.js";
import { equalBytes } from "../state/filehash.js";
import type { FileHash, SavedState, SavedStep } from "../state/types.js";
import { definitionOf } from "../workflow/definition.js";
import { stepKey, type StepNode } from "../workflow/graph.js";
import type { FileTable } from "./files.js";
import { savedStep } from "./finalize.js";
import { sourcePaths } from "./skip.js";

export interface OpenedState extends LoadResult {
  journal: StepJournal;
}

/**
 * Load the state with the journal of an interrupted run folded in. Never throws for bad files
 * (they give a warning, and a copy is kept); throws only when the compacted state cannot be
 * written, as saving at the end of a run would.
 */
export async function openState(stepupDir: string, sink: EventSink): Promise<OpenedState> {
  const file = join(stepupDir, JOURNAL_FILE);
  const loaded = await loadState(stepupDir);
  const read = readJournal(file);
  const end = readEndMarker(stepupDir);
  let state = loaded.state;
  let warning = loaded.warning;
  /** The journal was left in place by a run that ended normally, and nothing was added since. */
  let intact = false;
  if (read.exists) {
    const extendsThisFile = loaded.loaded && read.generation !== null && read.generation === loaded.generation;
    if (extendsThisFile) {
      // The loaded state is not used otherwise: its file table may be updated in place.
      state = applyJournal(state, read.entries, { consume: true });
      // Entries up to the end marker were left on purpose; later ones by a run that was killed.
      const kept = end !== null && end.generation === read.generation && end.entries <= read.entries.length ? end.entries : 0;
      const n = read.entries.length - kept;
      if (n > 0) {
        sink.emit({
          kind: "workflow",
          message: `Recovered ${n} finished step${n === 1 ? "" : "s"} from .stepup/${JOURNAL_FILE} (the last run did not end normally)`,
        });
      }
      intact = n === 0 && read.problem === undefined && end !== null && end.bytes === read.validBytes;
    }
    if (loaded.warning) {
      // Without the file it extends, the journal cannot be checked against anything.
      if (read.entries.length > 0) {
        const copy = await keepCopy(file);
        const note = `The journal ${file} extends that file, so it was ignored too` + (copy ? ` (kept as ${copy}).` : ".");
        warning = { ...loaded.warning, details: `${loaded.warning.details}\n${note}` };
      }
    } else if (read.problem !== undefined && (extendsThisFile || read.generation === null)) {
      warning = await journalWarning(file, read.problem, extendsThisFile ? read.entries.length : 0);
    }
    // Otherwise it is the journal of an older state file, whose save completed: nothing to say.
  }
  if (intact && !warning) {
    // Go on where the last run left off: no save, the journal keeps growing.
    const journal = new StepJournal(stepupDir, sink, loaded.generation, { entries: read.entries.length });
    return { state, loaded: loaded.loaded, journal };
  }
  const journal = new StepJournal(stepupDir, sink, loaded.generation);
  const recovered = state !== loaded.state;
  if (recovered) await journal.save(state);
  else if (!loaded.loaded || !isGeneration(loaded.generation)) journal.saveBase(state);
  else if (read.exists || end !== null) journal.discard();
  const result: OpenedState = { state, loaded: loaded.loaded, journal };
  if (warning) result.warning = warning;
  return result;
}

async function journalWarning(file: string, problem: string, kept: number): Promise<LoadWarning> {
  const copy = await keepCopy(file);
  const keptText =
    kept > 0
      ? `The ${kept} finished step${kept === 1 ? "" : "s"} recorded before that point ${kept === 1 ? "is" : "are"} kept; steps recorded after it run again.`
      : "No finished steps could be recovered from it; they run again.";
  const details = `${file}: ${problem}.\n` + (copy ? `The damaged journal was kept as ${copy}.\n` : "") + keptText;
  const w: LoadWarning = { message: `Ignoring the unreadable part of ${file}: ${problem}`, details };
  if (copy) w.keptCopy = copy;
  return w;
}

/** What the end marker says: the journal of `generation` was left with `entries` entries in `bytes` bytes. */
interface EndMarker {
  generation: string;
  entries: number;
  bytes: number;
}

const END_FILE = `${JOURNAL_FILE}.end`;

function readEndMarker(stepupDir: string): EndMarker | null {
  try {
    const m = JSON.parse(readFileSync(join(stepupDir, END_FILE), "utf8")) as Partial<EndMarker>;
    if (isGeneration(m.generation) && Number.isSafeInteger(m.entries) && Number.isSafeInteger(m.bytes)) {
      return { generation: m.generation, entries: m.entries!, bytes: m.bytes! };
    }
  } catch {
    // Missing or unreadable: the journal counts as left by a crash, which is the safe reading.
  }
  return null;
}

/**
 * How many entries the journal may hold before a run compacts it: loading applies every entry,
 * so a long journal makes every start slower, while compacting costs a full save.
 */
export function journalLimit(steps: number, env: NodeJS.ProcessEnv): number {
  const fixed = Number(env["TSUP_JOURNAL_LIMIT"]);
  if (Number.isSafeInteger(fixed) && fixed >= 0) return fixed;
  return Math.max(500, Math.floor(steps / 20));
}

/** What this run appended: the keys of the steps whose records the state file does not have yet. */
export interface Journaled {
  keys: Set<string>;
}

/** The director's side of the journal: one entry per succeeded step, compaction into the state file. */
export class StepJournal {
  private readonly file: string;
  private writer: JournalWriter | undefined;
  /** Entries in the journal file, counting those of earlier runs it continues. */
  entries: number;
  /** Steps recorded in the journal since this director last wrote the state file. */
  recorded: Journaled = { keys: new Set() };
  /** The first save of a run without a usable state file, while it is written (saveBase). */
  private base: Promise<void> | null = null;

  constructor(
    private readonly stepupDir: string,
    private readonly sink: EventSink,
    /** Generation of the state file on disk; without one, nothing is journaled until the first save. */
    generation: string | undefined,
    /** Set when continuing the intact journal a run left behind. */
    resume?: { entries: number },
  ) {
    this.file = join(stepupDir, JOURNAL_FILE);
    this.entries = resume?.entries ?? 0;
    if (isGeneration(generation)) this.writer = new JournalWriter(this.file, generation, resume !== undefined);
  }

  /** Record a step that just succeeded. Must be called before its SUCCESS is reported. */
  succeeded(step: StepNode, files: FileTable): void {
    const writer = this.writer;
    if (!writer) return;
    try {
      const entry = entryFor(step, files);
      writer.append(entry);
      this.entries++;
      this.recorded.keys.add(step.key);
      for (let i = 0; i < entry.files.length; i++) files.journaled(entry.files[i]![0]);
    } catch (e) {
      // A full disk should not stop the build; the state file is still saved at the end.
      this.writer = undefined;
      writer.close();
      this.sink.emit({
        kind: "warning",
        message: `Cannot write .stepup/${JOURNAL_FILE} (${e instanceof Error ? e.message : String(e)}): steps that finish from now on are only recorded at the end of the run`,
      });
    }
  }

  /** Delete a journal that holds nothing the state file lacks. */
  discard(): void {
    this.writer?.close();
    // The marker first: a marker without its journal means nothing, the reverse would.
    rmSync(join(this.stepupDir, END_FILE), { force: true });
    try {
      removeJournal(this.file);
    } catch {
      // The next append replaces it; until then its generation or emptiness makes it harmless.
    }
  }

  /**
   * End a run without writing the state file: the journal already holds what changed. Writes
   * the end marker so that the next run applies the journal silently and continues it. Returns
   * false (and the caller saves instead) when the marker cannot be written.
   */
  endWithoutSaving(): boolean {
    if (this.writer === undefined) return false;
    try {
      // Entries are appended with one write() each, so the size is that of whole entries.
      const marker: EndMarker = { generation: this.writer.generation, entries: this.entries, bytes: statSync(this.file).size };
      writeFileSync(join(this.stepupDir, END_FILE), JSON.stringify(marker) + "\n");
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Start saving `state`, the state a run without a usable state file starts from, so that the
   * journal has a generation to extend. Until it is done, ready() says what to wait for before
   * calling succeeded(). If it fails, the run goes on without a journal (as when an append
   * fails); the end of the run saves again and reports any problem.
   */
  saveBase(state: SavedState): void {
    // Called once, by openState: no other base save can take this one's place.
    this.base = this.save(state)
      .catch((e: unknown) => {
        this.sink.emit({
          kind: "warning",
          message: `Cannot write .stepup/${STATE_FILE} (${e instanceof Error ? e.message : String(e)}): steps that finish are only recorded at the end of the run`,
        });
      })
      .then(() => {
        this.base = null;
      });
  }

  /** What to wait for before calling succeeded(): null when nothing. */
  ready(): Promise<void> | null {
    return this.base;
  }

  /**
   * Save `state` as a new generation of the state file and start an empty journal. Call it when
   * no step is running: an entry appended while the file is written would be deleted with the
   * journal without being in the file.
   */
  async save(state: SavedState): Promise<void> {
    // A run can end before its first step is recorded; the base save must not overtake it.
    if (this.base !== null) await this.base;
    const generation = newGeneration();
    await saveState(this.stepupDir, state, generation);
    // What is left of the old journal names the previous generation: the next run ignores it.
    this.discard();
    this.writer = new JournalWriter(this.file, generation);
    this.entries = 0;
    this.recorded = { keys: new Set() };
  }
}

/**
 * Whether the state file plus journal, which hold `previous` and then what `journaled` names,
 * already say everything `next` says: every record of `next` is either one of `previous` (same
 * object: finalize reuses the records it would write unchanged) or the record of a step the
 * journal holds, no record was dropped or added, and `next` keeps the table it was loaded with.
 * Anything else (a failed step, a cleaned output) means the state file must be written.
 *
 * The session updates the loaded file table in place, so `previous.files` already holds this
 * run's hashes. That the journal holds all of them too (a file touched without a change of
 * content is in no journal entry) is for the caller to check: FileTable.allJournaled. A `next`
 * made with stateToSave's `wholeTable` keeps it even when some of its files are no longer named
 * by any step (a journaled step now reads other files than before): those hashes are harmless
 * (a hash is only ever used for its own path, and only after its stat matches), and they go at
 * the next time the state file is written.
 */
export function journalCovers(previous: SavedState, next: SavedState, journaled: Journaled): boolean {
  if (next.steps.length !== previous.steps.length) return false;
  const left = new Set(previous.steps);
  const fresh: SavedStep[] = [];
  for (const r of next.steps) if (!left.delete(r)) fresh.push(r);
  // The records that are not the loaded objects: skipped plans (their replayed declarations are
  // new arrays) and the steps that ran. Each must replace the record of the same step.
  const previousByKey = new Map<string, SavedStep>();
  for (const r of left) previousByKey.set(stepKey(r.command, r.workdir), r);
  if (previousByKey.size !== fresh.length) return false;
  for (const r of fresh) {
    const key = stepKey(r.command, r.workdir);
    const old = previousByKey.get(key);
    if (old === undefined) return false;
    if (journaled.keys.has(key) ? r.fingerprint === null : !sameData(old, r)) return false;
  }
  // stateToSave saves the session's table, which is `previous.files`, itself with `wholeTable`
  // or when no file was left unnamed; a copy means some were dropped.
  return next.files === previous.files;
}

/** Structural equality of plain saved data: objects, arrays, byte arrays and primitives. */
function sameData(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && equalBytes(a, b);
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameData(a[i], b[i])) return false;
    return true;
  }
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (!sameData((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  return true;
}

/** The journal entry of a step that succeeded: what the end-of-run save would record for it. */
export function entryFor(step: StepNode, files: FileTable): JournalEntry {
  const { creator: _creator, orphan: _orphan, ...record } = savedStep(step, -1, false);
  const hashes: Array<[string, FileHash]> = [];
  const add = (path: string): void => {
    const hash = files.known(path);
    if (hash) hashes.push([path, hash]);
  };
  // Called for every step that succeeds: no intermediate arrays of paths.
  for (const f of step.requires) add(f.path);
  for (const f of step.outputs) add(f.path);
  const sources = sourcePaths(step, record.fingerprint);
  for (let i = 0; i < sources.length; i++) add(sources[i]!);
  return {
    step: record,
    creator: step.creator ? step.creator.key : null,
    children: step.products.steps.map((child) => definitionOf(child.def)),
    files: hashes,
  };
}
