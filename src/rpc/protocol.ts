// The wire protocol between the director and the processes that talk to it (plan.ts and other
// steps through the API, `tsup act ...` from any language, and control commands).
//
// Framing: every message is a 4-byte big-endian unsigned length followed by that many bytes of
// msgpack. The first message of a connection is a Hello; the director answers it with Welcome or
// with an error and closes. Everything here is plain data so the protocol is documented by its
// types (see docs/reference/protocol.md).

import type { StepDefinition } from "../workflow/definition.js";

export const PROTOCOL_VERSION = 1;

/** Longest frame either side accepts: larger frames mean a confused peer, not a big plan. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** One declaration a running step makes. Paths are root-relative (see src/paths.ts). */
export type Declaration =
  | { k: "static"; paths: string[] }
  | ({ k: "step" } & StepDefinition)
  | { k: "pool"; name: string; size: number }
  /**
   * The calling step evaluated a glob: patterns relative to `workdir`, and the root-relative files
   * that matched. On a later run the step is skipped only if the glob still matches the same files.
   */
  | {
      k: "glob";
      patterns: string[];
      subs: Record<string, string>;
      workdir: string;
      matches: string[];
      /** Deferred: root-relative patterns; matching files become static only when used as inputs. */
      deferred?: boolean;
    }
  /** The calling step depends on these environment variables (getenv, `${VAR}` in paths). */
  | { k: "env"; names: string[] };

export type ClientMessage =
  | { t: "hello"; v: number; step: string | null }
  /** A batch of declarations; the director answers with an Ack carrying the same seq. */
  | { t: "decl"; seq: number; items: Declaration[] }
  /** A request that needs an answer (amend, control commands). */
  | { t: "call"; id: number; method: string; args: unknown };

export type ServerMessage =
  | { t: "welcome"; v: number }
  /** `errors[j].i` is the index in the batch of the declaration that was rejected. */
  | { t: "ack"; seq: number; errors: Array<{ i: number; message: string }> }
  | { t: "reply"; id: number; ok: true; value: unknown }
  | { t: "reply"; id: number; ok: false; error: string }
  | { t: "error"; message: string };

/** Environment variables tsup sets for every step it runs. */
export const ENV_SOCKET = "TSUP_DIRECTOR_SOCKET";
export const ENV_STEP_KEY = "TSUP_STEP_KEY";
export const ENV_ROOT = "TSUP_ROOT";
/** The step's workdir relative to the root ("." for the root itself). */
export const ENV_HERE = "HERE";
/** The root relative to the step's workdir ("." for the root itself). */
export const ENV_ROOT_REL = "ROOT";
