/**
 * A worker thread that reads and decodes an input's chunks (see threaded.ts), so that the job's
 * main thread, which feeds the model instances, does not spend its time decoding Parquet pages.
 */
import { parentPort } from 'node:worker_threads';
import { toTesseraError } from '../../core/errors.js';
import { floatColumns, packColumns, packedBytes, SharedPool } from '../pack.js';
import { openSource } from './open.js';
import type { InputSource } from './source.js';
import type { FromReader, ToReader, WirePacked } from './threaded.js';

const port = parentPort;
if (port === null) throw new Error('reader-worker must run in a worker thread');

// V8 optimizes typed-array code on the assumption that no ArrayBuffer of the thread was ever
// detached, and throws all such code away when the first one is. Chunks reach the job by
// transferring (detaching) arrays: detach a dummy one now, before anything is optimized, rather
// than after the first chunk, which would have the packing and decoding code compiled again.
{
  const dummy = new ArrayBuffer(8);
  structuredClone(dummy, { transfer: [dummy] });
}

let credits = 0;
let wake: (() => void) | undefined;
/** Shared memory of packed chunks, given back by the job once it is done with them. */
const pool = new SharedPool();
/** The input opened ahead ('open'), for the 'start' that reads it. */
let openedAhead: { readonly path: string; readonly source: Promise<InputSource> } | undefined;

function send(message: FromReader, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(message, transfer);
}

/** A column's values in a form that crosses threads: typed arrays copied into buffers of their own (transferred). */
function portable(values: ArrayLike<unknown>, transfer: ArrayBuffer[]): unknown {
  if (ArrayBuffer.isView(values) && !(values instanceof DataView)) {
    const copy = (values as unknown as Float32Array).slice();
    transfer.push(copy.buffer as ArrayBuffer);
    return copy;
  }
  return Array.isArray(values) ? values : Array.from(values);
}

async function run(message: Extract<ToReader, { kind: 'start' }>): Promise<void> {
  const ahead = openedAhead?.path === message.path ? openedAhead.source : undefined;
  openedAhead = undefined;
  const source = await (ahead ?? openSource(message.path, message.format, message.csvDelimiter));
  try {
    // Everything sent is copied out of the chunk (packed, or copied for transfer): transient.
    const options = { transient: true, pool, ...(message.pack === undefined ? {} : { pack: message.pack }), ...(message.keep === undefined ? {} : { keep: message.keep }) };
    const chunks = source.chunks(message.chunkRows, message.columns, new Set(message.done), options);
    for (;;) {
      // Read (and pack) the next chunk only with a credit for it: no more memory is held than
      // the job lets the reader decode ahead.
      while (credits === 0) await new Promise<void>((resolve) => (wake = resolve));
      const next = await chunks.next();
      if (next.done === true) break;
      const chunk = next.value;
      if (chunk.skipped) {
        send({ kind: 'skipped', index: chunk.index, rows: chunk.rows, bytesRead: source.bytesRead() });
        continue;
      }
      credits--;
      // Feature inputs are packed here, into shared memory; their columns then stay here too.
      const packed: WirePacked[] = [];
      const wanted = new Set(message.keep ?? message.columns);
      for (const spec of message.pack ?? []) {
        // Packed by the source already (Parquet packs as it decodes).
        const done = chunk.packed?.get(spec.input);
        if (done !== undefined) {
          packed.push({ input: spec.input, data: done.data, perRow: done.perRow, problems: [...done.problems] });
          continue;
        }
        const columns = chunk.rowErrors.size === 0 ? floatColumns(spec.columns.map((name) => chunk.column(name)), chunk.rows) : undefined;
        if (columns === undefined) {
          for (const name of spec.columns) wanted.add(name);
          continue;
        }
        const features = packColumns(spec, columns, chunk.rows, pool.take(packedBytes(spec, chunk.rows)));
        packed.push({ input: spec.input, data: features.data, perRow: features.perRow, problems: [...features.problems] });
      }
      const transfer: ArrayBuffer[] = [];
      const columns = message.columns.filter((name) => wanted.has(name)).map((name) => [name, portable(chunk.column(name), transfer)] as [string, unknown]);
      send(
        { kind: 'chunk', index: chunk.index, start: chunk.start, rows: chunk.rows, columns, rowErrors: [...chunk.rowErrors], packed, bytesRead: source.bytesRead() },
        transfer,
      );
    }
    send({ kind: 'end', bytesRead: source.bytesRead() });
  } finally {
    await source.close();
  }
}

port.on('message', (message: ToReader) => {
  if (message.kind === 'open') {
    const source = openSource(message.path, message.format, message.csvDelimiter);
    // A failure is reported by the 'start' that awaits it; until then it is not unhandled.
    source.catch(() => undefined);
    openedAhead = { path: message.path, source };
    return;
  }
  if (message.kind === 'close') {
    const ahead = openedAhead;
    openedAhead = undefined;
    void (ahead?.source.then((source) => source.close()).catch(() => undefined) ?? Promise.resolve()).finally(() => port.close());
    return;
  }
  if (message.kind === 'ack') {
    credits++;
    wake?.();
    wake = undefined;
    return;
  }
  if (message.kind === 'recycle') {
    for (const buffer of message.buffers) pool.give(buffer);
    return;
  }
  credits += message.prefetch;
  run(message).catch((error: unknown) => {
    const failure = toTesseraError(error);
    send({ kind: 'error', code: failure.code, message: failure.message });
  });
});
