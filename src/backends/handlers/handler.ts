import type { Parameters, Tensor, TensorSpec } from '../../core/tensor.js';

/**
 * Model handlers turn a raw request (an image, JSON records, ...) into input tensors and the
 * model's outputs into a JSON answer: TorchServe's handler idea, in TypeScript. Built-in
 * handlers are chosen in a model's config (`handler: image | tabular`); a model directory may
 * also hold its own `handler.js` / `handler.ts` module.
 */

/** What a handler knows of the model it serves. */
export interface HandlerModelInfo {
  readonly name: string;
  readonly version: string;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /** 0 when the model has no batch dimension. */
  readonly maxBatchSize: number;
  readonly labels: readonly string[] | undefined;
  /** The config's `handler_options`, as written. */
  readonly options: Readonly<Record<string, unknown>>;
}

/** One file of a multipart request, or the whole raw body. */
export interface HandlerFile {
  readonly fieldName: string;
  readonly filename: string | undefined;
  readonly contentType: string | undefined;
  readonly data: Buffer;
}

/** The raw request as a protocol received it. */
export interface HandlerRequest {
  /**
   * The body (field name `body`), or each uploaded file of a multipart request, with its file
   * name. A text form field named `data` or `body` is here too (without a file name): TorchServe
   * reads the input from those fields whether they are files or text.
   */
  readonly files: readonly HandlerFile[];
  /** Query-string parameters and the form's other text fields (a form field wins over a query parameter of the same name). */
  readonly fields: Readonly<Record<string, string>>;
  readonly parameters?: Parameters;
}

/** The tensors a handler produced for one request. */
export interface HandlerInputs {
  readonly inputs: readonly Tensor[];
  /** Outputs to compute; default all. */
  readonly outputNames?: readonly string[];
  /** Anything preprocess wants postprocess to see (e.g. original image sizes). */
  readonly context?: unknown;
}

export interface ModelHandler {
  preprocess(request: HandlerRequest, model: HandlerModelInfo): HandlerInputs | Promise<HandlerInputs>;
  /** A JSON-serialisable answer. */
  postprocess(outputs: readonly Tensor[], model: HandlerModelInfo, context: unknown): unknown;
}
