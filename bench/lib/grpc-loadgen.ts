/**
 * A lean closed-loop gRPC load generator: V2 `inference.GRPCInferenceService/ModelInfer`, the
 * proto loaded at run time from the repository's proto/ as any Node client (and the server,
 * src/protocols/grpc/proto.ts) loads it.
 *
 * Requests are serialized once (ModelInferRequest with the tensor in `raw_input_contents`, what
 * Triton's clients send) and sent as they are, so the generator pays for HTTP/2 framing but not
 * for protobuf encoding and decoding of 600 KB messages on every call, as the HTTP generator
 * sends pre-built bodies and reads answers as bytes. {@link checkGrpcInfer} decodes one answer
 * in full through @grpc/grpc-js before a cell, to make sure the server really answers what is
 * asked.
 *
 * The loop itself (workers, warm-up, window, bounds) is loadgen.ts's {@link runClosedLoop}, on
 * the main thread. It drives one of two clients ({@link GrpcClient}): by default gRPC's wire
 * format on Node's own HTTP/2 client, or @grpc/grpc-js with identity codecs, which for large
 * requests (ResNet images) runs in a worker thread of the benchmark process (see
 * {@link GENERATOR_WORKER_SOURCE} and {@link WORKER_MIN_BODY_BYTES}), whose CPU the generator
 * figures include.
 */
import { connect, constants as http2, type ClientHttp2Session } from 'node:http2';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Client, credentials, Metadata, type ChannelOptions, type ServiceError } from '@grpc/grpc-js';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { runClosedLoop, type ClosedLoopResult, type ClosedLoopTiming, type ClosedLoopTransport } from './loadgen.js';
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
  /** The client that sends the calls (default 'h2'). */
  readonly client?: GrpcClient;
}

/**
 * The generator's grpc-js client, as the source of a worker thread (plain CommonJS, evaluated
 * by `new Worker(source, { eval: true })`), so that it runs on a small heap of its own.
 *
 * Why a worker: grpc-js frames every call into a new buffer (600 KB for a ResNet image), and
 * V8 frees such buffers with full collections that mark the whole heap of their thread. The
 * benchmark's main thread holds the tsx loader, undici and the run's state: there the same
 * client cost ~1.9 ms of CPU per ResNet call at ~80 calls/s, against ~1.2 ms on a thread that
 * holds only grpc-js (measured side by side; a plain-node process without tsx: ~1.1 ms). On a
 * 2-core machine that difference is CPU the server under test does not get.
 *
 * Why a string and not a module: worker threads do not inherit the benchmark's `--import tsx`
 * loader, and registering tsx in the worker would bring back what the worker is meant to
 * leave out. The client is what {@link newClient} builds; each message from the main thread
 * is one ModelInfer call, answered with its status code when the call ends.
 */
export const GENERATOR_WORKER_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const grpc = require(workerData.grpcJs);
const { address, path, channels, timeoutMs, maxMessageBytes } = workerData;
const bodies = workerData.bodies.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const options = { 'grpc.max_receive_message_length': maxMessageBytes, 'grpc.max_send_message_length': maxMessageBytes };
if (channels > 1) options['grpc.use_local_subchannel_pool'] = 1;
const clients = Array.from({ length: channels }, () => new grpc.Client(address, grpc.credentials.createInsecure(), options));
const identity = (bytes) => bytes;
let next = 0;
Promise.all(clients.map((client) => new Promise((resolve, reject) => {
  client.waitForReady(Date.now() + 30000, (error) => (error ? reject(error) : resolve()));
}))).then(() => {
  parentPort.on('message', (message) => {
    if (message.close) {
      for (const client of clients) client.close();
      parentPort.close();
      return;
    }
    const client = clients[next++ % clients.length];
    client.makeUnaryRequest(path, identity, identity, bodies[message.body], new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (error) => {
      parentPort.postMessage(error ? { id: message.id, code: error.code, details: error.details } : { id: message.id, code: 0 });
    });
  });
  parentPort.postMessage({ ready: true });
}, (error) => {
  for (const client of clients) client.close();
  parentPort.postMessage({ failed: String(error && error.message || error) });
  parentPort.close();
});
`;

/** Main thread -> worker: send body `body` as call `id`; or close the channels and exit. */
type ToGenerator = { readonly id: number; readonly body: number } | { readonly close: true };
/** Worker -> main thread: ready (channels connected), failed to connect, or call `id` ended with `code` (0 = OK). */
type FromGenerator = { readonly ready: true } | { readonly failed: string } | { readonly id: number; readonly code: number; readonly details?: string };

/**
 * Requests at least this large are sent from the worker thread ({@link GENERATOR_WORKER_SOURCE});
 * smaller ones from the main thread. A worker costs two thread messages per call (~20-40 µs
 * of CPU): nothing next to a ResNet image, but at the MLP's ~3,000 calls/s, where the
 * generator is already the bottleneck, it cut the calls it could issue by a quarter.
 */
export const WORKER_MIN_BODY_BYTES = 64 * 1024;

/**
 * The client a gRPC closed loop drives:
 *  - 'h2': gRPC's wire format written directly on Node's HTTP/2 client (nghttp2, in C++): each
 *    call is one HTTP/2 stream carrying the pre-framed message, its status read from the
 *    `grpc-status` trailer. What the server sees is what any gRPC client sends (the cell's
 *    check call goes through grpc-js first), at a fraction of grpc-js's CPU per call, as the
 *    HTTP cells use undici and Triton's perf_analyzer a C++ client;
 *  - 'grpc-js': @grpc/grpc-js channels, as a Node application would call the server.
 */
export type GrpcClient = 'h2' | 'grpc-js';

/** Closed loop of ModelInfer calls; statuses are "OK" or `ERR <grpc status code>`. */
export async function grpcClosedLoop(options: GrpcClosedLoopOptions): Promise<ClosedLoopResult> {
  const channels = Math.max(1, Math.min(options.channels, options.concurrency));
  if ((options.client ?? 'h2') === 'h2') return runClosedLoop(options, await http2Transport(options, channels));
  const large = (options.bodies[0]?.length ?? 0) >= WORKER_MIN_BODY_BYTES;
  const transport = large ? await workerTransport(options, channels) : await mainThreadTransport(options, channels);
  return runClosedLoop(options, transport);
}

/** A gRPC message on the wire: a 5-byte prefix (0 = not compressed, length big-endian) and the message. */
function grpcFrame(message: Buffer): Buffer {
  const framed = Buffer.allocUnsafe(5 + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, 5);
  return framed;
}

/**
 * Receive windows of the generator's sessions: answers (a few KB of logits) fit the default
 * ones; the larger connection window only saves WINDOW_UPDATE frames under 16 calls.
 */
const GENERATOR_WINDOW_BYTES = 16 * 1024 * 1024;

/** A `grpc-message` as sent (percent-encoded); left as it is when its encoding is broken. */
function percentDecoded(message: string): string {
  try {
    return decodeURIComponent(message);
  } catch {
    return message;
  }
}

/** ModelInfer calls as HTTP/2 streams on `channels` sessions of Node's own HTTP/2 client. */
async function http2Transport(options: GrpcClosedLoopOptions, channels: number): Promise<ClosedLoopTransport<Buffer>> {
  const { path } = modelInferCodec();
  const framed = new Map(options.bodies.map((body) => [body, grpcFrame(body)]));
  const sessions: ClientHttp2Session[] = [];
  const open = async (): Promise<ClientHttp2Session> => {
    const session = connect(`http://${options.address}`, { settings: { initialWindowSize: GENERATOR_WINDOW_BYTES }, maxSessionMemory: 256 });
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', reject);
    });
    session.setLocalWindowSize(GENERATOR_WINDOW_BYTES);
    // A session error fails the calls on it (each stream reports it); nothing else listens.
    session.on('error', () => undefined);
    return session;
  };
  try {
    for (let i = 0; i < channels; i++) sessions.push(await open());
  } catch (error) {
    for (const session of sessions) session.destroy();
    throw error;
  }
  const headers = {
    [http2.HTTP2_HEADER_METHOD]: 'POST',
    [http2.HTTP2_HEADER_PATH]: path,
    [http2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
    te: 'trailers',
    'grpc-timeout': `${Math.max(1, Math.round(options.requestTimeoutMs))}m`,
  };
  let next = 0;
  return {
    bodies: options.bodies,
    bodyBytes: options.bodies[0]?.length ?? 0,
    send(body) {
      const session = sessions[next++ % channels]!;
      return new Promise((resolve, reject) => {
        const stream = session.request(headers, { endStream: false });
        let status: string | undefined;
        let details: string | undefined;
        const statusOf = (fields: Record<string, unknown>): void => {
          if (fields['grpc-status'] !== undefined) status = String(fields['grpc-status']);
          if (fields['grpc-message'] !== undefined) details = percentDecoded(String(fields['grpc-message']));
        };
        // A failed call may answer with its status in the headers alone ("trailers-only").
        stream.on('response', statusOf);
        stream.on('trailers', statusOf);
        // The answer's bytes are read and dropped, as the HTTP cells read theirs.
        stream.on('data', () => undefined);
        stream.on('error', reject);
        stream.on('close', () => {
          if (status === '0') resolve({ status: 'OK', ok: true });
          else if (status !== undefined) reject(Object.assign(new Error(details ?? `gRPC status ${status}`), { code: Number(status) }));
          else reject(new Error(`the stream closed without a gRPC status (HTTP/2 code ${stream.rstCode ?? 'none'})`));
        });
        stream.end(framed.get(body) ?? grpcFrame(body));
      });
    },
    connectionsOpened: () => channels,
    async close() {
      await Promise.all(sessions.map((session) => new Promise<void>((resolve) => session.close(() => resolve()))));
    },
  };
}

/** grpc-js channels on the main thread. */
async function mainThreadTransport(options: GrpcClosedLoopOptions, channels: number): Promise<ClosedLoopTransport<Buffer>> {
  const { path } = modelInferCodec();
  const clients = Array.from({ length: channels }, () => newClient(options.address, channels > 1));
  try {
    await Promise.all(clients.map((client) => waitForReady(client, 30_000)));
  } catch (error) {
    for (const client of clients) client.close();
    throw error;
  }
  let next = 0;
  const timeoutMs = options.requestTimeoutMs;
  return {
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
  };
}

/** grpc-js channels in a worker thread; each call is one message there and one back. */
async function workerTransport(options: GrpcClosedLoopOptions, channels: number): Promise<ClosedLoopTransport<Buffer>> {
  const { path } = modelInferCodec();
  const worker = new Worker(GENERATOR_WORKER_SOURCE, {
    eval: true,
    workerData: {
      grpcJs: createRequire(import.meta.url).resolve('@grpc/grpc-js'),
      address: options.address,
      path,
      channels,
      timeoutMs: options.requestTimeoutMs,
      maxMessageBytes: MAX_MESSAGE_BYTES,
      bodies: options.bodies,
    },
  });
  const pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  let failure: Error | undefined;
  const failAll = (error: Error): void => {
    failure ??= error;
    for (const call of pending.values()) call.reject(error);
    pending.clear();
  };
  const ready = new Promise<void>((resolveReady, rejectReady) => {
    worker.on('message', (message: FromGenerator) => {
      if ('ready' in message) resolveReady();
      else if ('failed' in message) rejectReady(new Error(`gRPC generator: ${message.failed}`));
      else {
        const call = pending.get(message.id);
        pending.delete(message.id);
        if (message.code === 0) call?.resolve();
        // Rejected with the gRPC status as `code`: the loop counts it as `ERR <code>`.
        else call?.reject(Object.assign(new Error(message.details ?? `gRPC status ${message.code}`), { code: message.code }));
      }
    });
    worker.on('error', (error) => {
      rejectReady(error);
      failAll(error);
    });
    worker.on('exit', () => {
      const exited = new Error('the gRPC generator worker exited');
      rejectReady(exited);
      failAll(exited);
    });
  });
  try {
    await ready;
  } catch (error) {
    await worker.terminate();
    throw error;
  }
  const bodyIndex = new Map(options.bodies.map((body, i) => [body, i]));
  let nextId = 0;
  return {
    bodies: options.bodies,
    bodyBytes: options.bodies[0]?.length ?? 0,
    send(body) {
      if (failure !== undefined) return Promise.reject(failure);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve: () => resolve({ status: 'OK', ok: true }), reject });
        worker.postMessage({ id, body: bodyIndex.get(body) ?? 0 } satisfies ToGenerator);
      });
    },
    connectionsOpened: () => channels,
    async close() {
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage({ close: true } satisfies ToGenerator);
      // Bounded: a worker that does not exit in time is terminated.
      const timer = setTimeout(() => void worker.terminate(), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
