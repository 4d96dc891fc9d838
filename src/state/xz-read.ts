// Synchronous xz decompression for loading the state file, on lzma-native's native binding.
//
// lzma-native's own decompress() is asynchronous: it loads readable-stream (about 10 ms of every
// start), runs liblzma on a thread and hands each output chunk over with setImmediate. The state
// file's compressed part is small (10 KB for 5000 steps; the bulk is stored uncompressed, see
// store.ts), so that machinery cost a no-op run more than liblzma itself: the load took 30-70 ms
// of wall time for 25-35 ms of work. The binding's coder can run in the calling thread and call
// back synchronously (LZMAStream::Code with async = false), which is all this needs. Compression
// (the save) still goes through lzma-native's streams and threads.
import { createRequire } from "node:module";
import { dirname } from "node:path";

/** The part of lzma-native's native LZMAStream used here (src/lzma-stream.cpp in lzma-native 8). */
interface NativeStream {
  /** lzma_stream_decoder(memlimit, flags); null means no memory limit. Throws when it fails. */
  streamDecoder_(memlimit: number | null, flags: number): unknown;
  /** Feed input (null: finish). With async false, bufferHandler is called before this returns. */
  code(input: Buffer | null, async: boolean): void;
  /**
   * Called with (output chunk) for data; with (null, undefined, error or null) at the end of the
   * data or on an error; with (undefined, processed chunk count) after input was consumed.
   */
  bufferHandler: (buf: Buffer | null | undefined, processedChunks: number | undefined, err: Error | null | undefined) => void;
}

interface NativeBinding {
  Stream: new () => NativeStream;
  /** liblzma's LZMA_CONCATENATED: decode concatenated .xz streams as one. */
  CONCATENATED: number;
}

let binding: NativeBinding | undefined;

function nativeBinding(): NativeBinding {
  if (binding === undefined) {
    // The same loader and prebuilt binary that lzma-native's index.js uses, without the rest.
    const require = createRequire(import.meta.url);
    const packageDir = dirname(require.resolve("lzma-native/package.json"));
    const load = createRequire(`${packageDir}/index.js`)("node-gyp-build") as (dir: string) => NativeBinding;
    binding = load(packageDir);
  }
  return binding;
}

/** The six bytes every .xz stream starts with. */
const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

export function isXz(head: Buffer): boolean {
  return head.length >= XZ_MAGIC.length && head.compare(XZ_MAGIC, 0, XZ_MAGIC.length, 0, XZ_MAGIC.length) === 0;
}

/**
 * Decompress `input`, one or more concatenated .xz streams, in the calling thread. Throws an
 * Error saying what liblzma found wrong (truncated or damaged data, not xz at all).
 */
export function xzDecompressSync(input: Buffer): Buffer {
  const native = nativeBinding();
  const stream = new native.Stream();
  const chunks: Buffer[] = [];
  let ended = false;
  let failure: Error | null = null;
  stream.bufferHandler = (buf, _processed, err) => {
    if (buf) chunks.push(buf);
    else if (buf === null) {
      ended = true;
      if (err) failure = err;
    }
  };
  stream.streamDecoder_(null, native.CONCATENATED);
  stream.code(input, false);
  if (!ended) stream.code(null, false);
  if (failure !== null) throw failure;
  // liblzma reports the end of the data only once it has all of it: no end means it was cut.
  if (!ended) throw new Error("unexpected end of input");
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}
