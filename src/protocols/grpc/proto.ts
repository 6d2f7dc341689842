import { fileURLToPath } from 'node:url';
import { loadSync, type Options, type PackageDefinition, type ServiceDefinition } from '@grpc/proto-loader';

/**
 * The project's proto directory. Resolved from this module's URL, three levels up, so it is
 * the same directory from src/protocols/grpc (tsx) and from dist/protocols/grpc (built).
 */
export const PROTO_DIR: string = fileURLToPath(new URL('../../../proto/', import.meta.url));

/** The service's full name, as clients, reflection and health checks name it. */
export const INFERENCE_SERVICE_NAME = 'inference.GRPCInferenceService';

/**
 * How proto-loader maps messages to JS objects; messages.ts describes the result. 64-bit
 * integers become strings (exact INT64/UINT64 tensor contents; no precision lost); `defaults`
 * fills absent fields so handlers need no presence checks; `oneofs` names the set member.
 */
export const LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

/** The loaded `inference` package: the definition (for reflection) and the service. */
export interface InferenceProto {
  readonly packageDefinition: PackageDefinition;
  readonly service: ServiceDefinition;
}

/** Load proto/grpc_service.proto (and the model_config.proto it imports). */
export function loadInferenceProto(): InferenceProto {
  const packageDefinition = loadSync('grpc_service.proto', LOADER_OPTIONS);
  const service = packageDefinition[INFERENCE_SERVICE_NAME];
  if (service === undefined || !isServiceDefinition(service)) {
    throw new Error(`${INFERENCE_SERVICE_NAME} is missing from ${PROTO_DIR}grpc_service.proto`);
  }
  return { packageDefinition, service };
}

function isServiceDefinition(value: PackageDefinition[string]): value is ServiceDefinition {
  // Message and enum definitions carry a `format`; service definitions are maps of methods.
  return !('format' in value);
}
