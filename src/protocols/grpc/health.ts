import type { Server, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation, handleUnaryCall, sendUnaryData } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { Engine } from '../../engine/engine.js';
import { INFERENCE_SERVICE_NAME } from './proto.js';

/** How often Watch streams are brought up to date with the engine (Check always reads it live). */
const WATCH_REFRESH_MS = 1000;

interface HealthCheckRequest {
  readonly service: string;
}

/**
 * The standard gRPC health service (grpc.health.v1.Health, grpc/doc/health-checking.md),
 * following the engine: the server ('') and inference.GRPCInferenceService are SERVING while
 * engine.isReady(), NOT_SERVING otherwise; each model of the repository is a service of its
 * own name, SERVING while the model has a ready version, NOT_SERVING once it has none or has
 * left the repository. Names never in the repository answer NOT_FOUND.
 * Check and List read the engine at call time; Watch streams are updated when a status changes.
 */
export class EngineHealth {
  private readonly health = new HealthImplementation();
  private readonly known = new Map<string, ServingStatus>();
  private readonly watchCalls = new Set<ServerWritableStream<HealthCheckRequest, unknown>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly engine: Engine) {
    this.refresh();
  }

  /** Register the health service on `server`, with Check and Watch kept in step with the engine. */
  addToServer(server: Pick<Server, 'addService'>): void {
    this.health.addToServer({
      addService: (definition, implementation: UntypedServiceImplementation) => {
        const check = implementation['check'] as handleUnaryCall<HealthCheckRequest, unknown>;
        const list = implementation['list'] as handleUnaryCall<object, unknown> | undefined;
        const watch = implementation['watch'] as (call: ServerWritableStream<HealthCheckRequest, unknown>) => void;
        server.addService(definition, {
          ...implementation,
          check: (call: ServerUnaryCall<HealthCheckRequest, unknown>, callback: sendUnaryData<unknown>) => {
            this.refresh();
            check(call, callback);
          },
          ...(list === undefined
            ? {}
            : {
                list: (call: ServerUnaryCall<object, unknown>, callback: sendUnaryData<unknown>) => {
                  this.refresh();
                  list(call, callback);
                },
              }),
          watch: (call: ServerWritableStream<HealthCheckRequest, unknown>) => {
            this.refresh();
            this.watchCalls.add(call);
            call.once('cancelled', () => this.watchCalls.delete(call));
            watch(call);
          },
        });
      },
    });
    this.timer ??= setInterval(() => this.refresh(), WATCH_REFRESH_MS).unref();
  }

  /** Bring every status up to date with the engine. */
  refresh(): void {
    if (this.stopped) return;
    const server: ServingStatus = this.engine.isReady() ? 'SERVING' : 'NOT_SERVING';
    this.set('', server);
    this.set(INFERENCE_SERVICE_NAME, server);
    const models = new Set<string>();
    for (const entry of this.engine.repositoryIndex()) {
      // The index lists a model once per version; its status is the model's.
      if (models.has(entry.name)) continue;
      models.add(entry.name);
      this.set(entry.name, this.modelStatus(entry.name));
    }
    // A model gone from the repository turns NOT_SERVING rather than being forgotten (which
    // would answer Check with NOT_FOUND, as for a name never known): Kubernetes gRPC probes and
    // grpc_health_probe fail on either, but report NOT_SERVING as the service being unhealthy
    // where NOT_FOUND reads as a probe naming the wrong service; and HealthImplementation can
    // only set a status, not drop one, so Watch streams on the model would keep their last
    // SERVING. It turns SERVING again if the model comes back.
    for (const service of this.known.keys()) {
      if (service !== '' && service !== INFERENCE_SERVICE_NAME && !models.has(service)) this.set(service, 'NOT_SERVING');
    }
  }

  /**
   * Shutting down: every service turns NOT_SERVING (Watch streams are told), then the Watch
   * streams end, so they do not hold a graceful shutdown open.
   */
  shutdown(): void {
    if (this.stopped) return;
    for (const service of this.known.keys()) this.set(service, 'NOT_SERVING');
    this.stopped = true;
    clearInterval(this.timer);
    for (const call of this.watchCalls) call.end();
    this.watchCalls.clear();
  }

  private modelStatus(name: string): ServingStatus {
    try {
      return this.engine.modelReady(name) ? 'SERVING' : 'NOT_SERVING';
    } catch {
      return 'NOT_SERVING';
    }
  }

  /** Set a status only when it changes: HealthImplementation notifies watchers on every set. */
  private set(service: string, status: ServingStatus): void {
    if (this.known.get(service) === status) return;
    this.known.set(service, status);
    this.health.setStatus(service, status);
  }
}
