import type { ServerDuplexStream, handleBidiStreamingCall } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { TesseraError, toTesseraError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Engine } from '../../engine/engine.js';
import { remainingMs } from './call-scope.js';
import { inferMessage, oversizedAnswer } from './infer.js';
import { modelStreamInferResponseSize } from './infer-response-encoder.js';
import type { ModelInferRequestMessage, ModelInferResponseOut, ModelStreamInferResponseOut } from './messages.js';
import { releaseOnceEncoded, releaseRequest } from './received-messages.js';

export type StreamCall = ServerDuplexStream<ModelInferRequestMessage, ModelStreamInferResponseOut>;
export type StreamInferHandler = handleBidiStreamingCall<ModelInferRequestMessage, ModelStreamInferResponseOut>;

/** The ModelStreamInfer handler and the means to wind its open streams down. */
export interface StreamInfer {
  readonly handle: StreamInferHandler;
  /**
   * Shutting down: every open stream answers requests that arrive from now on with a
   * shutting-down error, and ends (status OK) once its in-flight requests are answered.
   */
  drain(): void;
}

/**
 * Triton's ModelStreamInfer: inference requests over one bidirectional stream. Each request
 * runs as soon as it arrives, concurrently with the others, and gets exactly one
 * ModelStreamInferResponse, sent when it completes (so possibly out of order: clients match
 * responses by request id). A failed request is answered with `error_message` set and an
 * `infer_response` that holds only its id, model and version; the stream goes on. So is a
 * request whose answer would be larger than the message limit, which grpc-js would otherwise
 * refuse to send by ending the whole stream. The stream ends with status OK after the client
 * half-closes and every request is answered. When the client cancels, queued requests are
 * dropped. When writes back up, reading pauses until the client drains them.
 */
export function createStreamInfer(engine: Engine, logger: Logger, maxMessageBytes: number, shed?: () => TesseraError | undefined): StreamInfer {
  const open = new Set<StreamState>();

  const handle: StreamInferHandler = (call: StreamCall) => {
    const state = new StreamState(call, engine, logger, maxMessageBytes, () => open.delete(state), shed);
    open.add(state);
  };
  return {
    handle,
    drain: () => {
      for (const state of [...open]) state.drain();
    },
  };
}

/** One open ModelStreamInfer call. */
class StreamState {
  private readonly controller = new AbortController();
  private pending = 0;
  private halfClosed = false;
  private draining = false;
  private finished = false;
  private paused = false;

  constructor(
    private readonly call: StreamCall,
    private readonly engine: Engine,
    private readonly logger: Logger,
    /** The server's send limit (grpc.max_send_message_length): each answer is sized against it before it is written. */
    private readonly maxMessageBytes: number,
    private readonly onFinished: () => void,
    /** Load shedding: each request on the stream is new work, checked as it arrives. */
    private readonly shed?: () => TesseraError | undefined,
  ) {
    call.on('data', (message: ModelInferRequestMessage) => this.accept(message));
    call.on('end', () => {
      this.halfClosed = true;
      this.maybeEnd();
    });
    call.on('error', (error: Error) => this.logger.debug({ rpc: 'ModelStreamInfer', err: error }, 'stream error'));
    call.once('cancelled', () => {
      this.controller.abort();
      this.finish();
    });
  }

  /** Stop taking requests; end once the in-flight ones are answered. */
  drain(): void {
    this.draining = true;
    this.maybeEnd();
  }

  private accept(message: ModelInferRequestMessage): void {
    this.pending++;
    this.run(message)
      .then(
        (response): ModelStreamInferResponseOut => {
          const answer = { error_message: '', infer_response: response };
          // Sized, not encoded: a walk over the outputs' metadata; the serializer encodes once.
          const oversized = oversizedAnswer(modelStreamInferResponseSize(answer), this.maxMessageBytes);
          if (oversized !== undefined) return this.failed(message, oversized);
          releaseOnceEncoded(message, answer);
          return answer;
        },
        (error: unknown): ModelStreamInferResponseOut => this.failed(message, error),
      )
      .then((answer) => {
        this.pending--;
        this.send(answer);
        this.maybeEnd();
      });
  }

  /** The answer to a failed request: its error, with only its id, model and version. */
  private failed(message: ModelInferRequestMessage, error: unknown): ModelStreamInferResponseOut {
    releaseRequest(message);
    const failure = toTesseraError(error);
    if (failure.category === 'internal') this.logger.error({ rpc: 'ModelStreamInfer', err: error }, failure.message);
    return {
      error_message: failure.message,
      infer_response: { model_name: message.model_name, model_version: message.model_version, id: message.id },
    };
  }

  private async run(message: ModelInferRequestMessage): Promise<ModelInferResponseOut> {
    if (this.draining) throw new TesseraError('SHUTTING_DOWN', 'the server is shutting down and takes no new requests');
    const refusal = this.shed?.();
    if (refusal !== undefined) throw refusal;
    // The stream's deadline bounds every request on it; each gets the time left when it arrives.
    const deadlineMs = remainingMs(this.call.getDeadline());
    const scope = deadlineMs === undefined ? { signal: this.controller.signal } : { signal: this.controller.signal, deadlineMs };
    return inferMessage(this.engine, message, scope);
  }

  private send(answer: ModelStreamInferResponseOut): void {
    if (this.finished) return;
    // Backpressure: stop reading requests while the client is not reading responses.
    if (!this.call.write(answer) && !this.paused) {
      this.paused = true;
      this.call.pause();
      this.call.once('drain', () => {
        this.paused = false;
        this.call.resume();
      });
    }
  }

  private maybeEnd(): void {
    if (this.finished || this.pending > 0 || !(this.halfClosed || this.draining)) return;
    this.finish();
    if (this.halfClosed) {
      this.call.end();
      return;
    }
    // Ended by shutdown while the client may still be sending: requests on their way are never
    // answered, so the status must not say OK. UNAVAILABLE tells the client to retry those.
    this.call.emit('error', {
      code: status.UNAVAILABLE,
      details: 'the server is shutting down: requests sent on this stream that were not answered were not run; retry them on another server',
    });
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.onFinished();
  }
}
