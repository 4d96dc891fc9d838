import assert from "node:assert/strict";
import { test } from "node:test";
import { parseWorkers } from "../../src/cli/workers-option.js";

test("-w takes a count or a fraction of the CPUs", () => {
  assert.equal(parseWorkers("4", 8), 4);
  assert.equal(parseWorkers("1", 8), 1);
  assert.equal(parseWorkers("0.5", 8), 4);
  assert.equal(parseWorkers("1.0", 8), 8);
  assert.equal(parseWorkers(".75", 4), 3);
  assert.equal(parseWorkers("1.5", 2), 3);
});

test("-w rejects nonsense and counts below one", () => {
  for (const bad of ["0", "-1", "abc", "", "2x", "1e3"]) assert.throws(() => parseWorkers(bad, 8), /workers|fraction/, bad);
  assert.throws(() => parseWorkers("0.1", 2), /at least 1/);
});
