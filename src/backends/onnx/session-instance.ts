import { isUtf8 } from 'node:buffer';
import type { Worker } from 'node:worker_threads';
import { TYPED_ARRAY, elementByteSize, type NumericArray, type NumericDataType } from '../../core/datatype.js';
import { TesseraError } from '../../core/errors.js';
import type { Tensor, TensorSpec } from '../../core/tensor.js';
import type { BackendInstance, ExecutionResult } from '../backend.js';
import { transferList, type FromWorker, type SessionSettings, type ToWorker, type WireTensor } from './messages.js';
import { siblingModule, spawnModuleWorker } from './spawn.js';

/**
 * onnxruntime's own usage telemetry, which it turns on by default (except on machines it takes
 * for CI): each process that loads it writes a `mat-debug-<pid>.log` in `$TMPDIR` (`/tmp` when
 * unset) and a database under `~/.cache/Microsoft/DeveloperTools`, the store of events its
 * telemetry library uploads when it can reach the network. A model server should neither write
 * those nor send them unasked, so Tessera turns it off unless `ORT_DISABLE_TELEMETRY` is set
 * (any value: `0` turns it back on). onnxruntime reads the variable from the process environment
 * when a worker first loads it; assigning `process.env` on the main thread sets that environment
 * for every thread.
 */
export function keepOnnxRuntimeTelemetryOff(): void {
  if (process.env.ORT_DISABLE_TELEMETRY === undefined) process.env.ORT_DISABLE_TELEMETRY = '1';
}

/** How long closing waits for the worker to release its session, and then for its thread to stop. */
const CLOSE_WAIT_MS = 5_000;

interface PendingRun {
  readonly resolve: (result: ExecutionResult) => void;
  readonly reject: (error: TesseraError) => void;
  /** Staging buffers the run's inputs are in, free again once it settles. */
  readonly staged: readonly StagingSlot[];
}

/** Shared memory one input of the instance's batches is assembled in (see inputStaging). */
interface StagingSlot {
  readonly buffer: SharedArrayBuffer;
  lent: boolean;
}

/**
 * Inputs below this size are assembled in new arrays: small allocations do not drive the
 * garbage collector, and transferring their buffers costs nothing.
 */
const STAGING_MIN_BYTES = 64 * 1024;

/** Failures onnxruntime reports for bad input values rather than for a broken model. */
const INPUT_VALUE_FAILURE = /invalid[_ ]argument|out of (data )?bounds|invalid (input|dimension|shape)|index .* out of range/i;

/**
 * One model instance: a worker thread that owns one onnxruntime session. Runs one batch at
 * a time (the scheduler guarantees it).
 */
export class SessionInstance implements BackendInstance {
  readonly index: number;
  private worker: Worker;
  private readonly pending = new Map<number, PendingRun>();
  private readonly staging = new Map<string, StagingSlot>();
  private nextId = 0;
  private exited = false;
  private exitReason = 'the instance was closed';
  private closing: Promise<void> | undefined;
  /** Set while a worker that died is being replaced. */
  private restarting: Promise<void> | undefined;

  private constructor(
    index: number,
    worker: Worker,
    private readonly modelPath: string,
    private readonly settings: SessionSettings,
  ) {
    this.index = index;
    this.worker = worker;
    this.attach(worker);
  }

  private attach(worker: Worker): void {
    worker.on('message', (message: FromWorker) => this.onMessage(message));
    worker.on('error', (error: Error) => this.onExit(worker, `the instance's worker failed: ${error.message}`));
    worker.on('exit', (code) => this.onExit(worker, `the instance's worker exited with code ${code}`));
  }

  /** Start a worker and load the model in it; resolves once the session is ready. */
  static async start(
    index: number,
    modelPath: string,
    settings: SessionSettings,
  ): Promise<{ instance: SessionInstance; inputs: readonly TensorSpec[]; outputs: readonly TensorSpec[] }> {
    const { worker, inputs, outputs } = await SessionInstance.spawn(modelPath, settings);
    return { instance: new SessionInstance(index, worker, modelPath, settings), inputs, outputs };
  }

  /** A worker with the model loaded in it. */
  private static async spawn(modelPath: string, settings: SessionSettings): Promise<{ worker: Worker; inputs: readonly TensorSpec[]; outputs: readonly TensorSpec[] }> {
    keepOnnxRuntimeTelemetryOff();
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
    return { worker, ...loaded };
  }

  /** False from the worker's death until its replacement has the model loaded (and once closed). */
  available(): boolean {
    return !this.exited && this.closing === undefined;
  }

  execute(inputs: readonly Tensor[], outputNames: readonly string[]): Promise<ExecutionResult> {
    if (this.exited || this.closing !== undefined) {
      const state = this.restarting !== undefined && this.closing === undefined ? 'is restarting' : 'is not running';
      return Promise.reject(new TesseraError('MODEL_UNAVAILABLE', `model instance ${this.index} ${state}: ${this.exitReason}`));
    }
    const id = this.nextId++;
    let wire: WireTensor[];
    try {
      wire = inputs.map((tensor) => this.toWire(tensor));
    } catch (error) {
      this.releaseStaging([...this.staging.values()]);
      return Promise.reject(error);
    }
    // Slots lent for a batch that never reached execute (its assembly failed) are free again.
    const staged: StagingSlot[] = [];
    for (const slot of this.staging.values()) {
      if (!slot.lent) continue;
      if (wire.some((tensor) => !Array.isArray(tensor.data) && (tensor.data as NumericArray).buffer === slot.buffer)) staged.push(slot);
      else slot.lent = false;
    }
    return new Promise<ExecutionResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, staged });
      const message: ToWorker = { kind: 'run', id, inputs: wire, outputNames };
      this.worker.postMessage(message, transferList(wire));
    });
  }

  /**
   * The instance's shared buffer for input `name`, lent until the run it goes into settles.
   * The worker copies it into memory of its own for onnxruntime (which refuses shared memory)
   * before the run starts, so one buffer per input serves every batch without allocating.
   */
  inputStaging(name: string, datatype: NumericDataType, length: number): NumericArray | undefined {
    const bytes = length * elementByteSize(datatype);
    if (bytes < STAGING_MIN_BYTES) return undefined;
    let slot = this.staging.get(name);
    if (slot?.lent === true) return undefined;
    if (slot === undefined || slot.buffer.byteLength < bytes) {
      slot = { buffer: new SharedArrayBuffer(bytes), lent: false };
      this.staging.set(name, slot);
    }
    slot.lent = true;
    return new TYPED_ARRAY[datatype](slot.buffer, 0, length);
  }

  /**
   * The wire form of a tensor. Numeric data is transferred, so it must own its whole buffer:
   * a view into a larger buffer (a pooled Buffer, a slice of a request body) is copied into
   * staging (or a new array) first, since transferring would detach the rest of that buffer.
   * Views of shared memory are shared.
   */
  private toWire(tensor: Tensor): WireTensor {
    if (tensor.datatype === 'BYTES') return bytesToWire(tensor);
    const data = tensor.data;
    if (data.buffer instanceof SharedArrayBuffer) return { name: tensor.name, datatype: tensor.datatype, shape: tensor.shape, data };
    const ownsBuffer = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
    if (ownsBuffer) return { name: tensor.name, datatype: tensor.datatype, shape: tensor.shape, data };
    const staged = this.inputStaging(tensor.name, tensor.datatype, data.length);
    if (staged !== undefined) {
      (staged as Float32Array).set(data as Float32Array);
      return { name: tensor.name, datatype: tensor.datatype, shape: tensor.shape, data: staged };
    }
    return { name: tensor.name, datatype: tensor.datatype, shape: tensor.shape, data: data.slice() as NumericArray };
  }

  private releaseStaging(slots: readonly StagingSlot[]): void {
    for (const slot of slots) slot.lent = false;
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
        await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref())]);
      }
      this.exitReason = 'the instance was closed';
      // Runs still pending (one stuck in onnxruntime) fail now, not once the thread has exited:
      // a thread inside a native call only stops when the call returns, if ever.
      this.failPending('the model instance was closed');
      await Promise.race([this.worker.terminate(), new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref())]);
    })();
    return this.closing;
  }

  private onMessage(message: FromWorker): void {
    if (message.kind === 'result') {
      const run = this.pending.get(message.id);
      if (run === undefined) return;
      this.pending.delete(message.id);
      this.releaseStaging(run.staged);
      run.resolve({
        outputs: message.outputs.map(fromWire),
        timings: { inputNs: message.inputNs, inferNs: message.inferNs, outputNs: message.outputNs },
      });
    } else if (message.kind === 'failed') {
      const run = this.pending.get(message.id);
      if (run === undefined) return;
      this.pending.delete(message.id);
      this.releaseStaging(run.staged);
      const code = INPUT_VALUE_FAILURE.test(message.message) ? 'INVALID_INPUT_DATA' : 'INFERENCE_FAILED';
      run.reject(new TesseraError(code, `onnxruntime failed to run the model: ${message.message}`));
    }
  }

  private onExit(worker: Worker, reason: string): void {
    if (worker !== this.worker || this.exited) return;
    this.exited = true;
    if (this.closing === undefined) this.exitReason = reason;
    this.failPending(reason);
    if (this.closing === undefined) this.restarting ??= this.restart();
  }

  /**
   * A worker that died (not closed) is replaced by a new one with the model loaded again, so
   * the instance serves again; until then its batches are refused as unavailable (503, retried
   * by clients). A replacement that fails to load is tried again, up to 30 s apart.
   */
  private async restart(): Promise<void> {
    for (let attempt = 0; this.closing === undefined; attempt++) {
      try {
        const { worker } = await SessionInstance.spawn(this.modelPath, this.settings);
        if (this.closing !== undefined) {
          await worker.terminate();
          break;
        }
        this.worker = worker;
        this.attach(worker);
        this.exited = false;
        break;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, Math.min(30_000, 500 * 2 ** attempt)).unref());
      }
    }
    this.restarting = undefined;
  }

  private failPending(reason: string): void {
    for (const run of this.pending.values()) run.reject(new TesseraError('INFERENCE_FAILED', reason));
    this.pending.clear();
  }
}

/** BYTES elements travel as strings (onnxruntime-node's string tensors take JS strings). */
/**
 * Refuse BYTES inputs that an onnxruntime string tensor cannot carry as sent. The engine checks
 * each request with it before batching (BackendModel.checkInputs), so a bad element fails only
 * its own request; the batch's conversion checks again.
 */
export function checkStringInputs(inputs: readonly Tensor[]): void {
  for (const tensor of inputs) {
    if (tensor.datatype !== 'BYTES') continue;
    // onnxruntime-node passes string elements as C strings: a NUL byte would silently cut the
    // element short, so refuse it instead.
    const withNul = tensor.data.findIndex((bytes) => bytes.includes(0));
    if (withNul !== -1) {
      throw new TesseraError('INVALID_INPUT_DATA', `input '${tensor.name}': element ${withNul} contains a NUL byte, which onnxruntime string tensors cannot carry`);
    }
    // The elements become JS strings on the way: bytes that are not UTF-8 would be replaced by
    // U+FFFD, and the model would run on other text than was sent. Refuse them instead.
    const notText = tensor.data.findIndex((bytes) => !isUtf8(bytes));
    if (notText !== -1) {
      throw new TesseraError('INVALID_INPUT_DATA', `input '${tensor.name}': element ${notText} is not valid UTF-8; onnxruntime string tensors carry text`);
    }
  }
}

function bytesToWire(tensor: Tensor & { readonly datatype: 'BYTES' }): WireTensor {
  checkStringInputs([tensor]);
  return { name: tensor.name, datatype: 'BYTES', shape: tensor.shape, data: tensor.data.map((b) => b.toString('utf8')) };
}

function fromWire(wire: WireTensor): Tensor {
  if (wire.datatype === 'BYTES') {
    return { name: wire.name, datatype: 'BYTES', shape: wire.shape, data: (wire.data as readonly string[]).map((s) => Buffer.from(s, 'utf8')) };
  }
  return { name: wire.name, datatype: wire.datatype, shape: wire.shape, data: wire.data } as Tensor;
}
