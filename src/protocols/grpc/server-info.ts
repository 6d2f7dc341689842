/** What ServerMetadata reports about the server. */
export interface ServerInfo {
  readonly name: string;
  readonly version: string;
}

/**
 * V2 protocol extensions reported by ServerMetadata: those the gRPC adapter implements. It is
 * the REST adapter's list less `binary_tensor_data`, an HTTP extension (gRPC carries binary
 * tensors natively, in raw contents). `model_repository` covers RepositoryIndex and
 * RepositoryModelLoad/Unload (refused in poll mode, as over REST).
 */
export const GRPC_EXTENSIONS: readonly string[] = [
  'model_repository',
  'model_configuration',
  'statistics',
  'schedule_policy',
  'parameters',
  'classification',
];
