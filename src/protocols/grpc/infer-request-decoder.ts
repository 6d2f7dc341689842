import type {
  InferInputTensorMessage,
  InferParameterMessage,
  InferRequestedOutputTensorMessage,
  InferTensorContentsMessage,
  ModelInferRequestMessage,
} from './messages.js';
import { AlignedViews } from '../../core/aligned-views.js';
import { ProtobufError, ProtobufReader, WIRE } from './protobuf-reader.js';
import { noteReceived } from './received-messages.js';

/**
 * ModelInferRequest (proto/grpc_service.proto) decoded by hand, as the ModelInfer and
 * ModelStreamInfer deserializer. The result is what @grpc/proto-loader's protobufjs decoder
 * gives with the options of proto.ts (messages.ts): every field present, defaults filled,
 * 64-bit integers as decimal strings, oneofs named by `parameter_choice`, bytes as views;
 * test/grpc-codec.test.ts checks the two agree, unknown fields and unpacked repeated fields
 * included.
 *
 * Why by hand: protobufjs builds a message object and then a second, plain one (toObject) of
 * every request, and then `raw_input_contents` sits at whatever byte offset the client's
 * encoding left it, so a Float32Array cannot view it: the tensor was copied to an aligned
 * buffer, ~600 KB per ResNet image, and V8 runs a full (mark-compact) collection for every
 * few tens of MB of such buffers. This decoder instead moves each raw entry a few bytes
 * down, inside the message buffer, onto an 8-byte boundary (core AlignedViews), so the
 * tensor is a view of the received bytes with no allocation.
 *
 * It therefore takes ownership of the buffer it decodes: grpc-js hands each received message
 * to the deserializer and keeps no reference to it. A caller that keeps using the buffer must
 * pass a copy. The decoded message is noted as made from that buffer (received-messages.ts),
 * whose memory goes back to the pool once the request is answered.
 *
 * Departures from protobufjs, on messages no conforming client sends: a field whose wire type
 * does not match the schema is skipped as unknown (protobufjs misreads it); when a oneof has
 * several members on the wire, the last wins (protobufjs keeps them all and names the last
 * declared); a map entry without a value is an empty InferParameter (protobufjs fails the
 * call with INTERNAL), which the engine refuses as a parameter with no value; a `__proto__`
 * map key is an ordinary entry (protobufjs drops it into the map object's prototype).
 */
export function decodeModelInferRequest(bytes: Buffer): ModelInferRequestMessage {
  const reader = new ProtobufReader(bytes, 0, bytes.length);
  const views = new AlignedViews(bytes);
  let model_name = '';
  let model_version = '';
  let id = '';
  const parameters: Record<string, InferParameterMessage> = {};
  const inputs: InferInputTensorMessage[] = [];
  const outputs: InferRequestedOutputTensorMessage[] = [];
  const raw_input_contents: Buffer[] = [];
  while (reader.pos < reader.end) {
    const tag = reader.uint32();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wire !== WIRE.LEN) break;
        model_name = reader.string();
        continue;
      case 2:
        if (wire !== WIRE.LEN) break;
        model_version = reader.string();
        continue;
      case 3:
        if (wire !== WIRE.LEN) break;
        id = reader.string();
        continue;
      case 4:
        if (wire !== WIRE.LEN) break;
        readParameterEntry(reader, parameters);
        continue;
      case 5:
        if (wire !== WIRE.LEN) break;
        inputs.push(readInput(reader, views));
        continue;
      case 6:
        if (wire !== WIRE.LEN) break;
        outputs.push(readRequestedOutput(reader));
        continue;
      case 7: {
        if (wire !== WIRE.LEN) break;
        const end = reader.delimitedEnd();
        raw_input_contents.push(views.take(reader.pos, end));
        reader.pos = end;
        continue;
      }
      default:
        break;
    }
    reader.skip(wire);
  }
  const message = { model_name, model_version, id, parameters, inputs, outputs, raw_input_contents };
  noteReceived(message, bytes);
  return message;
}

function readInput(reader: ProtobufReader, views: AlignedViews): InferInputTensorMessage {
  const end = reader.delimitedEnd();
  const outer = reader.end;
  reader.end = end;
  let name = '';
  let datatype = '';
  const shape: string[] = [];
  const parameters: Record<string, InferParameterMessage> = {};
  let contents: InferTensorContentsMessage | null = null;
  while (reader.pos < end) {
    const tag = reader.uint32();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wire !== WIRE.LEN) break;
        name = reader.string();
        continue;
      case 2:
        if (wire !== WIRE.LEN) break;
        datatype = reader.string();
        continue;
      case 3:
        if (!readRepeatedVarint(reader, wire, shape, int64Of)) break;
        continue;
      case 4:
        if (wire !== WIRE.LEN) break;
        readParameterEntry(reader, parameters);
        continue;
      case 5:
        if (wire !== WIRE.LEN) break;
        // A singular message field seen twice: the last one, as protobufjs decodes it.
        contents = readContents(reader, views);
        continue;
      default:
        break;
    }
    reader.skip(wire);
  }
  reader.end = outer;
  return { name, datatype, shape, parameters, contents };
}

function readRequestedOutput(reader: ProtobufReader): InferRequestedOutputTensorMessage {
  const end = reader.delimitedEnd();
  const outer = reader.end;
  reader.end = end;
  let name = '';
  const parameters: Record<string, InferParameterMessage> = {};
  while (reader.pos < end) {
    const tag = reader.uint32();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wire !== WIRE.LEN) break;
        name = reader.string();
        continue;
      case 2:
        if (wire !== WIRE.LEN) break;
        readParameterEntry(reader, parameters);
        continue;
      default:
        break;
    }
    reader.skip(wire);
  }
  reader.end = outer;
  return { name, parameters };
}

const int64Of = (reader: ProtobufReader): string => reader.int64String();
const uint64Of = (reader: ProtobufReader): string => reader.uint64String();
const int32Of = (reader: ProtobufReader): number => reader.int32();
const uint32Of = (reader: ProtobufReader): number => reader.uint32();
const boolOf = (reader: ProtobufReader): boolean => reader.bool();

/**
 * One occurrence of a repeated varint field, packed (LEN) or not (VARINT): parsers must
 * accept both. False when the wire type is neither (the field is then skipped).
 */
function readRepeatedVarint<T>(reader: ProtobufReader, wire: number, into: T[], read: (reader: ProtobufReader) => T): boolean {
  if (wire === WIRE.VARINT) {
    into.push(read(reader));
    return true;
  }
  if (wire !== WIRE.LEN) return false;
  const end = reader.delimitedEnd();
  const outer = reader.end;
  reader.end = end;
  while (reader.pos < end) into.push(read(reader));
  reader.end = outer;
  return true;
}

/** One occurrence of a repeated fixed-width float field (I32 float or I64 double), packed or not. */
function readRepeatedFixed(reader: ProtobufReader, wire: number, into: number[], width: 4 | 8): boolean {
  const single = width === 4 ? WIRE.I32 : WIRE.I64;
  if (wire === single) {
    into.push(width === 4 ? reader.float() : reader.double());
    return true;
  }
  if (wire !== WIRE.LEN) return false;
  const end = reader.delimitedEnd();
  if ((end - reader.pos) % width !== 0) throw new ProtobufError(`packed ${width === 4 ? 'float' : 'double'} field of ${end - reader.pos} bytes`);
  const buf = reader.buf;
  if (width === 4) for (let pos = reader.pos; pos < end; pos += 4) into.push(buf.readFloatLE(pos));
  else for (let pos = reader.pos; pos < end; pos += 8) into.push(buf.readDoubleLE(pos));
  reader.pos = end;
  return true;
}

function readContents(reader: ProtobufReader, views: AlignedViews): InferTensorContentsMessage {
  const end = reader.delimitedEnd();
  const outer = reader.end;
  reader.end = end;
  const contents = {
    bool_contents: [] as boolean[],
    int_contents: [] as number[],
    int64_contents: [] as string[],
    uint_contents: [] as number[],
    uint64_contents: [] as string[],
    fp32_contents: [] as number[],
    fp64_contents: [] as number[],
    bytes_contents: [] as Buffer[],
  };
  while (reader.pos < end) {
    const tag = reader.uint32();
    const wire = tag & 7;
    let read: boolean;
    switch (tag >>> 3) {
      case 1:
        read = readRepeatedVarint(reader, wire, contents.bool_contents, boolOf);
        break;
      case 2:
        read = readRepeatedVarint(reader, wire, contents.int_contents, int32Of);
        break;
      case 3:
        read = readRepeatedVarint(reader, wire, contents.int64_contents, int64Of);
        break;
      case 4:
        read = readRepeatedVarint(reader, wire, contents.uint_contents, uint32Of);
        break;
      case 5:
        read = readRepeatedVarint(reader, wire, contents.uint64_contents, uint64Of);
        break;
      case 6:
        read = readRepeatedFixed(reader, wire, contents.fp32_contents, 4);
        break;
      case 7:
        read = readRepeatedFixed(reader, wire, contents.fp64_contents, 8);
        break;
      case 8: {
        read = wire === WIRE.LEN;
        if (!read) break;
        const elementEnd = reader.delimitedEnd();
        contents.bytes_contents.push(reader.buf.subarray(reader.pos, elementEnd));
        // A view handed out: the raw entries after it must not be moved over it.
        views.keep(elementEnd);
        reader.pos = elementEnd;
        break;
      }
      default:
        read = false;
    }
    if (!read) reader.skip(wire);
  }
  reader.end = outer;
  return contents;
}

/** One entry of a map<string, InferParameter> field: the entry is a message {1: key, 2: value}. */
function readParameterEntry(reader: ProtobufReader, into: Record<string, InferParameterMessage>): void {
  const end = reader.delimitedEnd();
  const outer = reader.end;
  reader.end = end;
  let key = '';
  let value: InferParameterMessage = {};
  while (reader.pos < end) {
    const tag = reader.uint32();
    const wire = tag & 7;
    if (tag >>> 3 === 1 && wire === WIRE.LEN) key = reader.string();
    else if (tag >>> 3 === 2 && wire === WIRE.LEN) value = readParameter(reader);
    else reader.skip(wire);
  }
  reader.end = outer;
  // A key named __proto__ is an entry like any other, not the map object's prototype.
  if (key === '__proto__') Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
  else into[key] = value;
}

/** InferParameter: oneof parameter_choice { bool 1, int64 2, string 3, double 4, uint64 5 }. */
function readParameter(reader: ProtobufReader): InferParameterMessage {
  const end = reader.delimitedEnd();
  const outer = reader.end;
  reader.end = end;
  let parameter: InferParameterMessage = {};
  while (reader.pos < end) {
    const tag = reader.uint32();
    const wire = tag & 7;
    const field = tag >>> 3;
    if (field === 1 && wire === WIRE.VARINT) parameter = { bool_param: reader.bool(), parameter_choice: 'bool_param' };
    else if (field === 2 && wire === WIRE.VARINT) parameter = { int64_param: reader.int64String(), parameter_choice: 'int64_param' };
    else if (field === 3 && wire === WIRE.LEN) parameter = { string_param: reader.string(), parameter_choice: 'string_param' };
    else if (field === 4 && wire === WIRE.I64) parameter = { double_param: reader.double(), parameter_choice: 'double_param' };
    else if (field === 5 && wire === WIRE.VARINT) parameter = { uint64_param: reader.uint64String(), parameter_choice: 'uint64_param' };
    else reader.skip(wire);
  }
  reader.end = outer;
  return parameter;
}
