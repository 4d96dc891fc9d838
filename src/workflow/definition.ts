// What defines a step, as a plan declares it. Shared (as a type only) by the wire protocol, the
// graph and the saved state, so the three cannot drift apart.

export interface StepDefinition {
  /** The shell command, after `${inp}`/`${out}`/`${vol}` substitution. */
  command: string;
  /** Root-relative workdir with a trailing slash ("./" for the root). */
  workdir: string;
  /** Root-relative paths, sorted and without duplicates. */
  inp: string[];
  out: string[];
  vol: string[];
  /** Names of env vars whose values are part of the fingerprint, sorted. */
  env: string[];
  pool: string | null;
  optional: boolean;
  block: boolean;
}

export function sameList(a: readonly string[], b: readonly string[]): boolean {
  // A replayed step compares its record's lists with themselves. Indexed, without a callback:
  // this runs a few times per step, mostly before it is optimized.
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Same command, workdir, files and env vars: the step computes the same thing. */
export function sameWork(a: StepDefinition, b: StepDefinition): boolean {
  return (
    a.command === b.command &&
    a.workdir === b.workdir &&
    sameList(a.inp, b.inp) &&
    sameList(a.out, b.out) &&
    sameList(a.vol, b.vol) &&
    sameList(a.env, b.env)
  );
}

/** Identical in every option, pool, optional and block included. */
export function sameDefinition(a: StepDefinition, b: StepDefinition): boolean {
  return sameWork(a, b) && a.pool === b.pool && a.optional === b.optional && a.block === b.block;
}

/** Just the definition (a saved record or a declaration carries more fields). */
export function definitionOf(record: StepDefinition): StepDefinition {
  return {
    command: record.command,
    workdir: record.workdir,
    inp: record.inp,
    out: record.out,
    vol: record.vol,
    env: record.env,
    pool: record.pool,
    optional: record.optional,
    block: record.block,
  };
}
