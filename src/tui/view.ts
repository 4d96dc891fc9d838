// The ink view of the terminal UI: finished report lines scroll above, the live area of
// `liveRows` stays at the bottom.
//
// Events can arrive thousands of times a second, so they never touch React directly. They go
// into a `LiveStore`, which folds them into the model and buffers the report text, and which
// produces a *frame* at most every `frameMs` (and every `heartbeatMs` while steps run, so elapsed
// times move): one write of all buffered text above the live area, then one React re-render.
//
// The text above goes through ink's `useStdout().write`, not `<Static>`: ink keeps every
// `<Static>` output in a string for the rest of the session (and `<Static>` needs an ever-growing
// item array), while `write` erases the live area, prints and redraws, keeping memory flat over
// any number of lines. Batching per frame keeps that erase/redraw to a few times a second.

import { createElement as h, useCallback, useLayoutEffect, useState } from "react";
import type { ReactElement } from "react";
import { Box, Text, useInput, useStdin, useStdout } from "ink";

import type { EventSink, TsupEvent } from "../events.js";
import { keysOfInk } from "./keys.js";
import type { Key } from "./keys.js";
import { liveRows, reduce } from "./model.js";
import type { LiveRow, Model } from "./model.js";

/** What a mounted view lends the store to put a frame on screen. */
export interface FrameTarget {
  /** Print text above the live area (ink's `useStdout().write`). */
  write(text: string): void;
  /** Re-render the live area from the store's current model. */
  render(): void;
}

export interface LiveStoreOptions {
  /** Minimum time between frames; 100 ms caps re-renders at 10 a second. */
  frameMs?: number;
  /** While steps run, a frame at least this often so elapsed times advance. */
  heartbeatMs?: number;
  /** Where buffered text goes when no view is mounted (yet, or any more). */
  fallbackWrite?: (text: string) => void;
}

/**
 * Holds the model and the not-yet-printed report text, and decides when a frame is due. Timers
 * are unref'd: the UI must never be what keeps a finished tsup alive.
 */
export class LiveStore implements EventSink {
  model: Model;
  /** Re-renders requested so far; tests read it to check the throttling. */
  frames = 0;
  /** Set once the UI closes: the view then renders nothing. */
  closed = false;

  private readonly frameMs: number;
  private readonly heartbeatMs: number;
  private readonly fallbackWrite: ((text: string) => void) | undefined;
  private pending: string[] = [];
  private changed = true;
  private target: FrameTarget | undefined;
  private timer: NodeJS.Timeout | undefined;
  private dueAt = Number.POSITIVE_INFINITY;
  private lastFrame = Number.NEGATIVE_INFINITY;

  constructor(model: Model, opts: LiveStoreOptions = {}) {
    this.model = model;
    this.frameMs = opts.frameMs ?? 100;
    this.heartbeatMs = opts.heartbeatMs ?? 1000;
    this.fallbackWrite = opts.fallbackWrite;
  }

  emit(event: TsupEvent): void {
    const next = reduce(this.model, event);
    if (next === this.model) return;
    this.model = next;
    this.changed = true;
    this.request();
  }

  /** Queue report text for the next frame. */
  append(text: string): void {
    if (text === "") return;
    this.pending.push(text);
    this.request();
  }

  /** Called by the mounted view; returns the detach function for its cleanup. */
  attach(target: FrameTarget): () => void {
    this.target = target;
    this.changed = true;
    this.request();
    return () => {
      if (this.target === target) this.target = undefined;
    };
  }

  /** Whether a mounted view draws this store; false again once ink has unmounted it. */
  get attached(): boolean {
    return this.target !== undefined;
  }

  /** Print all buffered text now, through the view if mounted, else through the fallback. */
  flushText(): void {
    if (this.pending.length === 0) return;
    const text = this.pending.join("");
    this.pending = [];
    const write = this.target?.write ?? this.fallbackWrite;
    write?.(text);
  }

  /**
   * Stop producing frames; buffered text is printed first. The view renders nothing from its
   * next render on, which the caller forces synchronously (a state update from outside React
   * would only land after ink has unmounted).
   */
  close(): void {
    this.cancel();
    this.flushText();
    this.closed = true;
  }

  private request(): void {
    if (this.closed) {
      // Late events after close (an error path still reporting) are printed, not lost.
      this.flushText();
      return;
    }
    this.schedule(Math.max(performance.now(), this.lastFrame + this.frameMs));
  }

  private schedule(due: number): void {
    if (this.timer !== undefined && this.dueAt <= due) return;
    this.cancel();
    this.dueAt = due;
    this.timer = setTimeout(this.frame, Math.max(0, due - performance.now()));
    this.timer.unref();
  }

  private cancel(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.dueAt = Number.POSITIVE_INFINITY;
  }

  private readonly frame = (): void => {
    this.timer = undefined;
    this.dueAt = Number.POSITIVE_INFINITY;
    const target = this.target;
    // Nothing to draw into yet: `attach` asks for a frame again.
    if (target === undefined || this.closed) return;
    this.lastFrame = performance.now();
    this.flushText();
    const ticking = this.model.running.size > 0;
    if (this.changed || ticking) {
      this.changed = false;
      this.frames += 1;
      target.render();
    }
    if (ticking) this.schedule(this.lastFrame + this.heartbeatMs);
  };
}

// ---------------------------------------------------------------------------------------------
// Colour. Hand-written SGR like the line reporter, because the caller decides about colour
// (`--color`, NO_COLOR, ...) and ink's own colour props would follow chalk's detection instead.

const sgr = (codes: string, text: string): string => (text === "" ? "" : `\x1b[${codes}m${text}\x1b[0m`);
const GREY82 = "38;5;252";
const GREY46 = "38;5;243";

export function paintRow(row: LiveRow, color: boolean): string {
  if (!color) return row.text;
  switch (row.kind) {
    case "step":
      return sgr(GREY82, row.text);
    case "more":
      return sgr(GREY46, row.text);
    case "pool":
      return sgr("36", row.text);
    case "watch":
      return sgr("1;35", row.text);
    case "progress": {
      if (row.bar === undefined) return sgr("1", row.text);
      const chars = [...row.text];
      const { done, failed, rest } = row.bar;
      const cells = done + failed + rest;
      return (
        sgr("32", chars.slice(0, done).join("")) +
        sgr("31", chars.slice(done, done + failed).join("")) +
        sgr(GREY46, chars.slice(done + failed, cells).join("")) +
        sgr("1", chars.slice(cells).join(""))
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------

export interface TuiViewProps {
  store: LiveStore;
  color: boolean;
  /** Clock of the `start` events' `time`, for elapsed times. */
  now: () => number;
  /** Fixed width; the terminal's current width otherwise. */
  width?: number | undefined;
  onKey: (key: Key) => void;
}

/**
 * Rows kept free below the live area. Ink clears the whole screen (scrollback included) once
 * its output is as tall as the terminal, so the live area must always be shorter.
 */
const ROWS_MARGIN = 2;

export function TuiView(props: TuiViewProps): ReactElement | null {
  const { store, color, now, onKey } = props;
  const { stdout, write } = useStdout();
  const { isRawModeSupported } = useStdin();
  const [, setFrame] = useState(0);

  // A layout effect, so the store can print as soon as `render()` returns, before any passive
  // effect would have run.
  useLayoutEffect(
    () => store.attach({ write, render: () => setFrame((n) => n + 1) }),
    [store, write],
  );

  // Ink re-lays out the existing rows on a resize, but they were cut for the old width: render
  // them anew so a wider terminal shows more of each command.
  useLayoutEffect(() => {
    const onResize = (): void => setFrame((n) => n + 1);
    stdout.on("resize", onResize);
    return () => {
      stdout.off("resize", onResize);
    };
  }, [stdout]);

  const handleInput = useCallback(
    (input: string, key: { ctrl: boolean }) => {
      for (const k of keysOfInk(input, key)) onKey(k);
    },
    [onKey],
  );
  // Raw mode (which useInput turns on) throws on a stdin that is not a terminal.
  useInput(handleInput, { isActive: isRawModeSupported });

  if (store.closed) return null;
  const width = props.width ?? (stdout.columns || 80);
  const maxLines = stdout.rows ? Math.max(1, stdout.rows - ROWS_MARGIN) : undefined;
  const rows = liveRows(store.model, now(), width, maxLines);
  return h(
    Box,
    { flexDirection: "column" },
    ...rows.map((row, i) => h(Text, { key: i, wrap: "truncate-end" }, paintRow(row, color))),
  );
}
