import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { createConnection } from "node:net";
import { dirname } from "node:path";
import { describe, test } from "node:test";
import { DirectorClient, type Rejection } from "../../src/rpc/client.js";
import { encodeFrame, readFrames } from "../../src/rpc/framing.js";
import type { Declaration } from "../../src/rpc/protocol.js";
import { RpcServer, type RpcHandler } from "../../src/rpc/server.js";

function recordingHandler(): RpcHandler & { seen: Array<{ key: string | null; items: Declaration[] }> } {
  const seen: Array<{ key: string | null; items: Declaration[] }> = [];
  return {
    seen,
    declare(key, items) {
      seen.push({ key, items });
      // Reject every pool declaration, accept the rest.
      return items.flatMap((item, i) => (item.k === "pool" ? [{ i, message: `no pools for ${key}` }] : []));
    },
    async call(_key, method, args) {
      if (method === "echo") return args;
      throw new Error(`unknown method ${method}`);
    },
  };
}

describe("rpc", () => {
  test("the socket lives in a private folder", async () => {
    const server = await RpcServer.start(recordingHandler());
    try {
      assert.equal(statSync(dirname(server.socketPath)).mode & 0o777, 0o700);
    } finally {
      await server.close();
    }
  });

  test("declarations arrive in order, in batches, and rejections name the declaration", async () => {
    const handler = recordingHandler();
    const server = await RpcServer.start(handler);
    const rejections: Rejection[] = [];
    const settled: number[] = [];
    const client = await DirectorClient.connect(server.socketPath, "step:plan", (r) => rejections.push(r), (first, count) => settled.push(first, count));
    const ids: number[] = [];
    for (let i = 0; i < 2500; i++) ids.push(client.declare({ k: "static", paths: [`f${i}`] }));
    const poolId = client.declare({ k: "pool", name: "p", size: 1 });
    await client.settle();
    const all = handler.seen.flatMap((b) => b.items);
    assert.equal(all.length, 2501);
    assert.deepEqual(all[1234], { k: "static", paths: ["f1234"] });
    assert.ok(handler.seen.length >= 3, "large plans are sent in several batches");
    // The first batches are small, so that the director can start steps early; later ones grow
    // (to at most 1000) so that a big plan still sends few frames.
    const sizes = handler.seen.map((b) => b.items.length);
    assert.ok(sizes[0]! <= 16, `first batch of ${sizes[0]}`);
    assert.ok(Math.max(...sizes) <= 1000 && Math.max(...sizes) >= 500, `batch sizes ${sizes.join(",")}`);
    assert.ok(sizes.length <= 12, `${sizes.length} batches for 2501 declarations`);
    assert.ok(handler.seen.every((b) => b.key === "step:plan"));
    assert.deepEqual(rejections, [{ declarationId: poolId, message: "no pools for step:plan" }]);
    assert.equal(settled.filter((_, i) => i % 2 === 1).reduce((a, b) => a + b, 0), 2501);
    assert.deepEqual(await client.call("echo", { x: [1, "a"] }), { x: [1, "a"] });
    await assert.rejects(client.call("nope", null), /unknown method nope/);
    client.close();
    await server.close();
  });

  test("a peer that does not say hello in our protocol is turned away", async () => {
    const server = await RpcServer.start(recordingHandler());
    const socket = createConnection(server.socketPath);
    const reply = await new Promise<unknown>((resolve) => {
      readFrames(socket, resolve, () => resolve("framing error"));
      socket.write(encodeFrame({ t: "hello", v: 999, step: null }));
    });
    assert.deepEqual(reply, { t: "error", message: "protocol mismatch: expected hello version 1" });
    socket.destroy();
    await server.close();
  });
});
