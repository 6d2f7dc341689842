/**
 * A lean closed-loop gRPC load generator: V2 `inference.GRPCInferenceService/ModelInfer` over
 * @grpc/grpc-js, the proto loaded at run time from the repository's proto/ as any Node client
 * (and the server, src/protocols/grpc/proto.ts) loads it.
 *
 * Requests are serialized once (ModelInferRequest with the tensor in `raw_input_contents`, what
 * Triton's clients send) and sent as they are: the generic client's serializer is the identity
 * and so is its deserializer, so the generator pays for HTTP/2 framing but not for protobuf
 * encoding and decoding of 600 KB messages on every call, as the HTTP generator sends pre-built
 * bodies and reads answers as bytes. {@link checkGrpcInfer} decodes one answer in full before a
 * cell, to make sure the server really answers what is asked.
 *
 * The loop itself (workers, warm-up, window, bounds) is loadgen.ts's {@link runClosedLoop}.
 */
import { join } from 'node:path';
import { Client, credentials, Metadata, type ChannelOptions, type ServiceError } from '@grpc/grpc-js';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { runClosedLoop, type ClosedLoopResult, type ClosedLoopTiming } from './loadgen.js';
import { REPO_ROOT, type BenchModel } from './models.js';
import { inputValues, itemElements } from './payloads.js';

const PROTO_DIR = join(REPO_ROOT, 'proto');

/** Largest message either way: a batch of ResNet images is far above grpc-js's 4 MiB receive default. */
const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

/** A decoded ModelInferResponse (the fields the check reads). */
export interface ModelInferResponse {
  readonly model_name: string;
  readonly outputs: readonly { readonly name: string; readonly datatype: string; readonly shape: readonly string[] }[];
  readonly raw_output_contents: readonly Buffer[];
}

interface ModelInferCodec {
  readonly path: string;
  serializeRequest(request: object): Buffer;
  deserializeResponse(bytes: Buffer): ModelInferResponse;
}

let codec: ModelInferCodec | undefined;

/** ModelInfer's path and message codecs, from proto/grpc_service.proto. */
export function modelInferCodec(): ModelInferCodec {
  if (codec !== undefined) return codec;
  const definition = loadSync('grpc_service.proto', { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] });
  const service = definition['inference.GRPCInferenceService'] as Record<string, MethodDefinition<object, ModelInferResponse>> | undefined;
  const method = service?.['ModelInfer'];
  if (method === undefined) throw new Error(`inference.GRPCInferenceService/ModelInfer is missing from ${PROTO_DIR}/grpc_service.proto`);
  codec = { path: method.path, serializeRequest: method.requestSerialize, deserializeResponse: method.responseDeserialize };
  return codec;
}

/**
 * `variants` serialized ModelInferRequests of `rows` items each: FP32 input in
 * `raw_input_contents` (little-endian), the same seeded values as the HTTP bodies. No outputs
 * named: the server answers every output in `raw_output_contents`.
 */
export function grpcInferBodies(model: BenchModel, rows = 1, variants = 4): Buffer[] {
  const { serializeRequest } = modelInferCodec();
  const elements = rows * itemElements(model);
  return Array.from({ length: variants }, (_, v) => {
    const data = Float32Array.from(inputValues(model, elements, 1000 + v));
    return serializeRequest({
      model_name: model.name,
      inputs: [{ name: model.input, datatype: 'FP32', shape: [rows, ...model.itemShape] }],
      raw_input_contents: [Buffer.from(data.buffer, data.byteOffset, data.byteLength)],
    });
  });
}

function newClient(address: string, local: boolean): Client {
  const options: ChannelOptions = {
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    // Separate channels share one connection unless each has its own subchannel pool.
    ...(local ? { 'grpc.use_local_subchannel_pool': 1 } : {}),
  };
  return new Client(address, credentials.createInsecure(), options);
}

function waitForReady(client: Client, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + timeoutMs, (error) => (error === undefined || error === null ? resolve() : reject(error)));
  });
}

const identity = (bytes: Buffer): Buffer => bytes;

/** One ModelInfer call, fully decoded: to check what the server answers before a cell. */
export async function checkGrpcInfer(address: string, body: Buffer, timeoutMs = 60_000): Promise<ModelInferResponse> {
  const { path, deserializeResponse } = modelInferCodec();
  const client = newClient(address, false);
  try {
    await waitForReady(client, timeoutMs);
    return await new Promise<ModelInferResponse>((resolve, reject) => {
      client.makeUnaryRequest(path, identity, deserializeResponse, body, new Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) =>
        error === null && response !== undefined ? resolve(response) : reject(error ?? new Error('no response')),
      );
    });
  } finally {
    client.close();
  }
}

export interface GrpcClosedLoopOptions extends ClosedLoopTiming {
  /** host:port of the gRPC listener. */
  readonly address: string;
  /** Serialized ModelInferRequests (see {@link grpcInferBodies}), sent in rotation. */
  readonly bodies: readonly Buffer[];
  /**
   * gRPC channels (HTTP/2 connections) the workers share, round robin. 1 is how gRPC clients
   * are normally used: every call multiplexed on one connection.
   */
  readonly channels: number;
}

/** Closed loop of ModelInfer calls; statuses are "OK" or `ERR <grpc status code>`. */
export async function grpcClosedLoop(options: GrpcClosedLoopOptions): Promise<ClosedLoopResult> {
  const { path } = modelInferCodec();
  const channels = Math.max(1, Math.min(options.channels, options.concurrency));
  const clients = Array.from({ length: channels }, () => newClient(options.address, channels > 1));
  try {
    await Promise.all(clients.map((client) => waitForReady(client, 30_000)));
  } catch (error) {
    for (const client of clients) client.close();
    throw error;
  }
  let next = 0;
  const timeoutMs = options.requestTimeoutMs;
  return runClosedLoop(options, {
    bodies: options.bodies,
    bodyBytes: options.bodies[0]?.length ?? 0,
    send(body) {
      const client = clients[next++ % channels]!;
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(path, identity, identity, body, new Metadata(), { deadline: Date.now() + timeoutMs }, (error: ServiceError | null) =>
          error === null ? resolve({ status: 'OK', ok: true }) : reject(error),
        );
      });
    },
    connectionsOpened: () => channels,
    async close() {
      for (const client of clients) client.close();
    },
  });
}
