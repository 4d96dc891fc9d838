// Length-prefixed msgpack frames over a stream socket, shared by the server and all clients.
// msgpackr without its native extractor and streams (see state/store.ts).
import { Packr } from "msgpackr/pack";
import type { Socket } from "node:net";
import { MAX_FRAME_BYTES } from "./protocol.js";

// Plain maps and arrays only: no msgpackr record extension, so a client in another language
// needs nothing but a standard msgpack library.
const packr = new Packr({ useRecords: false, mapsAsObjects: true });

export function encodeFrame(message: unknown): Buffer {
  const body = packr.pack(message);
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

/**
 * Call `onMessage` for every complete frame arriving on `socket`. A frame that is too large or
 * not msgpack calls `onError` once and stops reading: the peer is not speaking our protocol.
 */
export function readFrames(
  socket: Socket,
  onMessage: (message: unknown) => void,
  onError: (message: string) => void,
): void {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let failed = false;
  socket.on("data", (chunk: Buffer) => {
    if (failed) return;
    pending.push(chunk);
    pendingBytes += chunk.length;
    let buf = pending.length === 1 ? chunk : Buffer.concat(pending, pendingBytes);
    let offset = 0;
    while (buf.length - offset >= 4) {
      const size = buf.readUInt32BE(offset);
      if (size > MAX_FRAME_BYTES) {
        failed = true;
        onError(`frame of ${size} bytes exceeds the limit of ${MAX_FRAME_BYTES}`);
        return;
      }
      if (buf.length - offset - 4 < size) break;
      let message: unknown;
      try {
        message = packr.unpack(buf.subarray(offset + 4, offset + 4 + size));
      } catch (err) {
        failed = true;
        onError(`undecodable frame: ${(err as Error).message}`);
        return;
      }
      offset += 4 + size;
      onMessage(message);
    }
    if (offset === buf.length) {
      pending = [];
      pendingBytes = 0;
    } else {
      buf = buf.subarray(offset);
      pending = [buf];
      pendingBytes = buf.length;
    }
  });
}
