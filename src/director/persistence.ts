// Crash safety: the state file plus the journal of finished steps (state/journal.ts), as the
// director uses them. Killing tsup with SIGKILL at any moment must neither lose finished work
// nor let a later run skip a step whose outputs are stale:
//
// - openState: load the state file, apply the journal if it extends exactly that file, and if
//   there was a journal at all (or no usable state file), save the result as a new generation
//   and delete the journal before anything runs. A second kill then cannot lose the first run's
//   work, and the new run's journal starts empty.
// - StepJournal.succeeded: called by the session for every step that succeeded, before its
//   SUCCESS is reported: one synchronous append. "SUCCESS was printed" implies "the next run
//   skips it" (unless its files change).
// - StepJournal.save: at the end of a run (or phase), save the state as a new generation, then
//   delete the journal. A kill in between leaves a journal of the old generation, which the next
//   run ignores: its entries are in the new file already.
import { join } from "node:path";
import type { EventSink } from "../events.js";
import { applyJournal, isGeneration, JOURNAL_FILE, JournalWriter, newGeneration, readJournal, removeJournal, type JournalEntry } from "../state/journal.js";
import { keepCopy, loadState, saveState, type LoadResult, type LoadWarning } from "../state/store.js";
import type { FileHash, SavedState } from "../state/types.js";
import { definitionOf } from "../workflow/definition.js";
import type { StepNode } from "../workflow/graph.js";
import type { FileTable } from "./files.js";
import { savedStep } from "./finalize.js";

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
  let state = loaded.state;
  let warning = loaded.warning;
  if (read.exists) {
    const extendsThisFile = loaded.loaded && read.generation !== null && read.generation === loaded.generation;
    if (extendsThisFile) {
      state = applyJournal(state, read.entries);
      if (read.entries.length > 0) {
        const n = read.entries.length;
        sink.emit({
          kind: "workflow",
          message: `Recovered ${n} finished step${n === 1 ? "" : "s"} from .stepup/${JOURNAL_FILE} (the last run did not end normally)`,
        });
      }
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
  const journal = new StepJournal(stepupDir, sink, loaded.generation);
  const recovered = state !== loaded.state;
  if (recovered || !loaded.loaded || !isGeneration(loaded.generation)) await journal.save(state);
  else if (read.exists) journal.discard();
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

/** The director's side of the journal: one entry per succeeded step, compaction into the state file. */
export class StepJournal {
  private readonly file: string;
  private writer: JournalWriter | undefined;

  constructor(
    private readonly stepupDir: string,
    private readonly sink: EventSink,
    /** Generation of the state file on disk; without one, nothing is journaled until the first save. */
    generation: string | undefined,
  ) {
    this.file = join(stepupDir, JOURNAL_FILE);
    if (isGeneration(generation)) this.writer = new JournalWriter(this.file, generation);
  }

  /** Record a step that just succeeded. Must be called before its SUCCESS is reported. */
  succeeded(step: StepNode, files: FileTable): void {
    const writer = this.writer;
    if (!writer) return;
    try {
      writer.append(entryFor(step, files));
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
    try {
      removeJournal(this.file);
    } catch {
      // The next append replaces it; until then its generation or emptiness makes it harmless.
    }
  }

  /**
   * Save `state` as a new generation of the state file and start an empty journal. Call it when
   * no step is running: an entry appended while the file is written would be deleted with the
   * journal without being in the file.
   */
  async save(state: SavedState): Promise<void> {
    const generation = newGeneration();
    await saveState(this.stepupDir, state, generation);
    // What is left of the old journal names the previous generation: the next run ignores it.
    this.discard();
    this.writer = new JournalWriter(this.file, generation);
  }
}

/** The journal entry of a step that succeeded: what the end-of-run save would record for it. */
export function entryFor(step: StepNode, files: FileTable): JournalEntry {
  const { creator: _creator, orphan: _orphan, ...record } = savedStep(step, -1, false);
  const hashes: Array<[string, FileHash]> = [];
  for (const list of [step.requires, step.outputs]) {
    for (const f of list) {
      const hash = files.known(f.path);
      if (hash) hashes.push([f.path, hash]);
    }
  }
  return {
    step: record,
    creator: step.creator ? step.creator.key : null,
    children: step.products.steps.map((child) => definitionOf(child.def)),
    files: hashes,
  };
}
