import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Scheduler } from "../../src/scheduler/scheduler.js";

describe("scheduler", () => {
  test("a pool of size 2 releases its third step only after one finished", () => {
    const s = new Scheduler<string>({ sizeOf: (p) => (p === "test" ? 2 : undefined) });
    for (const c of ["A", "B", "C"]) s.enqueue(c, "test");
    assert.equal(s.next()?.item, "A");
    assert.equal(s.next()?.item, "B");
    assert.equal(s.next(), undefined);
    s.done("test");
    assert.equal(s.next()?.item, "C");
  });

  test("steps start in the order they became ready, across pools", () => {
    const s = new Scheduler<string>({ sizeOf: () => 1 });
    s.enqueue("x1", "x");
    s.enqueue("free1", null);
    s.enqueue("x2", "x");
    s.enqueue("free2", null);
    assert.deepEqual([s.next()?.item, s.next()?.item, s.next()?.item], ["x1", "free1", "free2"]);
    s.done("x");
    assert.equal(s.next()?.item, "x2");
  });

  test("a step of a full pool can wait behind a running one, and then holds the slot it took over", () => {
    const s = new Scheduler<string>({ sizeOf: (p) => (p === "p" ? 2 : undefined) });
    for (const c of ["A", "B", "C", "D", "E"]) s.enqueue(c, "p");
    assert.equal(s.takeBehind("p"), undefined, "a pool with a free slot starts its steps with next()");
    assert.equal(s.next()?.item, "A");
    assert.equal(s.next()?.item, "B");
    assert.equal(s.takeBehind("p"), "C");
    assert.equal(s.takeBehind("p"), "D");
    assert.equal(s.queuedIn("p"), 3, "steps waiting behind others still wait");
    assert.equal(s.waitingIn("p"), 1);
    assert.equal(s.runningIn("p"), 2);
    // A finished; C, behind it, takes over its slot: still two running, E still waits.
    s.leftBehind("p");
    assert.equal(s.runningIn("p"), 2);
    assert.equal(s.next(), undefined);
    // D is handed back without ever running; then B finishes: E gets B's slot.
    s.leftBehind("p");
    s.done("p");
    assert.equal(s.queuedIn("p"), 1);
    assert.equal(s.next()?.item, "E");
    assert.equal(s.queuedIn("p"), 0);
    s.held = true;
    s.enqueue("F", "p");
    assert.equal(s.takeBehind("p"), undefined, "nothing is taken while held");
  });

  test("a pool made smaller takes no more steps to wait behind its running ones", () => {
    let size = 2;
    const s = new Scheduler<string>({ sizeOf: () => size });
    for (const c of ["A", "B", "C", "D"]) s.enqueue(c, "p");
    assert.equal(s.next()?.item, "A");
    assert.equal(s.next()?.item, "B");
    size = 1;
    assert.equal(s.overFull("p"), true);
    assert.equal(s.takeBehind("p"), undefined);
    s.done("p");
    assert.equal(s.overFull("p"), false);
    assert.equal(s.next(), undefined, "one runs, in a pool of 1 now");
    assert.equal(s.takeBehind("p"), "C");
  });

  test("nothing starts while held, and clear() returns what was queued", () => {
    const s = new Scheduler<string>({ sizeOf: () => 1 });
    s.enqueue("a", null);
    s.enqueue("b", "p");
    s.held = true;
    assert.equal(s.next(), undefined);
    assert.deepEqual(s.clear().sort(), ["a", "b"]);
    assert.equal(s.queued, 0);
  });

  test("an undefined pool never runs its steps", () => {
    const s = new Scheduler<string>({ sizeOf: () => undefined });
    s.enqueue("a", "ghost");
    assert.equal(s.next(), undefined);
  });

  test("a long queue stays FIFO through compaction", () => {
    const s = new Scheduler<number>({ sizeOf: () => undefined });
    for (let i = 0; i < 5000; i++) s.enqueue(i, null);
    const out: number[] = [];
    for (let n = s.next(); n; n = s.next()) out.push(n.item);
    assert.deepEqual(out, Array.from({ length: 5000 }, (_, i) => i));
  });
});
