/**
 * A worker thread of raw-child.ts holding one raw session (lib/raw-session.ts) when the raw
 * baseline runs several sessions side by side. It answers the parent's requests in order:
 * prepare a batch size, run until an end time (replying with the run times), release. A
 * failure rejects unhandled, which ends the worker and reaches the parent as an 'error' event.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { RawSession, type RawSessionOptions, type RawWorkerReply, type RawWorkerRequest } from './lib/raw-session.js';

const port = parentPort;
if (port === null) throw new Error('raw-session-worker.ts runs as a worker thread');
const session = await RawSession.create(workerData as RawSessionOptions);
port.on('message', (request: RawWorkerRequest) => {
  const answer = async (): Promise<RawWorkerReply> => {
    switch (request.kind) {
      case 'prepare':
        await session.prepare(request.batchSize);
        return { kind: 'prepared' };
      case 'run':
        return { kind: 'ran', times: await session.runUntil(request.limits) };
      case 'release':
        await session.release();
        return { kind: 'released' };
    }
  };
  void answer().then((reply) => port.postMessage(reply));
});
port.postMessage({ kind: 'ready' } satisfies RawWorkerReply);
