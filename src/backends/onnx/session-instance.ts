import type { Worker } from 'node:worker_threads';
import type { NumericArray } from '../../core/datatype.js';
import { TesseraError } from '../../core/errors.js';
import type { Tensor, TensorSpec } from '../../core/tensor.js';
import type { BackendInstance, ExecutionResult } from '../backend.js';
import { transferList, type FromWorker, type SessionSettings, type ToWorker, type WireTensor } from './messages.js';
import { siblingModule, spawnModuleWorker } from './spawn.js';

interface PendingRun {
  readonly resolve: (result: ExecutionResult) => void;
  readonly reject: (error: TesseraError) => void;
}

/** Failures onnxruntime reports for bad input values rather than for a broken model. */
const INPUT_VALUE_FAILURE = /invalid[_ ]argument|out of (data )?bounds|invalid (input|dimension|shape)|index .* out of range/i;

/**
 * One model instance: a worker thread that owns one onnxruntime session. Runs one batch at
 * a time (the scheduler guarantees it).
 */
export class SessionInstance implements BackendInstance {
  readonly index: number;
  private readonly worker: Worker;
  private readonly pending = new Map<number, PendingRun>();
  private nextId = 0;
  private exited = false;
  private exitReason = 'the instance was closed';
  private closing: Promise<void> | undefined;

  private constructor(index: number, worker: Worker) {
    this.index = index;
    this.worker = worker;
    worker.on('message', (message: FromWorker) => this.onMessage(message));
    worker.on('error', (error: Error) => this.onExit(`the instance's worker failed: ${error.message}`));
    worker.on('exit', (code) => this.onExit(`the instance's worker exited with code ${code}`));
  }

  /** Start a worker and load the model in it; resolves once the session is ready. */
  static async start(
    index: number,
    modelPath: string,
    settings: SessionSettings,
  ): Promise<{ instance: SessionInstance; inputs: readonly TensorSpec[]; outputs: readonly TensorSpec[] }> {
    const worker = spawnModuleWorker(siblingModule(import.meta.url, 'session-worker'));
    const loaded = await new Promise<{ inputs: readonly TensorSpec[]; outputs: readonly TensorSpec[] }>((resolve, reject) => {
      const onMessage = (message: FromWorker): void => {
        if (message.kind === 'loaded') {
          cleanup();
          resolve({ inputs: message.inputs, outputs: message.outputs });
        } else if (message.kind === 'load-failed') {
          cleanup();
          reject(new Error(message.message));
        }
      };
      const onError = (error: Error): void => {
        cleanup();
        reject(error);
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new Error(`the worker exited with code ${code} while loading`));
      };
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      const message: ToWorker = { kind: 'load', modelPath, settings };
      worker.postMessage(message);
    }).catch(async (error: unknown) => {
      await worker.terminate();
      throw error;
    });
    return { instance: new SessionInstance(index, worker), ...loaded };
  }

  execute(inputs: readonly Tensor[], outputNames: readonly string[]): Promise<ExecutionResult> {
    if (this.exited || this.closing !== undefined) {
      return Promise.reject(new TesseraError('MODEL_UNAVAILABLE', `model instance ${this.index} is not running: ${this.exitReason}`));
    }
    const id = this.nextId++;
    let wire: WireTensor[];
    try {
      wire = inputs.map(toWire);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<ExecutionResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const message: ToWorker = { kind: 'run', id, inputs: wire, outputNames };
      this.worker.postMessage(message, transferList(wire));
    });
  }

  /** Release the session and stop the worker; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (!this.exited) {
        const closed = new Promise<void>((resolve) => {
          const onMessage = (message: FromWorker): void => {
            if (message.kind === 'closed') resolve();
          };
          this.worker.on('message', onMessage);
          this.worker.once('exit', () => resolve());
        });
        const message: ToWorker = { kind: 'close' };
        this.worker.postMessage(message);
        await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
      }
      this.exitReason = 'the instance was closed';
      await this.worker.terminate();
      this.failPending('the model instance was closed');
    })();
    return this.closing;
  }

  private onMessage(message: FromWorker): void {
    if (message.kind === 'result') {
      const run = this.pending.get(message.id);
      if (run === undefined) return;
      this.pending.delete(message.id);
      run.resolve({
        outputs: message.outputs.map(fromWire),
        timings: { inputNs: message.inputNs, inferNs: message.inferNs, outputNs: message.outputNs },
      });
    } else if (message.kind === 'failed') {
      const run = this.pending.get(message.id);
      if (run === undefined) return;
      this.pending.delete(message.id);
      const code = INPUT_VALUE_FAILURE.test(message.message) ? 'INVALID_INPUT_DATA' : 'INFERENCE_FAILED';
      run.reject(new TesseraError(code, `onnxruntime failed to run the model: ${message.message}`));
    }
  }

  private onExit(reason: string): void {
    if (this.exited) return;
    this.exited = true;
    if (this.closing === undefined) this.exitReason = reason;
    this.failPending(reason);
  }

  private failPending(reason: string): void {
    for (const run of this.pending.values()) run.reject(new TesseraError('INFERENCE_FAILED', reason));
    this.pending.clear();
  }
}

/**
 * The wire form of a tensor. Numeric data is transferred, so it must own its whole buffer:
 * a view into a larger buffer (a pooled Buffer, a slice of a request body) is copied first,
 * since transferring would detach the rest of that buffer. Views of shared memory are shared.
 */
function toWire(tensor: Tensor): WireTensor {
  if (tensor.datatype === 'BYTES') {
    // onnxruntime-node passes string elements as C strings: a NUL byte would silently cut the
    // element short, so refuse it instead.
    const withNul = tensor.data.findIndex((bytes) => bytes.includes(0));
    if (withNul !== -1) {
      throw new TesseraError('INVALID_INPUT_DATA', `input '${tensor.name}': element ${withNul} contains a NUL byte, which onnxruntime string tensors cannot carry`);
    }
    return { name: tensor.name, datatype: 'BYTES', shape: tensor.shape, data: tensor.data.map((b) => b.toString('utf8')) };
  }
  const data = tensor.data;
  // A view of shared memory (batch jobs pack their rows there) crosses as it is: posting it
  // neither copies nor detaches anything; the worker copies it for onnxruntime.
  if (data.buffer instanceof SharedArrayBuffer) return { name: tensor.name, datatype: tensor.datatype, shape: tensor.shape, data };
  const ownsBuffer = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
  return { name: tensor.name, datatype: tensor.datatype, shape: tensor.shape, data: ownsBuffer ? data : (data.slice() as NumericArray) };
}

function fromWire(wire: WireTensor): Tensor {
  if (wire.datatype === 'BYTES') {
    return { name: wire.name, datatype: 'BYTES', shape: wire.shape, data: (wire.data as readonly string[]).map((s) => Buffer.from(s, 'utf8')) };
  }
  return { name: wire.name, datatype: wire.datatype, shape: wire.shape, data: wire.data } as Tensor;
}
