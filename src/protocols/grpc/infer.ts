import { TesseraError } from '../../core/errors.js';
import type { InferenceRequest, InferenceResponse } from '../../core/inference.js';
import type { Engine } from '../../engine/engine.js';
import { classificationCount, classify, servedFacts } from '../classification.js';
import type { CallScope } from './call-scope.js';
import { decodeInferRequest } from './infer-request.js';
import { encodeInferResponse } from './infer-response.js';
import type { ModelInferRequestMessage, ModelInferResponseOut } from './messages.js';

/**
 * One inference over gRPC, for ModelInfer and each ModelStreamInfer request: decode the
 * message, run it, answer outputs requested with the `classification` parameter as their
 * top-k classes (Triton's classification extension, which applies to gRPC as to HTTP), and
 * encode the response.
 */
export async function inferMessage(engine: Engine, message: ModelInferRequestMessage, scope: CallScope): Promise<ModelInferResponseOut> {
  const request = decodeInferRequest(message, scope);
  const classification = classificationPlan(request);
  const response = await engine.infer(request);
  return encodeInferResponse(classification.size === 0 ? response : applyClassification(engine, response, classification));
}

/**
 * The refusal of an answer that encodes to `size` bytes when gRPC messages are limited to
 * `limit` bytes (-1: no limit, grpc-js's convention), or undefined when it fits. grpc-js
 * checks the limit only after encoding, and then fails the call with its own "Sent message
 * larger than max", which on ModelStreamInfer ends the whole stream, every other request on
 * it unanswered. Sizing first lets the adapter refuse just this answer, naming the setting.
 */
export function oversizedAnswer(size: number, limit: number): TesseraError | undefined {
  if (limit < 0 || size <= limit) return undefined;
  return new TesseraError(
    'LIMIT_EXCEEDED',
    `the response is ${size} bytes, larger than a gRPC message may be; the limit is ${limit} bytes (--grpc-max-message-bytes). Ask for fewer outputs or a smaller batch, or raise the limit`,
  );
}

/** Outputs requested with `classification: k`, with k; refuses an ill-typed k before inference. */
function classificationPlan(request: InferenceRequest): ReadonlyMap<string, number> {
  const plan = new Map<string, number>();
  for (const output of request.outputs ?? []) {
    const k = classificationCount(output);
    if (k !== undefined) plan.set(output.name, k);
  }
  return plan;
}

function applyClassification(engine: Engine, response: InferenceResponse, plan: ReadonlyMap<string, number>): InferenceResponse {
  const { labels, batched } = servedFacts(engine, response);
  return {
    ...response,
    outputs: response.outputs.map((output) => {
      const k = plan.get(output.name);
      return k === undefined ? output : classify(output, k, labels, batched);
    }),
  };
}
