import { Server, ServerCredentials, type ServerInterceptor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import type { TesseraError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Engine } from '../../engine/engine.js';
import { TESSERA_VERSION } from '../../server/version.js';
import { applyHttp2Windows, DEFAULT_HTTP2_WINDOWS, type Http2Windows } from './flow-control.js';
import { EngineHealth } from './health.js';
import { withInferCodecs } from './infer-codecs.js';
import { installPooledFraming } from './message-framing.js';
import { LOADER_OPTIONS, loadInferenceProto } from './proto.js';
import { addReflection } from './reflection.js';
import { createInferenceService } from './service.js';
import { createStreamInfer } from './stream.js';

/** Default limit on received and sent messages: 256 MiB, instead of grpc-js's 4 MiB receive limit. */
export const DEFAULT_GRPC_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

/** Default time close() lets in-flight calls finish before cancelling them. */
export const DEFAULT_GRPC_SHUTDOWN_GRACE_MS = 30_000;

export interface GrpcServerOptions {
  readonly engine: Engine;
  /** Interface to bind, e.g. 0.0.0.0, 127.0.0.1 or ::. */
  readonly host: string;
  /** Port to bind; 0 picks a free one (see the returned port). */
  readonly port: number;
  readonly logger: Logger;
  /** Largest message received or sent, in bytes (default 256 MiB). */
  readonly maxMessageBytes?: number;
  /** How long close() waits for in-flight calls before cancelling them (default 30 s). */
  readonly shutdownGraceMs?: number;
  /** Name ServerMetadata reports (default "tessera"). */
  readonly serverName?: string;
  /** Version ServerMetadata reports (default Tessera's package version). */
  readonly serverVersion?: string;
  /** Load shedding: the refusal for work starting now, or undefined (src/security/load-shedding.ts). */
  readonly shed?: () => TesseraError | undefined;
  /** Server interceptors, run for every call of every service (src/security/grpc.ts: auth, limits). */
  readonly interceptors?: ServerInterceptor[];
  /** Transport credentials (TLS, mutual TLS; src/security/tls.ts); default insecure. */
  readonly credentials?: ServerCredentials;
  /** HTTP/2 receive windows (flow-control.ts); default 4 MiB per stream, 32 MiB per connection. */
  readonly http2Windows?: Http2Windows;
}

export interface GrpcServerHandle {
  /** The bound port (useful with port 0). */
  readonly port: number;
  /**
   * Graceful stop, idempotent: health turns NOT_SERVING, no new calls are accepted, open
   * streams end once their in-flight requests are answered, and running calls get the grace
   * period to finish before the rest are cancelled. Does not close the engine.
   */
  close(): Promise<void>;
}

/**
 * Start the gRPC front door: inference.GRPCInferenceService (KServe V2 / Open Inference
 * Protocol with Triton's extensions), grpc.health.v1.Health following the engine's readiness,
 * and server reflection (v1 and v1alpha) describing both, so `grpcurl list` works.
 */
export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServerHandle> {
  const { engine, logger } = options;
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_GRPC_MAX_MESSAGE_BYTES;
  const graceMs = options.shutdownGraceMs ?? DEFAULT_GRPC_SHUTDOWN_GRACE_MS;
  const inference = loadInferenceProto();
  // Received messages in pooled memory, given back once each request is answered (message-framing.ts).
  installPooledFraming(logger);
  const server = new Server({
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    ...(options.interceptors === undefined ? {} : { interceptors: options.interceptors }),
  });

  const streamInfer = createStreamInfer(engine, logger, maxMessageBytes, options.shed);
  server.addService(
    withInferCodecs(inference.service),
    createInferenceService({
      engine,
      logger,
      server: { name: options.serverName ?? 'tessera', version: options.serverVersion ?? TESSERA_VERSION },
      maxMessageBytes,
      streamInfer: streamInfer.handle,
      ...(options.shed === undefined ? {} : { shed: options.shed }),
    }),
  );
  const health = new EngineHealth(engine);
  health.addToServer(server);
  addReflection(server, [inference.packageDefinition, loadSync(healthProtoPath, LOADER_OPTIONS)]);

  const address = options.host.includes(':') ? `[${options.host}]:${options.port}` : `${options.host}:${options.port}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, options.credentials ?? ServerCredentials.createInsecure(), (error, bound) => {
      if (error !== null) {
        reject(error);
        return;
      }
      // Right as the port is bound, so the sessions of the first clients already start with open windows.
      applyHttp2Windows(server, options.http2Windows ?? DEFAULT_HTTP2_WINDOWS, logger);
      resolve(bound);
    });
  }).catch((error: unknown) => {
    health.shutdown();
    server.forceShutdown();
    throw error;
  });
  logger.info({ grpc: `${options.host}:${port}`, maxMessageBytes }, 'gRPC is serving');

  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closing ??= (async () => {
        health.shutdown();
        streamInfer.drain();
        await shutdown(server, graceMs, logger);
      })()),
  };
}

/** tryShutdown (stop accepting, let calls finish), then forceShutdown once `graceMs` has passed. */
function shutdown(server: Server, graceMs: number, logger: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      logger.warn({ graceMs }, 'gRPC calls still running after the grace period; cancelling them');
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
