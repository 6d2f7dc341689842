import type { InferOutputTensorOut, InferParameterOut, ModelInferResponseOut, ModelStreamInferResponseOut } from './messages.js';
import { int64Value, ProtobufWriter, stringSize, tagSize, varint32Size, varint64Size } from './protobuf-writer.js';

/**
 * ModelInferResponse and ModelStreamInferResponse (proto/grpc_service.proto) encoded by hand,
 * as the ModelInfer and ModelStreamInfer serializers: sized once, written into one Buffer,
 * output tensors copied straight from their typed arrays. protobufjs (through proto-loader)
 * would first convert the answer into a message object (fromObject, every output's shape and
 * parameters), then encode it through a chain of forked writers. test/grpc-codec.test.ts
 * decodes what this writes with protobufjs and checks it is the message protobufjs writes.
 *
 * Encoding is proto3's: empty strings and empty repeated fields are left out (readers fill
 * the defaults); every raw_output_contents entry is written, empty ones too, so their indexes
 * stay those of `outputs`; shapes are packed; a oneof member is written even when it holds its
 * default value, since which member is set is itself the information.
 */
export function encodeModelInferResponse(response: ModelInferResponseOut): Buffer {
  const writer = new ProtobufWriter(inferResponseSize(response));
  writeInferResponse(writer, response);
  return writer.finish();
}

/**
 * Bytes `response` encodes to, without encoding it: a walk over its outputs' names, shapes
 * and parameters, never over tensor data (raw contents count by their byteLength).
 */
export function modelInferResponseSize(response: ModelInferResponseOut): number {
  return inferResponseSize(response);
}

/** Bytes a ModelStreamInferResponse encodes to, without encoding it (as {@link modelInferResponseSize}). */
export function modelStreamInferResponseSize(answer: ModelStreamInferResponseOut): number {
  return streamResponseSize(byteLength(answer.error_message), inferResponseSize(answer.infer_response));
}

function streamResponseSize(errorBytes: number, inner: number): number {
  return (errorBytes === 0 ? 0 : stringSize(1, errorBytes)) + tagSize(2) + varint32Size(inner) + inner;
}

/** ModelStreamInferResponse: { error_message = 1; infer_response = 2 }. */
export function encodeModelStreamInferResponse(answer: ModelStreamInferResponseOut): Buffer {
  const errorBytes = byteLength(answer.error_message);
  const inner = inferResponseSize(answer.infer_response);
  const writer = new ProtobufWriter(streamResponseSize(errorBytes, inner));
  if (errorBytes > 0) writer.string(1, answer.error_message, errorBytes);
  writer.tag(2, 2);
  writer.uint32(inner);
  writeInferResponse(writer, answer.infer_response);
  return writer.finish();
}

/** The fields of a response; a failed stream request's response holds only the first three. */
type ResponseFields = Pick<ModelInferResponseOut, 'model_name' | 'model_version' | 'id'> & Partial<ModelInferResponseOut>;

function byteLength(value: string | undefined): number {
  return value === undefined || value === '' ? 0 : Buffer.byteLength(value, 'utf8');
}

function optionalStringSize(field: number, value: string | undefined): number {
  const bytes = byteLength(value);
  return bytes === 0 ? 0 : stringSize(field, bytes);
}

function writeOptionalString(writer: ProtobufWriter, field: number, value: string | undefined): void {
  const bytes = byteLength(value);
  if (bytes > 0) writer.string(field, value!, bytes);
}

function delimitedSize(field: number, size: number): number {
  return tagSize(field) + varint32Size(size) + size;
}

function inferResponseSize(response: ResponseFields): number {
  let size = optionalStringSize(1, response.model_name) + optionalStringSize(2, response.model_version) + optionalStringSize(3, response.id);
  size += parametersSize(4, response.parameters);
  for (const output of response.outputs ?? []) size += delimitedSize(5, outputSize(output));
  for (const raw of response.raw_output_contents ?? []) size += delimitedSize(6, raw.byteLength);
  return size;
}

function writeInferResponse(writer: ProtobufWriter, response: ResponseFields): void {
  writeOptionalString(writer, 1, response.model_name);
  writeOptionalString(writer, 2, response.model_version);
  writeOptionalString(writer, 3, response.id);
  writeParameters(writer, 4, response.parameters);
  for (const output of response.outputs ?? []) {
    writer.tag(5, 2);
    writer.uint32(outputSize(output));
    writeOutput(writer, output);
  }
  for (const raw of response.raw_output_contents ?? []) writer.bytes(6, raw);
}

/** InferOutputTensor: name 1, datatype 2, shape 3 (packed int64), parameters 4. */
function outputSize(output: InferOutputTensorOut): number {
  const shape = shapeSize(output.shape);
  return (
    optionalStringSize(1, output.name) +
    optionalStringSize(2, output.datatype) +
    (shape === 0 ? 0 : delimitedSize(3, shape)) +
    parametersSize(4, output.parameters)
  );
}

function writeOutput(writer: ProtobufWriter, output: InferOutputTensorOut): void {
  writeOptionalString(writer, 1, output.name);
  writeOptionalString(writer, 2, output.datatype);
  const shape = shapeSize(output.shape);
  if (shape > 0) {
    writer.tag(3, 2);
    writer.uint32(shape);
    for (const dim of output.shape) writer.varint64(int64Value(dim));
  }
  writeParameters(writer, 4, output.parameters);
}

function shapeSize(shape: InferOutputTensorOut['shape']): number {
  let size = 0;
  for (const dim of shape) size += varint64Size(int64Value(dim));
  return size;
}

type ParameterMapOut = Readonly<Record<string, InferParameterOut>> | undefined;

/** A map<string, InferParameter> field: one entry message {key = 1; value = 2} per key. */
function parametersSize(field: number, parameters: ParameterMapOut): number {
  if (parameters === undefined) return 0;
  let size = 0;
  for (const key of Object.keys(parameters)) size += delimitedSize(field, entrySize(key, parameters[key]!));
  return size;
}

function writeParameters(writer: ProtobufWriter, field: number, parameters: ParameterMapOut): void {
  if (parameters === undefined) return;
  for (const key of Object.keys(parameters)) {
    const value = parameters[key]!;
    writer.tag(field, 2);
    writer.uint32(entrySize(key, value));
    writer.string(1, key, Buffer.byteLength(key, 'utf8'));
    writer.tag(2, 2);
    writer.uint32(parameterSize(value));
    writeParameter(writer, value);
  }
}

function entrySize(key: string, value: InferParameterOut): number {
  return stringSize(1, Buffer.byteLength(key, 'utf8')) + delimitedSize(2, parameterSize(value));
}

/** InferParameter: oneof { bool 1; int64 2; string 3; double 4 } (Tessera never sends uint64 5). */
function parameterSize(value: InferParameterOut): number {
  if ('bool_param' in value) return 2;
  if ('int64_param' in value) return 1 + varint64Size(int64Value(value.int64_param));
  if ('string_param' in value) return stringSize(3, Buffer.byteLength(value.string_param, 'utf8'));
  return 9;
}

function writeParameter(writer: ProtobufWriter, value: InferParameterOut): void {
  if ('bool_param' in value) {
    writer.tag(1, 0);
    writer.uint32(value.bool_param ? 1 : 0);
  } else if ('int64_param' in value) {
    writer.tag(2, 0);
    writer.varint64(int64Value(value.int64_param));
  } else if ('string_param' in value) {
    writer.string(3, value.string_param, Buffer.byteLength(value.string_param, 'utf8'));
  } else {
    writer.tag(4, 1);
    writer.double(value.double_param);
  }
}
