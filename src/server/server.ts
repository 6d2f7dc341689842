import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { FakeBackend } from '../backends/fake/backend.js';
import { OnnxBackend } from '../backends/onnx/backend.js';
import type { ServerConfig } from '../config/server-config.js';
import { Engine } from '../engine/engine.js';
import { buildHttpApp } from '../protocols/http/app.js';
import { singleModelProblem } from '../protocols/http/cloud/single-model.js';
import { createLogger } from './logger.js';
import { TESSERA_VERSION } from './version.js';

/** Default max_batch_size for models that can batch and whose config sets none. */
const DEFAULT_MAX_BATCH_SIZE = 8;

export interface TesseraServer {
  readonly engine: Engine;
  // Further listeners (gRPC's port) join here: each with its port, each closed by close().
  /** Port the HTTP listener is bound to (useful with port 0). */
  readonly httpPort: number;
  /** Base URL of the HTTP listener, e.g. http://127.0.0.1:8000. */
  readonly httpUrl: string;
  /**
   * Graceful stop: readiness turns false, listeners stop accepting, in-flight and queued
   * requests finish (up to the grace period), models are released. Idempotent.
   */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Use this logger instead of creating one from config.logLevel. */
  readonly logger?: Logger;
}

/** Build and start a server: engine (repository loaded), HTTP listener. */
export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<TesseraServer> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const engine = await Engine.start({
    repository: config.modelRepository,
    backends: [new OnnxBackend(), new FakeBackend()],
    scheduling: {
      defaultMaxBatchSize: DEFAULT_MAX_BATCH_SIZE,
      maxQueueSize: config.maxQueueSize,
      retryAfterSeconds: config.retryAfterSeconds,
      holdUntilQueued: config.delaySchedulerUntil,
    },
    strictReadiness: config.strictReadiness,
    drainGraceMs: config.shutdownGraceMs,
    logger,
  });
  const app = buildHttpApp({
    engine,
    logger,
    bodyLimitBytes: config.bodyLimitBytes,
    errors: { queueFullStatus: config.queueFullStatus },
    serverName: 'tessera',
    serverVersion: TESSERA_VERSION,
    compression: { enabled: config.responseCompression, thresholdBytes: config.compressionThresholdBytes },
    protocols: {
      tfServing: config.tfServing,
      torchServe: config.torchServe,
      sagemaker: config.sagemaker,
      vertex: config.vertex ? { healthRoute: config.vertexHealthRoute, predictRoute: config.vertexPredictRoute } : undefined,
      azureml: config.azureml,
      defaultModel: config.defaultModel,
    },
  });
  if (config.sagemaker || config.vertex || config.azureml) {
    const problem = singleModelProblem(engine, config.defaultModel);
    if (problem !== undefined) logger.warn({}, `single-model platform endpoints will refuse requests: ${problem}`);
  }
  try {
    await app.listen({ host: config.host, port: config.httpPort });
  } catch (error) {
    await engine.close();
    throw error;
  }
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const protocols = ['v2', ...(config.tfServing ? ['tf-serving'] : []), ...(config.torchServe ? ['torchserve'] : []), ...(config.sagemaker ? ['sagemaker'] : []), ...(config.vertex ? ['vertex'] : []), ...(config.azureml ? ['azureml'] : [])];
  logger.info({ http: `${host}:${address.port}`, repository: config.modelRepository, protocols }, 'tessera is serving');
  let closing: Promise<void> | undefined;
  return {
    engine,
    httpPort: address.port,
    httpUrl: `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${address.port}`,
    close: () =>
      (closing ??= (async () => {
        logger.info({}, 'shutting down: draining requests');
        await Promise.all([engine.close(), app.close()]);
        logger.info({}, 'stopped');
      })()),
  };
}
