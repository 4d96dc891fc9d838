// The client side of the director socket, used by the plan API inside steps and by `tsup act`.
// Declarations are batched: a plan that declares 100,000 steps sends a few hundred frames, not
// 100,000, and does not wait for the director between declarations.
import { createConnection, type Socket } from "node:net";
import { encodeFrame, readFrames } from "./framing.js";
import { PROTOCOL_VERSION, type Declaration, type ServerMessage } from "./protocol.js";

/** Send a batch once it holds this many declarations, even before the plan yields. */
const BATCH_LIMIT = 1000;
/**
 * The limit for the first batch; each later one may be twice as large, up to BATCH_LIMIT. The
 * director can start the first steps while the plan is still declaring the rest: with 1000
 * from the start, a plan's loop over 5000 steps kept every worker idle until it had made its
 * first thousand declarations.
 */
const FIRST_BATCH_LIMIT = 16;

export interface Rejection {
  /** The sequence number the client gave the declaration when it was queued. */
  declarationId: number;
  message: string;
}

export class DirectorClient {
  private readonly socket: Socket;
  private batch: Declaration[] = [];
  private batchFirstId = 0;
  private batchLimit = FIRST_BATCH_LIMIT;
  private nextDeclId = 0;
  private nextSeq = 0;
  private nextCallId = 0;
  private flushScheduled = false;
  /** seq -> ids of the declarations in that batch */
  private readonly inFlight = new Map<number, { firstId: number; count: number }>();
  private readonly calls = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private readonly idleWaiters: Array<() => void> = [];
  private closedError: Error | undefined;

  private constructor(
    socket: Socket,
    private readonly onRejected: (rejection: Rejection) => void,
    private readonly onSettled: (firstId: number, count: number) => void,
  ) {
    this.socket = socket;
  }

  static connect(
    socketPath: string,
    stepKey: string | null,
    onRejected: (rejection: Rejection) => void,
    onSettled: (firstId: number, count: number) => void = () => {},
  ): Promise<DirectorClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(socketPath);
      const client = new DirectorClient(socket, onRejected, onSettled);
      let welcomed = false;
      socket.once("error", (err) => {
        if (!welcomed) reject(new Error(`cannot reach the tsup director at ${socketPath}: ${err.message}`));
      });
      socket.on("error", (err) => client.fail(new Error(`lost the tsup director: ${err.message}`)));
      socket.on("close", () => client.fail(new Error("the tsup director closed the connection")));
      readFrames(
        socket,
        (raw) => {
          const message = raw as ServerMessage;
          if (!welcomed) {
            if (message.t === "welcome") {
              welcomed = true;
              client.updateRef();
              resolve(client);
            } else {
              reject(new Error(message.t === "error" ? message.message : "unexpected first message"));
              socket.destroy();
            }
            return;
          }
          client.receive(message);
        },
        (problem) => client.fail(new Error(problem)),
      );
      socket.write(encodeFrame({ t: "hello", v: PROTOCOL_VERSION, step: stepKey }));
    });
  }

  /** Queue a declaration; returns its id, which a later rejection refers to. */
  declare(item: Declaration): number {
    if (this.closedError) throw this.closedError;
    const id = this.nextDeclId++;
    if (this.batch.length === 0) this.batchFirstId = id;
    this.batch.push(item);
    if (this.batch.length >= this.batchLimit) {
      this.batchLimit = Math.min(BATCH_LIMIT, 2 * this.batchLimit);
      this.flush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
    return id;
  }

  flush(): void {
    if (this.batch.length === 0 || this.closedError) return;
    const seq = this.nextSeq++;
    this.inFlight.set(seq, { firstId: this.batchFirstId, count: this.batch.length });
    this.socket.write(encodeFrame({ t: "decl", seq, items: this.batch }));
    this.batch = [];
    this.updateRef();
  }

  call(method: string, args: unknown): Promise<unknown> {
    this.flush();
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextCallId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.socket.write(encodeFrame({ t: "call", id, method, args }));
      this.updateRef();
    });
  }

  /** Resolves once every declaration sent so far has been acknowledged. */
  settle(): Promise<void> {
    this.flush();
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    this.socket.end();
  }

  private idle(): boolean {
    return (this.inFlight.size === 0 && this.calls.size === 0) || this.closedError !== undefined;
  }

  /** Keep the process alive only while answers are outstanding. */
  private updateRef(): void {
    if (this.idle()) {
      this.socket.unref();
      for (const waiter of this.idleWaiters.splice(0)) waiter();
    } else this.socket.ref();
  }

  private receive(message: ServerMessage): void {
    switch (message.t) {
      case "ack": {
        const batch = this.inFlight.get(message.seq);
        this.inFlight.delete(message.seq);
        if (batch !== undefined) {
          for (const e of message.errors) this.onRejected({ declarationId: batch.firstId + e.i, message: e.message });
          this.onSettled(batch.firstId, batch.count);
        }
        break;
      }
      case "reply": {
        const call = this.calls.get(message.id);
        this.calls.delete(message.id);
        if (call) {
          if (message.ok) call.resolve(message.value);
          else call.reject(new Error(message.error));
        }
        break;
      }
      case "error":
        this.fail(new Error(`tsup director: ${message.message}`));
        break;
      case "welcome":
        break;
    }
    this.updateRef();
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const call of this.calls.values()) call.reject(err);
    this.calls.clear();
    if (this.inFlight.size > 0) {
      this.onRejected({ declarationId: -1, message: `${err.message}; some declarations were not confirmed` });
    }
    this.inFlight.clear();
    this.updateRef();
  }
}
