// The plain line reporter: one `ACTION │ description` line per event, optionally followed by pages
// framed by horizontal rules (spec §3.1–§3.4). It is what CI logs, redirected output and `-n` show,
// so it must never emit `\r` and, without colour, never an escape code. It sees only events and
// writes through an injected `write`, so tests run it in-process with a fake clock.

import { describeStep, unreachable } from "../events.js";
import type { Action, EventSink, Page, TsupEvent } from "../events.js";

export interface LineReporterOptions {
  /** Receives whole chunks: one event line plus all its pages per call. */
  write(text: string): void;
  color: boolean;
  /** Width of the rules around pages (80 when not a terminal, `$COLUMNS` overrides). */
  width: number;
  /** `-s`: prefix each line with elapsed seconds and the number of running steps. */
  showPerf: boolean;
  /** Milliseconds clock, injected so tests can control elapsed time. */
  now(): number;
}

/** What one event looks like in a report, independent of how it is rendered. */
export interface EventReport {
  action: Action;
  description: string;
  pages: Page[];
}

// ---------------------------------------------------------------------------------------------
// ANSI styling. Written by hand because the project takes no colour dependency; only the few
// styles of spec §3.2 are needed.

const ESC = "\x1b[";
const RESET = `${ESC}0m`;
const BOLD = "1";
const DIM = "2";
const MAGENTA = "35";
const WHITE = "37";
const BLUE = "34";
const GREEN = "32";
const RED = "31";
const CYAN = "36";
const YELLOW = "33";
// rich's grey46 / grey82 are xterm-256 colours 243 / 252.
const GREY46 = "38;5;243";
const GREY82 = "38;5;252";

function sgr(codes: string, text: string): string {
  return text === "" ? "" : `${ESC}${codes}m${text}${RESET}`;
}

const ACTION_COLOR: Record<Action, string> = {
  DIRECTOR: MAGENTA,
  WORKFLOW: MAGENTA,
  PHASE: WHITE,
  START: BLUE,
  SUCCESS: GREEN,
  FAIL: RED,
  SKIP: CYAN,
  NOSKIP: CYAN,
  RESCHEDULE: YELLOW,
  CLEAN: MAGENTA,
  WARNING: YELLOW,
  ERROR: RED,
  UPDATED: YELLOW,
  DELETED: YELLOW,
  KEYBOARD: MAGENTA,
};

// ---------------------------------------------------------------------------------------------
// Sanitizing. Steps often colour their own output or draw progress with `\r`; in a CI log those
// bytes are noise at best and corrupt the surrounding lines at worst.

// CSI (`ESC [ … final`, also the 8-bit `\x9b` form), OSC (`ESC ] … BEL|ST`, e.g. hyperlinks and
// window titles) and the remaining escapes: optional intermediates then one final byte, which
// covers `ESC c` (reset), `ESC 7`/`ESC 8` (cursor save) and `ESC ( B` (charset).
// eslint-disable-next-line no-control-regex
const ANSI_RE = /(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -/]*[0-~]/g;
// Control characters other than tab and newline (C0, DEL, C1) left over after escapes are
// removed: a bare ESC, BEL, backspace... none of them print anything useful in a log.
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

/**
 * Turn carriage returns into plain line structure: `\r\n` becomes `\n`, and a lone `\r` (a
 * progress-bar redraw) becomes `\n` so successive updates stay readable instead of being glued
 * together. Applied with and without colour, because the line reporter never owns the cursor.
 */
function normalizeNewlines(text: string): string {
  return text.replace(/\r\n?/g, "\n");
}

// Every escape and carriage return starts with one of these: most texts (a SKIP line per step)
// have none, and one test is cheaper than the three passes below.
// eslint-disable-next-line no-control-regex
const ANY_CONTROL_RE = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;

/** Remove all escape sequences and control characters except tab and newline. */
export function stripControl(text: string): string {
  if (!ANY_CONTROL_RE.test(text)) return text;
  return normalizeNewlines(text).replace(ANSI_RE, "").replace(CONTROL_RE, "");
}

/** Text as it will be printed: escapes kept only when colouring. */
function cleanText(text: string, color: boolean): string {
  return color ? normalizeNewlines(text) : stripControl(text);
}

/**
 * Prepare a page text: trailing whitespace stripped (spec §3.1), `undefined` when nothing visible
 * remains so the page is omitted. Emptiness is judged without escape codes, so a page holding only
 * a step's stray `\x1b[0m` is still omitted when colouring.
 */
function pageBody(text: string, color: boolean): string | undefined {
  if (stripControl(text).trimEnd() === "") return undefined;
  return cleanText(text, color).trimEnd();
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers, shared with the other reporters.

/** Width of a string in columns, counted per code point (no East-Asian wide-char handling). */
function columns(text: string): number {
  return [...text].length;
}

/** `ACTION │ description`, the action right-aligned in 10 columns; no trailing newline. */
export function formatLine(action: Action, description: string, color = false): string {
  const padded = action.padStart(10);
  if (!color) return `${padded} │ ${description}`;
  const descColor = action === "START" ? GREY82 : GREY46;
  return `${sgr(`${BOLD};${ACTION_COLOR[action]}`, padded)} │ ${sgr(descColor, description)}`;
}

/**
 * A horizontal rule of exactly `width` columns, with `title` centred between one space on each
 * side: left filler floor((width − len − 2)/2), right filler the rest (spec §3.1). Like rich, a
 * title that does not fit in `width − 4` columns is cut with an ellipsis, and a rule too narrow
 * for any title is drawn plain. No trailing newline.
 */
export function rule(title: string | undefined, width: number): string {
  const w = Math.max(0, Math.floor(width));
  if (title === undefined || title === "" || w - 4 <= 0) return "─".repeat(w);
  let chars = [...title.replace(/\n/g, " ")];
  if (chars.length > w - 4) chars = [...chars.slice(0, w - 5), "…"];
  const t = chars.join("");
  const left = Math.floor((w - chars.length - 2) / 2);
  const right = w - chars.length - 2 - left;
  return `${"─".repeat(left)} ${t} ${"─".repeat(right)}`;
}

/**
 * The pages under a line, each preceded by a titled rule and all followed by one plain rule;
 * empty pages are dropped and no pages give the empty string. Every line ends with `\n`.
 */
export function formatPages(pages: readonly Page[], width: number, color = false): string {
  let out = "";
  for (const page of pages) {
    const body = pageBody(page.text, color);
    if (body === undefined) continue;
    const title = cleanText(page.title, color);
    if (color) {
      // A step's own `reset` would otherwise end our grey in the middle of its output.
      const grey = `${ESC}${GREY46}m`;
      const greyBody = body.replace(/\x1b\[0?m/g, (m) => m + grey);
      out += `${sgr(DIM, rule(title, width))}\n${grey}${greyBody}${RESET}\n`;
    } else {
      out += `${rule(title, width)}\n${body}\n`;
    }
  }
  if (out === "") return "";
  return out + (color ? sgr(DIM, rule(undefined, width)) : rule(undefined, width)) + "\n";
}

/** Map an event to its action, description and pages; `undefined` for events that print nothing. */
export function reportOf(event: TsupEvent): EventReport | undefined {
  switch (event.kind) {
    case "director":
      return { action: "DIRECTOR", description: event.message, pages: [] };
    case "workflow":
      return { action: "WORKFLOW", description: event.message, pages: event.pages ?? [] };
    case "phase":
      return { action: "PHASE", description: event.phase, pages: [] };
    case "start":
      return { action: "START", description: describeStep(event.step), pages: [] };
    case "skip":
      return { action: "SKIP", description: describeStep(event.step), pages: event.pages };
    case "noskip":
      return { action: "NOSKIP", description: describeStep(event.step), pages: event.pages };
    case "finish": {
      const action: Action =
        event.outcome === "success" ? "SUCCESS" : event.outcome === "fail" ? "FAIL" : "RESCHEDULE";
      return { action, description: describeStep(event.step), pages: event.pages };
    }
    case "clean":
      return { action: "CLEAN", description: event.path, pages: [] };
    case "warning":
      return { action: "WARNING", description: event.message, pages: event.pages ?? [] };
    case "error":
      return { action: "ERROR", description: event.message, pages: event.pages ?? [] };
    case "updated":
      return { action: "UPDATED", description: event.path, pages: [] };
    case "deleted":
      return { action: "DELETED", description: event.path, pages: [] };
    case "keyboard":
      return { action: "KEYBOARD", description: event.message, pages: event.pages ?? [] };
    case "progress":
      // The progress bar is a terminal-only, transient display (spec §3.4).
      return undefined;
    default:
      return unreachable(event);
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Prints every event as one line plus its pages, in a single `write` per event so that the
 * output of parallel steps never interleaves.
 *
 * Running count (shown with `-s`): tracked from the events themselves. `start` increments it
 * before its line is printed (the starting step is running), `finish` decrements it before its
 * line (the step no longer runs), and each `progress` event resynchronises it with the
 * scheduler's authoritative `counts.running`. `setRunning` overrides it explicitly.
 */
export class LineReporter implements EventSink {
  private readonly opts: LineReporterOptions;
  private running = 0;
  /** Origin of the `-s` elapsed time: reporter creation, then each printed PHASE line. */
  private epoch: number;

  constructor(opts: LineReporterOptions) {
    this.opts = opts;
    this.epoch = opts.now();
  }

  setRunning(n: number): void {
    this.running = Math.max(0, Math.floor(n));
  }

  emit(event: TsupEvent): void {
    if (event.kind === "start") this.running += 1;
    else if (event.kind === "finish") this.running = Math.max(0, this.running - 1);
    else if (event.kind === "progress") this.setRunning(event.counts.running);

    const report = reportOf(event);
    if (report === undefined) return;
    const { color, width } = this.opts;

    let text = "";
    if (this.opts.showPerf) {
      const now = this.opts.now();
      text += `${perfPrefix((now - this.epoch) / 1000, this.running)}`;
      // The PHASE line still shows the time of the phase that just ended; the next phase counts
      // from here (spec §3.4: "reset after printing a PHASE line").
      if (report.action === "PHASE") this.epoch = now;
    }
    text += formatLine(report.action, cleanText(report.description, color), color) + "\n";
    text += formatPages(report.pages, width, color);
    this.opts.write(text);
  }
}

/** `f"{elapsed:7.2f} {nrun:{nd}d} "` with nd = max(3, digits of nrun). */
export function perfPrefix(elapsedSeconds: number, running: number): string {
  return `${elapsedSeconds.toFixed(2).padStart(7)} ${String(running).padStart(3)} `;
}

/** NDJSON: one JSON object per event (progress included) per line, one `write` per event. */
export function createJsonReporter(write: (s: string) => void): EventSink {
  return {
    emit(event: TsupEvent): void {
      write(JSON.stringify(event) + "\n");
    },
  };
}
