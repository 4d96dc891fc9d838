// The director's Unix socket. It lives in a fresh private (0700) temporary folder so that no other
// user can connect to it or replace it.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeFrame, readFrames } from "./framing.js";
import { PROTOCOL_VERSION, type ClientMessage, type Declaration, type ServerMessage } from "./protocol.js";

export interface RpcHandler {
  /** Apply declarations from the step `stepKey`; return the ones rejected, with reasons. */
  declare(stepKey: string | null, items: Declaration[]): Array<{ i: number; message: string }>;
  /** Answer a call; a thrown Error becomes an error reply with its message. */
  call(stepKey: string | null, method: string, args: unknown): Promise<unknown>;
}

export class RpcServer {
  readonly socketPath: string;
  /** The private (0700) folder holding the socket; removed on close. */
  readonly dir: string;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(dir: string, server: Server) {
    this.dir = dir;
    this.socketPath = join(dir, "director.sock");
    this.server = server;
  }

  static async start(handler: RpcHandler): Promise<RpcServer> {
    // mkdtemp creates the folder with mode 0700.
    const dir = mkdtempSync(join(tmpdir(), "tsup-"));
    const server = createServer();
    const rpc = new RpcServer(dir, server);
    server.on("connection", (socket) => rpc.accept(socket, handler));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(rpc.socketPath, () => resolve());
    });
    return rpc;
  }

  private accept(socket: Socket, handler: RpcHandler): void {
    this.sockets.add(socket);
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let stepKey: string | null | undefined;
    const send = (message: ServerMessage): void => {
      if (!socket.destroyed) socket.write(encodeFrame(message));
    };
    readFrames(
      socket,
      (raw) => {
        const message = raw as ClientMessage;
        if (stepKey === undefined) {
          if (message.t !== "hello" || message.v !== PROTOCOL_VERSION) {
            send({
              t: "error",
              message: `protocol mismatch: expected hello version ${PROTOCOL_VERSION}`,
            });
            socket.end();
            return;
          }
          stepKey = message.step ?? null;
          send({ t: "welcome", v: PROTOCOL_VERSION });
          return;
        }
        switch (message.t) {
          case "decl": {
            let errors: Array<{ i: number; message: string }>;
            try {
              errors = handler.declare(stepKey, message.items);
            } catch (err) {
              // A bug on our side must not look like a plan error, nor kill the connection.
              errors = [{ i: 0, message: `internal error in tsup: ${(err as Error).stack}` }];
            }
            send({ t: "ack", seq: message.seq, errors });
            return;
          }
          case "call": {
            const id = message.id;
            handler.call(stepKey, message.method, message.args).then(
              (value) => send({ t: "reply", id, ok: true, value: value ?? null }),
              (err: unknown) =>
                send({ t: "reply", id, ok: false, error: err instanceof Error ? err.message : String(err) }),
            );
            return;
          }
          case "hello":
            send({ t: "error", message: "hello sent twice" });
            return;
        }
      },
      (problem) => {
        send({ t: "error", message: problem });
        socket.destroy();
      },
    );
  }

  async close(): Promise<void> {
    // Calls answered just before (say, `tsup join` waiting for the end) reply in promise
    // callbacks: let those run so the replies go out before the sockets end.
    await new Promise((resolve) => setImmediate(resolve));
    for (const socket of this.sockets) socket.end();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        for (const socket of this.sockets) socket.destroy();
      }, 500);
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
