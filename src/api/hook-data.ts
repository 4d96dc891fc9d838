// What loader.ts (on the step's main thread) and ts-hooks.ts (on Node's loader thread) share.
// Kept apart from ts-hooks.ts so that the main thread does not load the hooks and what they
// import only to learn these: every TypeScript step, plan.ts first, starts a little sooner.

export interface HookData {
  /** URL of the API module `tsup-flow` resolves to. */
  apiUrl: string;
  /** Where compiled files are kept; null: compile every time. */
  cacheDir: string | null;
}

/** The `code` of compile errors; loader.ts prints their message alone. */
export const COMPILE_ERROR = "ERR_TSUP_COMPILE";
