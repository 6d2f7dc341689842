/**
 * TypeScript shapes of the `inference` messages (proto/grpc_service.proto) as @grpc/proto-loader
 * hands them over with the loader options of proto.ts: field names as in the .proto, 64-bit
 * integers as decimal strings, enums as their names, absent fields filled with defaults, `bytes`
 * as Buffers viewing the received message, and each oneof's set member named by its oneof field.
 * Outgoing messages accept numbers for 64-bit fields (protobufjs converts them).
 */

/** A 64-bit integer as proto-loader decodes it (`longs: String`). */
export type Int64String = string;

/** A 64-bit integer in an outgoing message. */
export type Int64Out = number | string;

/** InferParameter: one of bool, int64, string, double or uint64. */
export interface InferParameterMessage {
  readonly parameter_choice?: 'bool_param' | 'int64_param' | 'string_param' | 'double_param' | 'uint64_param';
  readonly bool_param?: boolean;
  readonly int64_param?: Int64String | number;
  readonly string_param?: string;
  readonly double_param?: number;
  readonly uint64_param?: Int64String | number;
}

export type InferParameterMap = Readonly<Record<string, InferParameterMessage>>;

/** InferTensorContents as received: every repeated field present, possibly empty. */
export interface InferTensorContentsMessage {
  readonly bool_contents: readonly boolean[];
  readonly int_contents: readonly number[];
  readonly int64_contents: readonly Int64String[];
  readonly uint_contents: readonly number[];
  readonly uint64_contents: readonly Int64String[];
  readonly fp32_contents: readonly number[];
  readonly fp64_contents: readonly number[];
  readonly bytes_contents: readonly Buffer[];
}

export interface InferInputTensorMessage {
  readonly name: string;
  readonly datatype: string;
  readonly shape: readonly Int64String[];
  readonly parameters: InferParameterMap;
  /** null when the client left it unset. */
  readonly contents: InferTensorContentsMessage | null;
}

export interface InferRequestedOutputTensorMessage {
  readonly name: string;
  readonly parameters: InferParameterMap;
}

/** ModelInferRequest as received. */
export interface ModelInferRequestMessage {
  readonly model_name: string;
  readonly model_version: string;
  readonly id: string;
  readonly parameters: InferParameterMap;
  readonly inputs: readonly InferInputTensorMessage[];
  readonly outputs: readonly InferRequestedOutputTensorMessage[];
  readonly raw_input_contents: readonly Buffer[];
}

/** An InferParameter to send. */
export type InferParameterOut =
  | { bool_param: boolean }
  | { int64_param: Int64Out }
  | { string_param: string }
  | { double_param: number };

export interface InferOutputTensorOut {
  name: string;
  datatype: string;
  shape: Int64Out[];
  parameters?: Record<string, InferParameterOut>;
}

/** ModelInferResponse to send: data always in raw_output_contents. */
export interface ModelInferResponseOut {
  model_name: string;
  model_version: string;
  id: string;
  parameters?: Record<string, InferParameterOut>;
  outputs: InferOutputTensorOut[];
  raw_output_contents: Buffer[];
}

/** ModelStreamInferResponse to send. */
export interface ModelStreamInferResponseOut {
  error_message: string;
  infer_response: ModelInferResponseOut | Pick<ModelInferResponseOut, 'model_name' | 'model_version' | 'id'>;
}

/** Requests that name a model and optionally a version (ModelReady, ModelMetadata, ModelConfig, ModelStatistics). */
export interface ModelRefMessage {
  readonly name: string;
  readonly version: string;
}

export interface RepositoryIndexRequestMessage {
  readonly repository_name: string;
  readonly ready: boolean;
}

export interface RepositoryModelRequestMessage {
  readonly repository_name: string;
  readonly model_name: string;
  /** Load only (absent on unload); map<string, ModelRepositoryParameter>. */
  readonly parameters?: Readonly<Record<string, ModelRepositoryParameterMessage>>;
}

/** ModelRepositoryParameter: a oneof `parameter_choice` naming the member that is set. */
export interface ModelRepositoryParameterMessage {
  readonly parameter_choice?: 'bool_param' | 'int64_param' | 'string_param' | 'bytes_param';
  readonly bool_param?: boolean;
  /** int64, as a string (proto-loader's `longs: String`). */
  readonly int64_param?: string;
  readonly string_param?: string;
  readonly bytes_param?: Buffer;
}

/** ModelConfig (model_config.proto) to send. */
export interface ModelConfigOut {
  name: string;
  platform: string;
  backend: string;
  version_policy: { latest: { num_versions: number } } | { all: Record<string, never> } | { specific: { versions: number[] } };
  max_batch_size: number;
  input: { name: string; data_type: string; dims: number[] }[];
  output: { name: string; data_type: string; dims: number[] }[];
  instance_group: { name: string; kind: string; count: number }[];
  default_model_filename: string;
  dynamic_batching?: {
    preferred_batch_size: number[];
    max_queue_delay_microseconds: number;
    preserve_ordering: boolean;
    priority_levels: number;
    default_priority_level: number;
    default_queue_policy?: {
      default_timeout_microseconds: number;
      allow_timeout_override: boolean;
      max_queue_size: number;
    };
  };
  parameters: Record<string, { string_value: string }>;
}
