import { status, type ServerUnaryCall, type UntypedServiceImplementation, type handleUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { TesseraError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Engine } from '../../engine/engine.js';
import { parseLoadParameters, type LoadParameterValue } from '../repository-load.js';
import { openCallScope } from './call-scope.js';
import { toServiceError } from './errors.js';
import { inferMessage, oversizedAnswer } from './infer.js';
import { modelInferResponseSize } from './infer-response-encoder.js';
import type { ModelInferRequestMessage, ModelRefMessage, RepositoryIndexRequestMessage, RepositoryModelRequestMessage } from './messages.js';
import { encodeModelConfig } from './model-config.js';
import { releaseOnceEncoded, releaseRequest } from './received-messages.js';
import { GRPC_EXTENSIONS, type ServerInfo } from './server-info.js';
import type { StreamInferHandler } from './stream.js';

export interface InferenceServiceOptions {
  readonly engine: Engine;
  readonly logger: Logger;
  readonly server: ServerInfo;
  /** The send limit (grpc.max_send_message_length): a larger ModelInfer answer is refused, naming it. */
  readonly maxMessageBytes: number;
  /** The ModelStreamInfer handler (stream.ts), which owns the streams' lifecycle. */
  readonly streamInfer: StreamInferHandler;
  /** Load shedding: the refusal for a call starting now, or undefined. Health rpcs are never shed. */
  readonly shed?: () => TesseraError | undefined;
}

/** Health rpcs answer even while the server sheds load. */
const NEVER_SHED = new Set(['ServerLive', 'ServerReady', 'ModelReady']);

/**
 * The handlers of inference.GRPCInferenceService: each decodes its message, calls the engine
 * and encodes the answer; every error the engine throws becomes a gRPC status through the
 * one category map (errors.ts).
 */
export function createInferenceService(options: InferenceServiceOptions): UntypedServiceImplementation {
  const { engine, logger } = options;
  const unary = <Req, Res>(rpc: string, fn: (call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>): handleUnaryCall<Req, Res> => {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      Promise.resolve()
        .then(() => {
          const refusal = NEVER_SHED.has(rpc) ? undefined : options.shed?.();
          if (refusal !== undefined) throw refusal;
          return fn(call);
        })
        .then(
          (response) => callback(null, response),
          (error: unknown) => {
            const serviceError = toServiceError(error);
            if (serviceError.code === status.INTERNAL) logger.error({ rpc, err: error }, serviceError.details ?? 'internal error');
            else logger.debug({ rpc, code: serviceError.code }, serviceError.details ?? '');
            callback(serviceError);
          },
        );
    };
  };

  return {
    ServerLive: unary('ServerLive', () => ({ live: engine.isLive() })),
    ServerReady: unary('ServerReady', () => ({ ready: engine.isReady() })),
    ModelReady: unary('ModelReady', (call: ServerUnaryCall<ModelRefMessage, unknown>) => ({
      ready: engine.modelReady(modelName(call.request.name), optional(call.request.version)),
    })),
    ServerMetadata: unary('ServerMetadata', () => ({ name: options.server.name, version: options.server.version, extensions: [...GRPC_EXTENSIONS] })),
    ModelMetadata: unary('ModelMetadata', (call: ServerUnaryCall<ModelRefMessage, unknown>) => {
      const metadata = engine.modelMetadata(modelName(call.request.name), optional(call.request.version));
      const tensor = (spec: { name: string; datatype: string; shape: readonly number[] }): object => ({ name: spec.name, datatype: spec.datatype, shape: [...spec.shape] });
      return {
        name: metadata.name,
        versions: [...metadata.versions],
        platform: metadata.platform,
        inputs: metadata.inputs.map(tensor),
        outputs: metadata.outputs.map(tensor),
      };
    }),
    ModelInfer: unary('ModelInfer', async (call: ServerUnaryCall<ModelInferRequestMessage, unknown>) => {
      const open = openCallScope(call);
      try {
        const response = await inferMessage(engine, call.request, open.scope);
        // grpc-js would refuse it after encoding with a bare "Sent message larger than max".
        const oversized = oversizedAnswer(modelInferResponseSize(response), options.maxMessageBytes);
        if (oversized !== undefined) throw oversized;
        releaseOnceEncoded(call.request, response);
        return response;
      } catch (error) {
        releaseRequest(call.request);
        throw error;
      } finally {
        open.end();
      }
    }),
    ModelStreamInfer: options.streamInfer,
    ModelConfig: unary('ModelConfig', (call: ServerUnaryCall<ModelRefMessage, unknown>) => ({
      config: encodeModelConfig(engine.modelConfig(modelName(call.request.name), optional(call.request.version))),
    })),
    ModelStatistics: unary('ModelStatistics', (call: ServerUnaryCall<ModelRefMessage, unknown>) => ({
      // An empty name means every model (Triton's ModelStatisticsRequest).
      model_stats: engine.statistics(optional(call.request.name), optional(call.request.version)),
    })),
    RepositoryIndex: unary('RepositoryIndex', (call: ServerUnaryCall<RepositoryIndexRequestMessage, unknown>) => {
      // Tessera serves one repository, so repository_name selects nothing.
      const index = engine.repositoryIndex();
      const entries = call.request.ready ? index.filter((entry) => entry.state === 'READY') : index;
      return { models: entries.map((entry) => ({ name: entry.name, version: entry.version ?? '', state: entry.state, reason: entry.reason })) };
    }),
    RepositoryModelLoad: unary('RepositoryModelLoad', async (call: ServerUnaryCall<RepositoryModelRequestMessage, unknown>) => {
      await engine.loadModel(modelName(call.request.model_name), parseLoadParameters(loadParameters(call.request.parameters)));
      return {};
    }),
    RepositoryModelUnload: unary('RepositoryModelUnload', async (call: ServerUnaryCall<RepositoryModelRequestMessage, unknown>) => {
      // unload_dependents is accepted: Tessera has no ensembles, so a model has no dependents.
      await engine.unloadModel(modelName(call.request.model_name));
      return {};
    }),
  };
}

/** A load request's parameters map, its oneof values flattened. */
function loadParameters(parameters: RepositoryModelRequestMessage['parameters']): Map<string, LoadParameterValue> {
  const out = new Map<string, LoadParameterValue>();
  for (const [key, value] of Object.entries(parameters ?? {})) {
    const chosen =
      value.parameter_choice === 'string_param'
        ? value.string_param
        : value.parameter_choice === 'bytes_param'
          ? value.bytes_param
          : value.parameter_choice === 'bool_param'
            ? value.bool_param
            : value.parameter_choice === 'int64_param'
              ? Number(value.int64_param)
              : undefined;
    if (chosen !== undefined) out.set(key, chosen);
  }
  return out;
}

/** A request's model name, which must not be empty. */
function modelName(name: string): string {
  if (name === '') throw new TesseraError('INVALID_REQUEST', "'name' is empty; name a model");
  return name;
}

/** proto3 strings cannot be absent: an empty one means "not given". */
function optional(value: string): string | undefined {
  return value === '' ? undefined : value;
}
