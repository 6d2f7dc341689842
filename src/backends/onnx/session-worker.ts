/**
 * A worker thread that owns one onnxruntime session (one model instance). onnxruntime-node's
 * `session.run()` computes on the calling thread, so running it here keeps the server's event
 * loop free. The main thread sends one `run` at a time (or, for batch jobs, queues the next
 * while one runs: runs then execute one after the other, in order).
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { NumericArray } from '../../core/datatype.js';
import type { TensorSpec } from '../../core/tensor.js';
import { fromOrtType, ORT_TYPE } from './datatypes.js';
import { transferList, type FromWorker, type SessionSettings, type ToWorker, type WireTensor } from './messages.js';

const port = parentPort;
if (port === null) throw new Error('session-worker must run in a worker thread');

let session: ort.InferenceSession | undefined;
/** Runs under way (each settles; run() reports its own failures). */
const runs = new Set<Promise<void>>();

function send(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(message, transfer);
}

function describe(metadata: readonly ort.InferenceSession.ValueMetadata[]): TensorSpec[] {
  return metadata.map((value) => {
    if (!value.isTensor) throw new Error(`'${value.name}' is not a tensor; only tensor inputs and outputs are supported`);
    const datatype = fromOrtType(value.type);
    if (datatype === undefined) throw new Error(`'${value.name}' has type ${value.type}, which the V2 protocol cannot carry`);
    const shape = value.shape.map((dim) => (typeof dim === 'number' && dim >= 0 ? dim : -1));
    return { name: value.name, datatype, shape };
  });
}

function sessionOptions(settings: SessionSettings): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: settings.intraOpNumThreads,
    interOpNumThreads: settings.interOpNumThreads,
    graphOptimizationLevel: settings.graphOptimizationLevel,
    executionMode: settings.executionMode,
    enableCpuMemArena: settings.enableCpuMemArena,
    executionProviders: ['cpu'],
    extra: {
      session: {
        intra_op: { allow_spinning: settings.allowSpinning ? '1' : '0' },
        inter_op: { allow_spinning: settings.allowSpinning ? '1' : '0' },
      },
    },
  };
}

/**
 * Lower this thread's scheduling priority to `nice` before the session exists: the intra-op
 * threads onnxruntime creates from this thread inherit it. Linux schedules threads, not
 * processes, so the thread id (from /proc/thread-self) names this thread alone. Raising nice
 * needs no privilege. Elsewhere (no /proc) priorities stay as they are.
 */
function lowerThreadPriority(nice: number): void {
  if (nice <= 0 || process.platform !== 'linux') return;
  try {
    const threadId = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(threadId) && threadId > 0) setPriority(threadId, nice);
  } catch {
    // No /proc, or the kernel refused: the instance runs at the process's priority.
  }
}

async function load(modelPath: string, settings: SessionSettings): Promise<void> {
  try {
    lowerThreadPriority(settings.computeThreadNice);
    session = await ort.InferenceSession.create(modelPath, sessionOptions(settings));
    send({ kind: 'loaded', inputs: describe(session.inputMetadata), outputs: describe(session.outputMetadata) });
  } catch (error) {
    send({ kind: 'load-failed', message: error instanceof Error ? error.message : String(error) });
  }
}

/** Buffers that views of shared memory are copied into for onnxruntime, reused from run to run. */
const unshared: ArrayBuffer[] = [];

function toOrt(tensor: WireTensor, taken: ArrayBuffer[]): ort.Tensor {
  if (tensor.datatype === 'BYTES') {
    return new ort.Tensor('string', tensor.data as string[], tensor.shape);
  }
  const type = ORT_TYPE[tensor.datatype] as ort.Tensor.Type;
  let data = tensor.data as Float32Array;
  if (data.buffer instanceof SharedArrayBuffer) {
    // onnxruntime-node refuses shared memory: copy into a buffer of this run's own (given back
    // once the run has returned; with runs queued at the worker, each has its own).
    const at = unshared.findIndex((buffer) => buffer.byteLength >= data.byteLength);
    // None large enough: a larger one replaces a free one, so the list stays as long as the
    // number of runs that were ever in flight at once (batches grow, they do not pile up).
    if (at === -1) unshared.pop();
    const buffer = at === -1 ? new ArrayBuffer(data.byteLength) : unshared.splice(at, 1)[0]!;
    taken.push(buffer);
    const copy = new (data.constructor as Float32ArrayConstructor)(buffer, 0, data.length);
    copy.set(data);
    data = copy;
  }
  return new ort.Tensor(type as 'float32', data, tensor.shape);
}

function fromOrt(name: string, tensor: ort.Tensor): WireTensor {
  const datatype = fromOrtType(tensor.type);
  if (datatype === undefined) throw new Error(`output '${name}' has type ${tensor.type}, which the V2 protocol cannot carry`);
  const shape = tensor.dims.slice();
  if (datatype === 'BYTES') {
    return { name, datatype, shape, data: tensor.data as string[] };
  }
  return { name, datatype, shape, data: tensor.data as NumericArray };
}

async function run(id: number, inputs: readonly WireTensor[], outputNames: readonly string[]): Promise<void> {
  const taken: ArrayBuffer[] = [];
  try {
    if (session === undefined) throw new Error('no session is loaded');
    const t0 = process.hrtime.bigint();
    const feeds: Record<string, ort.Tensor> = {};
    for (const input of inputs) feeds[input.name] = toOrt(input, taken);
    const t1 = process.hrtime.bigint();
    const results = await session.run(feeds, outputNames as string[]);
    const t2 = process.hrtime.bigint();
    const outputs = outputNames.map((name) => {
      const value = results[name];
      if (value === undefined) throw new Error(`the model produced no output '${name}'`);
      return fromOrt(name, value);
    });
    const t3 = process.hrtime.bigint();
    send(
      { kind: 'result', id, outputs, inputNs: Number(t1 - t0), inferNs: Number(t2 - t1), outputNs: Number(t3 - t2) },
      transferList(outputs),
    );
  } catch (error) {
    send({ kind: 'failed', id, message: error instanceof Error ? error.message : String(error) });
  } finally {
    unshared.push(...taken);
  }
}

port.on('message', (message: ToWorker) => {
  switch (message.kind) {
    case 'load':
      void load(message.modelPath, message.settings);
      return;
    case 'run': {
      const running = run(message.id, message.inputs, message.outputNames);
      runs.add(running);
      void running.finally(() => runs.delete(running));
      return;
    }
    case 'close': {
      // A run already handed to onnxruntime executes on a later tick: releasing the session
      // under it aborts the whole process (an uncaught Napi::Error). Release after runs end.
      const closing = session;
      session = undefined;
      void Promise.allSettled([...runs])
        .then(() => closing?.release())
        .finally(() => send({ kind: 'closed' }));
      return;
    }
  }
});
