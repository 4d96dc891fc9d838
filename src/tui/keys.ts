// Keyboard input, shared by the ink UI (which reads stdin itself) and the plain line mode (which
// reads it here). Both map typed text through `keysOf`, so a key means the same in either mode.

/** The keys tsup acts on; anything else arrives as `{ other }` so callers can say it is unknown. */
export type Key = "q" | "d" | "j" | "f" | "t" | "r" | "g" | "?" | "interrupt" | { other: string };

const NAMED = ["q", "d", "j", "f", "t", "r", "g", "?"] as const;
type NamedKey = (typeof NAMED)[number];

function isNamed(input: string): input is NamedKey {
  return (NAMED as readonly string[]).includes(input);
}

// In raw mode the terminal no longer turns Ctrl-C into SIGINT; it arrives as this byte.
const CTRL_C = "\x03";

/**
 * Split typed text into single keys: escape sequences (arrows, function keys, Alt+x) stay whole,
 * everything else is one code point each, so a fast typist or a paste still yields each key.
 */
// eslint-disable-next-line no-control-regex
const KEY_RE = /\x1b\[[0-?]*[ -/]*[@-~]|\x1bO.|\x1b.?|./gsu;

export function keyOf(input: string): Key | undefined {
  if (input === "") return undefined;
  if (input === CTRL_C) return "interrupt";
  if (isNamed(input)) return input;
  return { other: input };
}

export function keysOf(text: string): Key[] {
  const keys: Key[] = [];
  for (const match of text.matchAll(KEY_RE)) {
    const key = keyOf(match[0]);
    if (key !== undefined) keys.push(key);
  }
  return keys;
}

/**
 * Keys from one ink `useInput` call. Ink reports Ctrl+letter as the bare letter with `ctrl` set
 * and special keys (arrows, return...) as empty input; the control byte is rebuilt so the
 * mapping stays the one of {@link keysOf}, and empty input yields no key.
 */
export function keysOfInk(input: string, key: { ctrl: boolean }): Key[] {
  if (key.ctrl && /^[a-z]$/i.test(input)) {
    return keysOf(String.fromCharCode(input.toLowerCase().charCodeAt(0) - 96));
  }
  return keysOf(input);
}

/**
 * Read keys from a terminal for the plain line mode: raw mode on (no echo, no line buffering,
 * Ctrl-C as a key instead of a signal), each key passed to `onKey`. Returns the function that
 * restores the terminal; it is idempotent so both a normal exit and an error path may call it.
 * A stdin that is not a terminal gives no keys and a no-op restore.
 */
export function readKeys(stdin: NodeJS.ReadStream, onKey: (key: Key) => void): () => void {
  if (!stdin.isTTY || typeof stdin.setRawMode !== "function") return () => {};
  const wasRaw = stdin.isRaw === true;
  stdin.setRawMode(true);
  stdin.setEncoding("utf8");
  const onData = (chunk: string | Buffer): void => {
    for (const key of keysOf(String(chunk))) onKey(key);
  };
  stdin.on("data", onData);
  stdin.resume();
  let restored = false;
  return () => {
    if (restored) return;
    restored = true;
    stdin.off("data", onData);
    try {
      stdin.setRawMode(wasRaw);
    } catch {
      // The terminal may already be gone (hang-up); there is nothing left to restore then.
    }
    // A paused stdin no longer holds the event loop open, so the process can exit.
    stdin.pause();
  };
}
