/**
 * A worker thread that reads and decodes an input's chunks (see threaded.ts), so that the job's
 * main thread, which feeds the model instances, does not spend its time decoding Parquet pages.
 */
import { parentPort } from 'node:worker_threads';
import { toTesseraError } from '../../core/errors.js';
import { openSource } from './open.js';
import type { FromReader, ToReader } from './threaded.js';

const port = parentPort;
if (port === null) throw new Error('reader-worker must run in a worker thread');

let credits = 0;
let wake: (() => void) | undefined;

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
  const source = await openSource(message.path, message.format, message.csvDelimiter);
  try {
    for await (const chunk of source.chunks(message.chunkRows, message.columns, new Set(message.done))) {
      if (chunk.skipped) {
        send({ kind: 'skipped', index: chunk.index, rows: chunk.rows, bytesRead: source.bytesRead() });
        continue;
      }
      while (credits === 0) await new Promise<void>((resolve) => (wake = resolve));
      credits--;
      const transfer: ArrayBuffer[] = [];
      const columns = message.columns.map((name) => [name, portable(chunk.column(name), transfer)] as [string, unknown]);
      send(
        { kind: 'chunk', index: chunk.index, start: chunk.start, rows: chunk.rows, columns, rowErrors: [...chunk.rowErrors], bytesRead: source.bytesRead() },
        transfer,
      );
    }
    send({ kind: 'end', bytesRead: source.bytesRead() });
  } finally {
    await source.close();
  }
}

port.on('message', (message: ToReader) => {
  if (message.kind === 'ack') {
    credits++;
    wake?.();
    wake = undefined;
    return;
  }
  credits += message.prefetch;
  run(message).catch((error: unknown) => {
    const failure = toTesseraError(error);
    send({ kind: 'error', code: failure.code, message: failure.message });
  });
});
