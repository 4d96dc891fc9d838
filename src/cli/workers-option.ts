// The -w option: a whole number of workers, or a fraction of the CPUs.
import { InvalidArgumentError } from "commander";
import { availableParallelism } from "node:os";

/** `-w 4` is four workers; `-w 0.5` (a number with a decimal point) is half of the CPUs. */
export function parseWorkers(value: string, cpus = availableParallelism()): number {
  const text = value.trim();
  if (!/^(\d+|\d*\.\d+)$/.test(text)) {
    throw new InvalidArgumentError("expected a whole number of workers (4) or a fraction of the CPUs (0.5)");
  }
  const count = text.includes(".") ? Math.floor(Number(text) * cpus) : Number(text);
  if (count < 1) {
    throw new InvalidArgumentError(`this gives ${count} workers (with ${cpus} CPUs); at least 1 is needed`);
  }
  return count;
}

