// The state behind the terminal UI's live area, as a pure reducer of events, plus its rendering
// to plain strings. No ink, no React, no clock: the view supplies "now" and the width, so every
// line the user sees can be tested from an event sequence alone.
//
// Only the running steps are tracked per step; everything countable comes from the director's
// `progress` events. That keeps the model small no matter how many events a session emits, which
// matters because `reduce` runs once per event (100k events in a large build).

import { describeStep } from "../events.js";
import type { PoolUsage, StepCounts, TsupEvent } from "../events.js";
import { stripControl } from "../report/lines.js";

export interface RunningStep {
  key: string;
  /** The step as report lines name it, flattened to one line. */
  label: string;
  pool: string | undefined;
  /** Start time on the director's clock (the `time` of the `start` event). */
  since: number;
}

export interface Model {
  readonly phase: "run" | "watch";
  /** Keyed by step key. Bounded by the number of workers, so copying it on change is cheap. */
  readonly running: ReadonlyMap<string, RunningStep>;
  /** From the latest `progress` event; undefined until the first one. */
  readonly counts: StepCounts | undefined;
  readonly pools: readonly PoolUsage[];
  readonly workers: number;
  /** How many running steps are listed before the rest collapse into `… and N more`. */
  readonly maxRunningShown: number;
}

export interface ModelOptions {
  workers?: number;
  maxRunningShown?: number;
}

export function initialModel(opts: ModelOptions = {}): Model {
  return {
    phase: "run",
    running: new Map(),
    counts: undefined,
    pools: [],
    workers: opts.workers ?? 0,
    maxRunningShown: Math.max(1, opts.maxRunningShown ?? 10),
  };
}

/**
 * The model after `event`. Events that change nothing shown return the very same object, so the
 * view can tell from identity alone whether a re-render is needed.
 */
export function reduce(model: Model, event: TsupEvent): Model {
  switch (event.kind) {
    case "start": {
      const running = new Map(model.running);
      // A rescheduled step starts again under the same key; the new start time wins.
      running.delete(event.step.key);
      running.set(event.step.key, {
        key: event.step.key,
        label: oneLine(describeStep(event.step)),
        pool: event.step.pool,
        since: event.time,
      });
      return { ...model, running };
    }
    case "finish":
    case "skip":
      return withoutRunning(model, event.step.key);
    case "progress":
      return { ...model, counts: event.counts, pools: event.pools, workers: event.workers };
    case "phase":
      return event.phase === model.phase ? model : { ...model, phase: event.phase };
    default:
      return model;
  }
}

function withoutRunning(model: Model, key: string): Model {
  if (!model.running.has(key)) return model;
  const running = new Map(model.running);
  running.delete(key);
  return { ...model, running };
}

/** Commands may hold newlines or escape codes; a live line must stay one terminal row. */
function oneLine(text: string): string {
  return stripControl(text).replace(/[\n\t]+/g, " ");
}

// ---------------------------------------------------------------------------------------------
// Rendering to rows of plain text.

export type LiveRowKind = "step" | "more" | "pool" | "progress" | "watch";

export interface LiveRow {
  kind: LiveRowKind;
  /** Plain text, at most `width` columns. */
  text: string;
  /**
   * For a progress row that starts with a bar: how many of its first cells are done, failed and
   * still to go, so the view can colour them without re-parsing the text.
   */
  bar?: { done: number; failed: number; rest: number };
}

export const WATCH_LINE = "watching — press r to run, ? for help, q to quit";

const BAR_CELLS = 20;

/** `0.4s`, `12.3s`, `2m05s`, `1h03m`: compact enough to leave the row to the command. */
export function formatElapsed(ms: number): string {
  const tenths = Math.max(0, Math.floor(ms / 100));
  if (tenths < 600) return `${(tenths / 10).toFixed(1)}s`;
  const seconds = Math.floor(tenths / 10);
  if (seconds < 3600) {
    return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, "0")}s`;
  }
  const minutes = Math.floor(seconds / 60);
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

/** Cut `text` to `width` code points, marking the cut with `…`. */
export function truncate(text: string, width: number): string {
  const w = Math.max(0, Math.floor(width));
  const chars = [...text];
  if (chars.length <= w) return text;
  if (w === 0) return "";
  return chars.slice(0, w - 1).join("") + "…";
}

/** The progress text without the bar: `done 120 (skipped 80) · failed 2 · … · total 436`. */
export function progressText(counts: StepCounts): string {
  const done = counts.succeeded + counts.skipped;
  return (
    `done ${done} (skipped ${counts.skipped}) · failed ${counts.failed} · ` +
    `running ${counts.running} · pending ${counts.pending} · total ${counts.total}`
  );
}

function progressRow(counts: StepCounts, width: number): LiveRow {
  const text = progressText(counts);
  // The bar goes first so it does not jump around as the numbers grow; it is only drawn when the
  // numbers still fit beside it, because the numbers are the part that cannot be guessed.
  if ([...text].length + BAR_CELLS + 2 > width) return { kind: "progress", text: truncate(text, width) };
  const finished = counts.succeeded + counts.skipped;
  const total = Math.max(counts.total, finished + counts.failed, 1);
  const done = Math.round((finished / total) * BAR_CELLS);
  const doneOrFailed = Math.round(((finished + counts.failed) / total) * BAR_CELLS);
  const failed = doneOrFailed - done;
  const rest = BAR_CELLS - doneOrFailed;
  const bar = "█".repeat(done + failed) + "░".repeat(rest);
  return { kind: "progress", text: `${bar}  ${text}`, bar: { done, failed, rest } };
}

function poolRows(pools: readonly PoolUsage[], width: number): LiveRow[] {
  const nameWidth = Math.max(0, ...pools.map((p) => [...p.name].length));
  return pools.map((p) => ({
    kind: "pool" as const,
    text: truncate(
      `pool ${p.name.padEnd(nameWidth)}  ${p.running}/${p.size} running, ${p.queued} queued`,
      width,
    ),
  }));
}

function stepRow(step: RunningStep, nowMs: number, width: number): LiveRow {
  const elapsed = formatElapsed(nowMs - step.since).padStart(6);
  const pool = step.pool === undefined ? "" : `[${oneLine(step.pool)}] `;
  return { kind: "step", text: truncate(`${elapsed} ${pool}${step.label}`, width) };
}

/** Running steps, oldest first; insertion order breaks ties so equal start times stay stable. */
export function runningByAge(model: Model): RunningStep[] {
  return [...model.running.values()].sort((a, b) => a.since - b.since);
}

/**
 * The live area as rows: running steps (oldest first), pool occupancy and the progress line
 * while running; the last counts and the key hint while watching. `maxLines` bounds the height
 * (the view passes the terminal height minus a margin, because ink clears the whole screen once
 * its output is as tall as the terminal); the progress line is the last thing to go.
 */
export function liveRows(
  model: Model,
  nowMs: number,
  width: number,
  maxLines = Number.POSITIVE_INFINITY,
): LiveRow[] {
  const w = Math.max(1, Math.floor(width));
  const limit = Math.max(0, Math.floor(maxLines));
  const tail: LiveRow[] = [];
  if (model.phase === "run") tail.push(...poolRows(model.pools, w));
  if (model.counts !== undefined) tail.push(progressRow(model.counts, w));
  if (model.phase === "watch") tail.push({ kind: "watch", text: truncate(WATCH_LINE, w) });

  const steps = runningByAge(model);
  const room = Math.max(0, limit - tail.length);
  const head: LiveRow[] = [];
  if (steps.length <= model.maxRunningShown && steps.length <= room) {
    for (const s of steps) head.push(stepRow(s, nowMs, w));
  } else if (room > 0) {
    const shown = Math.min(model.maxRunningShown, room - 1);
    for (const s of steps.slice(0, shown)) head.push(stepRow(s, nowMs, w));
    head.push({ kind: "more", text: truncate(`… and ${steps.length - shown} more`, w) });
  }
  const rows = [...head, ...tail];
  return rows.length > limit ? rows.slice(rows.length - limit) : rows;
}

/** {@link liveRows} as plain strings. */
export function liveLines(
  model: Model,
  nowMs: number,
  width: number,
  maxLines = Number.POSITIVE_INFINITY,
): string[] {
  return liveRows(model, nowMs, width, maxLines).map((r) => r.text);
}
