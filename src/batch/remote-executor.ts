import type { Dispatcher, Pool } from 'undici';
import { isDataType, type DataType } from '../core/datatype.js';
import { TesseraError, type ErrorCode } from '../core/errors.js';
import { tensorDataFromJson, tensorDataToJsonText } from '../core/json-tensor.js';
import type { Tensor, TensorSpec } from '../core/tensor.js';
import type { Executor, ModelInfo } from './executor.js';

export interface RemoteExecutorOptions {
  /** Base URL of a KServe V2 / Open Inference Protocol server (Tessera, Triton, KServe). */
  readonly url: string;
  readonly model: string;
  readonly version: string | undefined;
  /** Connections kept open (the job's requests in flight). */
  readonly connections: number;
  /** Retries of a request refused (429, 503), failing with 5xx, or whose connection failed. */
  readonly retries: number;
  /** Per-request timeout. */
  readonly timeoutMs: number;
  /** First backoff delay; doubled each retry (with jitter), capped at 10 s. */
  readonly backoffMs?: number;
  /** Class labels, which V2 metadata does not carry. */
  readonly labels: readonly string[] | undefined;
}

/** Statuses worth retrying: overload and transient server or gateway failures. */
const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
/** A 500 may be the data's fault (the model failed on it): retried at most this often. */
const SERVER_ERROR_RETRIES = 2;
const MAX_BACKOFF_MS = 10_000;
/** Longest Retry-After honoured. */
const MAX_RETRY_AFTER_MS = 60_000;

interface HttpAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

/**
 * Scoring against a remote V2 endpoint over REST (JSON tensors), through one undici Pool with
 * bounded connections. Refusals and transient failures are retried with exponential backoff,
 * honouring Retry-After; a request still failing after every retry stops the job.
 */
export class RemoteExecutor implements Executor {
  private constructor(
    private readonly pool: Pool,
    private readonly prefix: string,
    private readonly options: RemoteExecutorOptions,
    readonly model: ModelInfo,
    readonly description: string,
  ) {}

  /** Retries made so far (for the summary). */
  retried = 0;

  static async start(options: RemoteExecutorOptions): Promise<RemoteExecutor> {
    let base: URL;
    try {
      base = new URL(options.url);
    } catch {
      throw new TesseraError('INVALID_PARAMETER', `--url: '${options.url}' is not a URL`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TesseraError('INVALID_PARAMETER', `--url: expected http:// or https://, got '${options.url}'`);
    let Pool: typeof import('undici').Pool;
    try {
      ({ Pool } = await import('undici'));
    } catch (error) {
      throw new TesseraError('INVALID_PARAMETER', `--url needs the 'undici' package, which cannot be loaded: ${(error as Error).message}`);
    }
    const pool = new Pool(base.origin, { connections: Math.max(1, options.connections), pipelining: 1, keepAliveTimeout: 30_000 });
    const path = base.pathname.replace(/\/+$/, '');
    const modelPath = `${path}/v2/models/${encodeURIComponent(options.model)}${options.version === undefined ? '' : `/versions/${encodeURIComponent(options.version)}`}`;
    const where = `${base.origin}${modelPath}`;
    const probe = new RemoteExecutor(pool, modelPath, options, placeholderModel(options.model), where);
    try {
      const answer = await probe.send('GET', modelPath, undefined, { isolating: false });
      const refusal = jobRefusal(answer, `GET ${where}`);
      if (refusal !== undefined) throw refusal;
      if (answer.status !== 200) throw new TesseraError('UPSTREAM_UNAVAILABLE', `${where} answered ${answer.status}: ${errorText(answer)}`);
      const metadata = parseMetadata(answer.text, where);
      const config = await probe.send('GET', `${modelPath}/config`, undefined, { isolating: false }).catch(() => undefined);
      let maxBatchSize = batchesFromShapes(metadata.inputs, metadata.outputs) ? Number.MAX_SAFE_INTEGER : 0;
      if (config?.status === 200) {
        const parsed = safeJson(config.text) as { max_batch_size?: unknown; config?: { max_batch_size?: unknown } } | undefined;
        const value = parsed?.max_batch_size ?? parsed?.config?.max_batch_size;
        if (typeof value === 'number' && Number.isInteger(value) && value >= 0) maxBatchSize = value;
      }
      const model: ModelInfo = {
        label: `model '${options.model}' at ${base.origin}`,
        name: options.model,
        version: options.version,
        inputs: metadata.inputs,
        outputs: metadata.outputs,
        maxBatchSize,
        labels: options.labels,
        // Without --version the server picks the version: the versions it lists stand for it.
        identity: { version: options.version ?? null, versions: options.version === undefined ? metadata.versions : null, files: null },
      };
      return new RemoteExecutor(pool, modelPath, options, model, `remote: ${where} (KServe V2 REST, ${options.connections} connection${options.connections === 1 ? '' : 's'})`);
    } catch (error) {
      await pool.close().catch(() => undefined);
      throw error;
    }
  }

  async infer(inputs: readonly Tensor[], outputs: readonly string[], options: { readonly isolating?: boolean } = {}): Promise<Tensor[]> {
    const parts = inputs.map(
      (tensor) => `{"name":${JSON.stringify(tensor.name)},"shape":${JSON.stringify(tensor.shape)},"datatype":"${tensor.datatype}","data":${tensorDataToJsonText(tensor.datatype, tensor.data)}}`,
    );
    const body = `{"inputs":[${parts.join(',')}],"outputs":${JSON.stringify(outputs.map((name) => ({ name })))}}`;
    const answer = await this.send('POST', `${this.prefix}/infer`, body, { isolating: options.isolating === true });
    if (answer.status !== 200) {
      throw jobRefusal(answer, `POST ${new URL(this.options.url).origin}${this.prefix}/infer`) ?? new TesseraError(codeForStatus(answer.status), `the server answered ${answer.status}: ${errorText(answer)}`);
    }
    return parseOutputs(answer.text);
  }

  /** One HTTP exchange, retried on refusals, 5xx and connection failures. */
  private async send(method: 'GET' | 'POST', path: string, body: string | undefined, options: { isolating: boolean }): Promise<HttpAnswer> {
    const retries = this.options.retries;
    for (let attempt = 0; ; attempt++) {
      let answer: HttpAnswer | undefined;
      let failure: Error | undefined;
      try {
        const response = await this.pool.request({
          method,
          path,
          headers: body === undefined ? {} : { 'content-type': 'application/json' },
          ...(body === undefined ? {} : { body }),
          headersTimeout: this.options.timeoutMs,
          bodyTimeout: this.options.timeoutMs,
        } satisfies Dispatcher.RequestOptions);
        answer = { status: response.statusCode, headers: response.headers, text: await response.body.text() };
      } catch (error) {
        failure = error as Error;
      }
      const retryable =
        failure !== undefined ||
        (answer !== undefined &&
          RETRY_STATUS.has(answer.status) &&
          !(answer.status === 500 && (options.isolating || attempt >= SERVER_ERROR_RETRIES)));
      if (!retryable) return answer!;
      if (attempt >= retries) {
        if (answer !== undefined && answer.status === 500) return answer;
        const why = failure !== undefined ? `the connection failed (${failure.message})` : `it answered ${answer!.status}: ${errorText(answer!)}`;
        throw new TesseraError('UPSTREAM_UNAVAILABLE', `${method} ${path}: ${why}; gave up after ${retries} retries`);
      }
      this.retried++;
      await sleep(this.delay(attempt, answer));
    }
  }

  /** Wait before retry `attempt`: exponential backoff with jitter, at least what Retry-After asks. */
  private delay(attempt: number, answer: HttpAnswer | undefined): number {
    const base = this.options.backoffMs ?? 100;
    const exponential = Math.min(MAX_BACKOFF_MS, base * 2 ** attempt);
    const backoff = exponential / 2 + Math.random() * (exponential / 2);
    const header = answer?.headers['retry-after'];
    const value = Array.isArray(header) ? header[0] : header;
    if (value === undefined) return backoff;
    const seconds = Number(value);
    let asked = 0;
    if (value.trim() !== '' && Number.isFinite(seconds) && seconds >= 0) asked = seconds * 1000;
    else if (!Number.isNaN(Date.parse(value))) asked = Date.parse(value) - Date.now();
    return Math.max(backoff, Math.min(MAX_RETRY_AFTER_MS, asked));
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

function placeholderModel(name: string): ModelInfo {
  return { label: name, name, version: undefined, inputs: [], outputs: [], maxBatchSize: 0, labels: undefined, identity: { version: null, versions: null, files: null } };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function errorText(answer: HttpAnswer): string {
  const parsed = safeJson(answer.text) as { error?: unknown } | undefined;
  if (parsed !== undefined && typeof parsed.error === 'string') return parsed.error;
  return answer.text.slice(0, 300) || '(no body)';
}

/**
 * An answer that no row can cause and every later request would get too: credentials refused
 * (401, 407 from a proxy), access denied (403), no model at the URL (404) or a URL that does
 * not take inference requests (405). Their codes stop the job at once (see failureScope):
 * failing the rows instead would checkpoint them as errors, and a rerun would keep them.
 */
function jobRefusal(answer: HttpAnswer, request: string): TesseraError | undefined {
  const said = errorText(answer);
  switch (answer.status) {
    case 401:
      return new TesseraError('UNAUTHENTICATED', `${request}: the server refused the request as unauthenticated (401): ${said}; check the credentials the endpoint expects`);
    case 407:
      return new TesseraError('UNAUTHENTICATED', `${request}: a proxy asks for authentication (407): ${said}`);
    case 403:
      return new TesseraError('PERMISSION_DENIED', `${request}: the server denied access (403): ${said}; the credentials do not allow inference on this model`);
    case 404:
      return new TesseraError('MODEL_NOT_FOUND', `${request}: the server has no such model or version (404): ${said}`);
    case 405:
      return new TesseraError('ROUTE_NOT_FOUND', `${request}: the server does not take this request there (405): ${said}; is --url the base URL of a V2 endpoint?`);
    default:
      return undefined;
  }
}

/** The code of a failed inference answer that jobRefusal leaves to the rows (their batch is retried row by row). */
function codeForStatus(status: number): ErrorCode {
  if (status === 413) return 'PAYLOAD_TOO_LARGE';
  if (status === 429 || status === 503) return 'UPSTREAM_UNAVAILABLE';
  if (status >= 400 && status < 500) return 'INVALID_INPUT_DATA';
  return 'INFERENCE_FAILED';
}

function batchesFromShapes(inputs: readonly TensorSpec[], outputs: readonly TensorSpec[]): boolean {
  const all = [...inputs, ...outputs];
  return all.length > 0 && all.every((spec) => spec.shape.length > 0 && spec.shape[0] === -1);
}

function parseSpecs(value: unknown, what: string, where: string): TensorSpec[] {
  if (!Array.isArray(value)) throw new TesseraError('UPSTREAM_UNAVAILABLE', `${where}: the model metadata has no ${what} list`);
  return value.map((item: unknown) => {
    const spec = item as { name?: unknown; datatype?: unknown; shape?: unknown };
    if (typeof spec.name !== 'string' || !isDataType(spec.datatype) || !Array.isArray(spec.shape) || !spec.shape.every((d) => typeof d === 'number')) {
      throw new TesseraError('UPSTREAM_UNAVAILABLE', `${where}: the model metadata lists an ${what.slice(0, -1)} it does not describe (name, datatype, shape)`);
    }
    return { name: spec.name, datatype: spec.datatype, shape: spec.shape as number[] };
  });
}

function parseMetadata(text: string, where: string): { inputs: TensorSpec[]; outputs: TensorSpec[]; versions: string[] | null } {
  const parsed = safeJson(text) as { inputs?: unknown; outputs?: unknown; versions?: unknown } | undefined;
  if (parsed === undefined) throw new TesseraError('UPSTREAM_UNAVAILABLE', `${where}: the model metadata is not JSON`);
  // `versions` is optional in V2 metadata; sorted, so that the order a server lists them in does not matter.
  const versions = Array.isArray(parsed.versions) ? parsed.versions.map(String).sort() : null;
  return { inputs: parseSpecs(parsed.inputs, 'inputs', where), outputs: parseSpecs(parsed.outputs, 'outputs', where), versions };
}

function parseOutputs(text: string): Tensor[] {
  const parsed = safeJson(text) as { outputs?: unknown } | undefined;
  if (parsed === undefined || !Array.isArray(parsed.outputs)) throw new TesseraError('INFERENCE_FAILED', 'the server answered without an outputs list');
  return parsed.outputs.map((item: unknown) => {
    const output = item as { name?: unknown; datatype?: unknown; shape?: unknown; data?: unknown };
    if (typeof output.name !== 'string' || !isDataType(output.datatype) || !Array.isArray(output.shape)) {
      throw new TesseraError('INFERENCE_FAILED', 'the server answered with an output lacking name, datatype or shape');
    }
    const datatype: DataType = output.datatype;
    const data = tensorDataFromJson(datatype, output.data, `output '${output.name}'`);
    return { name: output.name, datatype, shape: output.shape as number[], data } as Tensor;
  });
}
