/**
 * A gRPC test client for Tessera, generated at run time (as any client would be) from the
 * project's own proto/grpc_service.proto with @grpc/proto-loader, plus clients of the
 * standard health and reflection services. Calls return promises; a failed call rejects with
 * grpc-js's ServiceError (code, details, metadata).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  credentials,
  loadPackageDefinition,
  type CallOptions,
  type ClientDuplexStream,
  type ClientReadableStream,
  type ClientUnaryCall,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The project's proto directory. */
export const PROJECT_PROTO_DIR = path.resolve(here, '../../proto');
const REFLECTION_PROTO = path.resolve(here, '../../node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto');

/** Message mapping of the test client: what a typical Node client uses. */
const LOADER_OPTIONS: Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/** Client-side message limit: large enough for the big-tensor tests (grpc-js's default receive limit is 4 MiB). */
const CLIENT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

type Callback = (error: ServiceError | null, response: unknown) => void;
type UnaryMethod = (request: object, options: CallOptions, callback: Callback) => ClientUnaryCall;
type GenericClient = InstanceType<ServiceClientConstructor>;

function serviceConstructor(protoFile: string, includeDirs: string[], servicePath: readonly string[]): ServiceClientConstructor {
  let node: unknown = loadPackageDefinition(loadSync(protoFile, { ...LOADER_OPTIONS, includeDirs }));
  for (const key of servicePath) node = (node as GrpcObject)[key];
  if (typeof node !== 'function') throw new Error(`service ${servicePath.join('.')} not found in ${protoFile}`);
  return node as ServiceClientConstructor;
}

/** A unary call in flight: its response, and a way to cancel it. */
export interface PendingCall<T> {
  readonly response: Promise<T>;
  cancel(): void;
}

function startUnary<T>(client: GenericClient, method: string, request: object, options: CallOptions = {}): PendingCall<T> {
  const fn = client[method] as UnaryMethod | undefined;
  if (typeof fn !== 'function') throw new Error(`the client has no method ${method}`);
  let call: ClientUnaryCall | undefined;
  const response = new Promise<T>((resolve, reject) => {
    call = fn.call(client, request, options, (error, value) => (error === null ? resolve(value as T) : reject(error)));
  });
  return { response, cancel: () => call?.cancel() };
}

function unaryCall<T>(client: GenericClient, method: string, request: object, options: CallOptions = {}): Promise<T> {
  return startUnary<T>(client, method, request, options).response;
}

/** A ModelStreamInferResponse as the client decodes it. */
export interface StreamInferResponse {
  readonly error_message: string;
  readonly infer_response: InferResponse | null;
}

/** A ModelInferResponse as the client decodes it. */
export interface InferResponse {
  readonly model_name: string;
  readonly model_version: string;
  readonly id: string;
  readonly outputs: readonly { name: string; datatype: string; shape: string[] }[];
  readonly raw_output_contents: readonly Buffer[];
  readonly parameters: Record<string, unknown>;
}

/** Clients of inference.GRPCInferenceService, grpc.health.v1.Health and reflection v1 on one address. */
export class GrpcTestClient {
  readonly address: string;
  private readonly inference: GenericClient;
  private readonly health: GenericClient;
  private readonly reflection: GenericClient;

  constructor(port: number, host = '127.0.0.1') {
    this.address = `${host}:${port}`;
    const options = {
      'grpc.max_receive_message_length': CLIENT_MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': CLIENT_MAX_MESSAGE_BYTES,
    };
    const insecure = credentials.createInsecure();
    const Inference = serviceConstructor('grpc_service.proto', [PROJECT_PROTO_DIR], ['inference', 'GRPCInferenceService']);
    const Health = serviceConstructor(healthProtoPath, [], ['grpc', 'health', 'v1', 'Health']);
    const Reflection = serviceConstructor(REFLECTION_PROTO, [], ['grpc', 'reflection', 'v1', 'ServerReflection']);
    this.inference = new Inference(this.address, insecure, options);
    this.health = new Health(this.address, insecure);
    this.reflection = new Reflection(this.address, insecure);
  }

  /** Call a unary rpc of inference.GRPCInferenceService, e.g. `call('ModelInfer', {...})`. */
  call<T = Record<string, unknown>>(method: string, request: object = {}, options: CallOptions = {}): Promise<T> {
    return unaryCall<T>(this.inference, method, request, options);
  }

  /** Start a unary rpc and keep the means to cancel it. */
  start<T = Record<string, unknown>>(method: string, request: object = {}, options: CallOptions = {}): PendingCall<T> {
    return startUnary<T>(this.inference, method, request, options);
  }

  /** Open a ModelStreamInfer stream. */
  stream(options: CallOptions = {}): ClientDuplexStream<object, StreamInferResponse> {
    const fn = this.inference['ModelStreamInfer'] as (options: CallOptions) => ClientDuplexStream<object, StreamInferResponse>;
    return fn.call(this.inference, options);
  }

  /** grpc.health.v1.Health/Check. */
  healthCheck(service = ''): Promise<{ status: string }> {
    return unaryCall(this.health, 'Check', { service });
  }

  /** grpc.health.v1.Health/Watch: a stream of statuses. */
  healthWatch(service = ''): ClientReadableStream<{ status: string }> {
    const fn = this.health['Watch'] as (request: object) => ClientReadableStream<{ status: string }>;
    return fn.call(this.health, { service });
  }

  /** Service names listed by server reflection (grpc.reflection.v1). */
  listServices(): Promise<string[]> {
    const fn = this.reflection['ServerReflectionInfo'] as () => ClientDuplexStream<object, { list_services_response: { service: { name: string }[] } | null }>;
    const call = fn.call(this.reflection);
    return new Promise<string[]>((resolve, reject) => {
      call.once('data', (response) => {
        resolve((response.list_services_response?.service ?? []).map((entry: { name: string }) => entry.name));
        call.end();
      });
      call.once('error', reject);
      call.write({ host: '', list_services: '' });
    });
  }

  /** The encoded FileDescriptorProtos reflection serves for the file defining `symbol`. */
  fileContainingSymbol(symbol: string): Promise<Buffer[]> {
    const fn = this.reflection['ServerReflectionInfo'] as () => ClientDuplexStream<object, { file_descriptor_response: { file_descriptor_proto: Buffer[] } | null }>;
    const call = fn.call(this.reflection);
    return new Promise<Buffer[]>((resolve, reject) => {
      call.once('data', (response) => {
        resolve(response.file_descriptor_response?.file_descriptor_proto ?? []);
        call.end();
      });
      call.once('error', reject);
      call.write({ host: '', file_containing_symbol: symbol });
    });
  }

  close(): void {
    this.inference.close();
    this.health.close();
    this.reflection.close();
  }
}

/** Copy raw little-endian bytes into a Float32Array (the Buffer may be unaligned). */
export function rawToFloat32(raw: Buffer): Float32Array {
  const copy = new Uint8Array(raw.byteLength);
  copy.set(raw);
  return new Float32Array(copy.buffer);
}

/** Raw bytes of a typed array (little-endian, as the protocol wants). */
export function rawOf(data: ArrayBufferView): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Triton's BYTES serialization: each element as a 4-byte little-endian length and its bytes. */
export function serializeBytes(elements: readonly (string | Buffer)[]): Buffer {
  return Buffer.concat(
    elements.flatMap((element) => {
      const bytes = typeof element === 'string' ? Buffer.from(element, 'utf8') : element;
      const length = Buffer.alloc(4);
      length.writeUInt32LE(bytes.byteLength);
      return [length, bytes];
    }),
  );
}

/** Inverse of {@link serializeBytes}. */
export function deserializeBytes(raw: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let offset = 0; offset < raw.byteLength; ) {
    const length = raw.readUInt32LE(offset);
    out.push(raw.subarray(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  return out;
}

/** Await a call expected to fail; its ServiceError (throws when the call succeeded). */
export async function grpcError(call: Promise<unknown>): Promise<ServiceError> {
  try {
    await call;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error('the call succeeded; expected an error');
}
