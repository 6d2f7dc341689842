import type { NumericArray, NumericDataType } from '../core/datatype.js';
import type { Tensor, TensorSpec } from '../core/tensor.js';

/**
 * The narrow interface between the engine and what runs models. Levels after Triton's backend
 * API: a Backend loads BackendModels; a model has instances; the scheduler never calls
 * `execute` twice at once on one instance.
 */
export interface Backend {
  /** The name model configs select it by (`backend: onnxruntime`). */
  readonly name: string;
  /** The model file a version directory holds when the config names none. */
  readonly defaultModelFilename: string;
  /** Load one model version; rejects with MODEL_LOAD_FAILED and the reason. */
  load(spec: BackendModelSpec): Promise<BackendModel>;
}

export interface BackendModelSpec {
  readonly name: string;
  readonly version: string;
  /** Absolute path of the model file. */
  readonly modelPath: string;
  readonly instanceCount: number;
  /** Backend options from the model config's `parameters` (thread counts, optimisation level...). */
  readonly parameters: Readonly<Record<string, string | number | boolean>>;
}

export interface BackendModel {
  /** Inputs as the model file declares them (-1 marks a variable dim). */
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  readonly instances: readonly BackendInstance[];
  /**
   * Refuse (throw INVALID_INPUT_DATA) a request's inputs that the backend cannot run although
   * they fit the model's signature, before the request is batched with others, so that one
   * request's bad value fails that request alone. Absent: nothing beyond the signature.
   */
  checkInputs?(inputs: readonly Tensor[]): void;
  /** Release every instance; idempotent. Pending executions are rejected. */
  close(): Promise<void>;
}

/** Time spent inside one execution, as the backend measured it. */
export interface ExecutionTimings {
  /** Preparing inputs inside the backend (e.g. wrapping buffers as runtime tensors). */
  readonly inputNs: number;
  readonly inferNs: number;
  /** Collecting outputs inside the backend. */
  readonly outputNs: number;
}

export interface ExecutionResult {
  /** One tensor per requested output name, in the order asked. */
  readonly outputs: readonly Tensor[];
  readonly timings: ExecutionTimings;
}

export interface BackendInstance {
  readonly index: number;
  /**
   * Run one batch. The backend may take ownership of the inputs' buffers (they can be
   * transferred to a worker thread and detached): callers must not read them afterwards.
   */
  execute(inputs: readonly Tensor[], outputNames: readonly string[]): Promise<ExecutionResult>;
  /**
   * An array of `length` elements to assemble input `name` of this instance's next batch in,
   * when the instance keeps one that costs less than a new array (undefined: allocate one).
   * Large new arrays are what sets V8's garbage collector going under load: each batch of
   * 224x224 images is megabytes of external memory.
   */
  inputStaging?(name: string, datatype: NumericDataType, length: number): NumericArray | undefined;
  /**
   * False while the instance cannot run batches (its worker died and is being replaced): the
   * scheduler then gives batches to the model's other instances. Absent: always available.
   */
  available?(): boolean;
}
