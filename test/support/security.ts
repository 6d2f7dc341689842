/**
 * Helpers for the security tests (auth, TLS, CORS, limits, rate limits): a gRPC client that
 * sends metadata and speaks TLS, HTTP(S) requests with full control of headers and client
 * certificates, certificates generated with openssl at test time, and small fake models.
 */
import { execFileSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';

import { ChannelCredentials, Metadata, credentials, loadPackageDefinition, type ClientDuplexStream, type GrpcObject, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';

import { PROJECT_PROTO_DIR, type StreamInferResponse } from './grpc-client.js';
import { writeFakeModel } from './server.js';

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

/** A repository with fake models `alpha` and `beta` (FP32 x [-1,2] → y = x) and `text` (BYTES s [-1] → t = s). */
export async function securityRepository(t: TestContext | undefined): Promise<string> {
  const repo = await mkdtemp(path.join(tmpdir(), 'tessera-security-'));
  t?.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  for (const name of ['alpha', 'beta']) {
    await writeFakeModel(repo, name, 1, {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], copy_of: 'x' }],
    });
  }
  await writeFakeModel(repo, 'text', 1, {
    inputs: [{ name: 's', datatype: 'BYTES', shape: [-1] }],
    outputs: [{ name: 't', datatype: 'BYTES', shape: [-1], copy_of: 's' }],
  }, 'max_batch_size: 0\n');
  return repo;
}

/** A V2 inference body for alpha/beta: `rows` rows of [1, 2]. */
export function inferBody(rows = 1): object {
  return { inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, 2], data: Array.from({ length: rows * 2 }, (_, i) => i) }] };
}

/** A gRPC ModelInferRequest for alpha/beta with contents. */
export function grpcInferRequest(model: string, rows = 1): object {
  return { model_name: model, inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, 2], contents: { fp32_contents: Array.from({ length: rows * 2 }, (_, i) => i) } }] };
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

export interface HttpAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  readonly json: Record<string, unknown> | undefined;
}

export interface HttpOptions {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string | Buffer | object;
  /** TLS: the CA to trust, and the client certificate to present. */
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/** One HTTP(S) request with node:http(s) (full control of headers and client certificates). */
export function http(url: string, options: HttpOptions = {}): Promise<HttpAnswer> {
  const target = new URL(url);
  const body = options.body === undefined ? undefined : typeof options.body === 'string' || Buffer.isBuffer(options.body) ? options.body : JSON.stringify(options.body);
  const headers: Record<string, string> = { ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }), ...options.headers };
  return new Promise((resolve, reject) => {
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(
      target,
      {
        method: options.method ?? (body === undefined ? 'GET' : 'POST'),
        headers,
        agent: false,
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        ...(options.cert === undefined ? {} : { cert: options.cert }),
        ...(options.key === undefined ? {} : { key: options.key }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, unknown> | undefined;
          try {
            json = JSON.parse(text) as Record<string, unknown>;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
export const apiKey = (key: string): Record<string, string> => ({ 'x-api-key': key });

// ---------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------

const LOADER = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true } as const;

function serviceConstructor(protoFile: string, includeDirs: string[], servicePath: readonly string[]): ServiceClientConstructor {
  let node: unknown = loadPackageDefinition(loadSync(protoFile, { ...LOADER, includeDirs }));
  for (const key of servicePath) node = (node as GrpcObject)[key];
  return node as ServiceClientConstructor;
}

type Callback = (error: ServiceError | null, response: unknown) => void;
type UnaryMethod = (request: object, metadata: Metadata, callback: Callback) => unknown;

/** Metadata from plain entries. */
export function metadataOf(entries: Record<string, string> = {}): Metadata {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(entries)) metadata.set(key, value);
  return metadata;
}

/** A client of the inference and health services that sends metadata, over TLS when given credentials. */
export class SecureGrpcClient {
  private readonly inference: InstanceType<ServiceClientConstructor>;
  private readonly healthClient: InstanceType<ServiceClientConstructor>;

  constructor(port: number, channel: ChannelCredentials = credentials.createInsecure(), host = '127.0.0.1') {
    const Inference = serviceConstructor('grpc_service.proto', [PROJECT_PROTO_DIR], ['inference', 'GRPCInferenceService']);
    const Health = serviceConstructor(healthProtoPath, [], ['grpc', 'health', 'v1', 'Health']);
    // One connection per client, not shared with other tests' clients (grpc-js pools channels by options).
    const options = { 'grpc.use_local_subchannel_pool': 1 };
    this.inference = new Inference(`${host}:${port}`, channel, options);
    this.healthClient = new Health(`${host}:${port}`, channel, options);
  }

  call<T = Record<string, unknown>>(method: string, request: object = {}, metadata: Record<string, string> = {}): Promise<T> {
    const fn = this.inference[method] as UnaryMethod;
    return new Promise<T>((resolve, reject) => {
      fn.call(this.inference, request, metadataOf(metadata), (error, value) => (error === null ? resolve(value as T) : reject(error)));
    });
  }

  stream(metadata: Record<string, string> = {}): ClientDuplexStream<object, StreamInferResponse> {
    const fn = this.inference['ModelStreamInfer'] as (metadata: Metadata) => ClientDuplexStream<object, StreamInferResponse>;
    return fn.call(this.inference, metadataOf(metadata));
  }

  health(service = '', metadata: Record<string, string> = {}): Promise<{ status: string }> {
    const fn = this.healthClient['Check'] as UnaryMethod;
    return new Promise((resolve, reject) => {
      fn.call(this.healthClient, { service }, metadataOf(metadata), (error, value) => (error === null ? resolve(value as { status: string }) : reject(error)));
    });
  }

  close(): void {
    this.inference.close();
    this.healthClient.close();
  }
}

/** Send requests on one stream, half-close, and collect every response. */
export function streamAll(stream: ClientDuplexStream<object, StreamInferResponse>, requests: readonly object[]): Promise<StreamInferResponse[]> {
  return new Promise((resolve, reject) => {
    const responses: StreamInferResponse[] = [];
    stream.on('data', (response: StreamInferResponse) => responses.push(response));
    stream.on('error', reject);
    stream.on('end', () => resolve(responses));
    for (const request of requests) stream.write(request);
    stream.end();
  });
}

/** A failed call's error, or a failure when it succeeded. */
export { grpcError } from './grpc-client.js';

// ---------------------------------------------------------------------------
// Certificates (openssl, at test time)
// ---------------------------------------------------------------------------

export interface TestCertificates {
  readonly dir: string;
  readonly caCert: Buffer;
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  readonly caCertFile: string;
  readonly clientCert: Buffer;
  readonly clientKey: Buffer;
  /** A client certificate the CA did not sign. */
  readonly rogueCert: Buffer;
  readonly rogueKey: Buffer;
}

/** A CA, a server certificate for 127.0.0.1/localhost, a client certificate and a self-signed rogue one. */
export async function makeCertificates(t: TestContext | undefined): Promise<TestCertificates> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tessera-tls-'));
  t?.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  const file = (name: string): string => path.join(dir, name);
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  const key = (name: string): void => openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file(name));
  key('ca.key');
  openssl('req', '-x509', '-new', '-key', file('ca.key'), '-subj', '/CN=Tessera Test CA', '-days', '2', '-out', file('ca.crt'), '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  const signed = (name: string, subject: string, extensions: string): void => {
    key(`${name}.key`);
    openssl('req', '-new', '-key', file(`${name}.key`), '-subj', subject, '-out', file(`${name}.csr`));
    const ext = file(`${name}.ext`);
    execFileSync('sh', ['-c', `printf '%s\\n' "${extensions}" > "${ext}"`]);
    openssl('x509', '-req', '-in', file(`${name}.csr`), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', file(`${name}.crt`));
  };
  signed('server', '/CN=localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth');
  signed('client', '/CN=test-client', 'extendedKeyUsage=clientAuth');
  key('rogue.key');
  openssl('req', '-x509', '-new', '-key', file('rogue.key'), '-subj', '/CN=rogue', '-days', '2', '-out', file('rogue.crt'));
  return {
    dir,
    caCert: await readFile(file('ca.crt')),
    caCertFile: file('ca.crt'),
    serverCertFile: file('server.crt'),
    serverKeyFile: file('server.key'),
    clientCert: await readFile(file('client.crt')),
    clientKey: await readFile(file('client.key')),
    rogueCert: await readFile(file('rogue.crt')),
    rogueKey: await readFile(file('rogue.key')),
  };
}
