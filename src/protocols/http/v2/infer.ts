import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyReply } from 'fastify';
import { TesseraError } from '../../../core/errors.js';
import type { InferenceRequest, InferenceResponse } from '../../../core/inference.js';
import type { Engine } from '../../../engine/engine.js';
import { describe } from '../../../core/json-tensor.js';
import { INFERENCE_HEADER, splitRequestBody, type BinaryTail } from './binary.js';
import { classificationCount, classify, servedFacts } from '../../classification.js';
import { decodeInferenceRequest, type RequestTarget } from './decode.js';
import { encodeWithBinary } from './encode.js';

/**
 * One V2 inference from raw body to encoded answer: binary input data, classification and
 * binary outputs included. The V2 route uses it, and so do the adapters that accept V2 bodies
 * (TorchServe, SageMaker, Azure ML).
 */

/** How the response's outputs are to be written, from the request's parameters. */
export interface OutputPlan {
  /** Request parameter `binary_data_output`: outputs are binary unless they say otherwise. */
  readonly binaryByDefault: boolean;
  /** Per-output `binary_data`, which overrides the request's default. */
  readonly binaryOverrides: ReadonlyMap<string, boolean>;
  /** Outputs answered as top-k classifications, with k. */
  readonly classification: ReadonlyMap<string, number>;
}

/** Read binary_data_output, binary_data and classification, refusing ill-typed values before inference. */
export function planOutputs(request: InferenceRequest): OutputPlan {
  const binaryByDefault = booleanParameter(request.parameters?.['binary_data_output'], "request parameter 'binary_data_output'") ?? false;
  const binaryOverrides = new Map<string, boolean>();
  const classification = new Map<string, number>();
  for (const output of request.outputs ?? []) {
    const asBinary = booleanParameter(output.parameters?.['binary_data'], `output '${output.name}': parameter 'binary_data'`);
    if (asBinary !== undefined) binaryOverrides.set(output.name, asBinary);
    const k = classificationCount(output);
    if (k !== undefined) classification.set(output.name, k);
  }
  return { binaryByDefault, binaryOverrides, classification };
}

/** True when output `name` is answered as binary data under `plan`. */
export function isBinaryOutput(plan: OutputPlan, name: string): boolean {
  return plan.binaryOverrides.get(name) ?? plan.binaryByDefault;
}

function booleanParameter(value: unknown, where: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new TesseraError('INVALID_PARAMETER', `${where} must be true or false, got ${describe(value)}`);
  return value;
}

/** An encoded V2 answer, ready to send. */
export interface V2Reply {
  readonly body: string | Buffer;
  readonly contentType: 'application/json' | 'application/octet-stream';
  /** Set when binary data follows the JSON: its length, for the Inference-Header-Content-Length header. */
  readonly inferenceHeaderLength?: number;
  /** The engine request the answer is for (tracing looks up its span by it). */
  readonly request?: InferenceRequest;
  /** The model version that served it (answered in the X-Model-Version header). */
  readonly version?: string;
}

/** Decode, run and encode one V2 inference request from its raw body (JSON, or JSON + binary data). */
export async function inferV2(engine: Engine, body: Buffer, headers: IncomingHttpHeaders, target: RequestTarget): Promise<V2Reply> {
  const { json, tail } = splitRequestBody(body, headers[INFERENCE_HEADER]);
  return inferV2Json(engine, json, target, tail);
}

/** Decode, run and encode one V2 inference request already parsed from JSON. */
export async function inferV2Json(engine: Engine, json: unknown, target: RequestTarget, tail?: BinaryTail): Promise<V2Reply> {
  const request = decodeInferenceRequest(json, target, tail);
  const plan = planOutputs(request);
  let answered: InferenceResponse;
  try {
    answered = await engine.infer(request);
  } catch (error) {
    if (typeof error === 'object' && error !== null) failedInEngine.set(error, request);
    throw error;
  }
  const response = applyClassification(engine, answered, plan);
  return { ...encodeV2Reply(response, plan), request, version: response.version };
}

/** Requests the engine failed, by their error: their answer still names their trace. */
const failedInEngine = new WeakMap<object, InferenceRequest>();

/** The request an error of inferV2 / inferV2Json came from, when the engine ran (and failed) it. */
export function requestFailedInEngine(error: unknown): InferenceRequest | undefined {
  return typeof error === 'object' && error !== null ? failedInEngine.get(error) : undefined;
}

/** Replace outputs requested with `classification` by their top-k BYTES tensors. */
export function applyClassification(engine: Engine, response: InferenceResponse, plan: OutputPlan): InferenceResponse {
  if (plan.classification.size === 0) return response;
  const { labels, batched } = servedFacts(engine, response);
  const outputs = response.outputs.map((output) => {
    const k = plan.classification.get(output.name);
    return k === undefined ? output : classify(output, k, labels, batched);
  });
  return { ...response, outputs };
}

/** JSON when every output is JSON; otherwise the JSON header followed by the binary outputs. */
export function encodeV2Reply(response: InferenceResponse, plan: OutputPlan): V2Reply {
  const binary = new Set(response.outputs.filter((output) => isBinaryOutput(plan, output.name)).map((output) => output.name));
  const encoded = encodeWithBinary(response, binary);
  if (encoded.binary.length === 0) return { body: encoded.json, contentType: 'application/json' };
  const header = Buffer.from(encoded.json, 'utf8');
  return { body: Buffer.concat([header, ...encoded.binary]), contentType: 'application/octet-stream', inferenceHeaderLength: header.length };
}

/** Send a V2 answer with its content type and, for binary answers, Inference-Header-Content-Length. */
export function sendV2Reply(reply: FastifyReply, answer: V2Reply): FastifyReply {
  if (answer.inferenceHeaderLength !== undefined) reply.header('Inference-Header-Content-Length', String(answer.inferenceHeaderLength));
  return reply.code(200).type(answer.contentType).send(answer.body);
}
