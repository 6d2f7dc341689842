/**
 * A small, typed builder for ONNX graphs, used to make the test and example models
 * of the project without Python or any downloaded model.
 *
 * ```ts
 * const g = new GraphBuilder('mlp');
 * const x = g.input('x', 'FP32', [-1, 4]);            // -1 => symbolic dim ('batch' on axis 0)
 * const w = g.initializer('w1', 'FP32', [4, 3], new Float32Array(12));
 * const h = g.node('MatMul', [x, w]);                   // returns the (generated) output name
 * g.output(g.node('Softmax', [h], { axis: 1 }), 'FP32', [-1, 3], 'probs');
 * const bytes: Uint8Array = g.build({ opset: 17 });
 * ```
 *
 * Datatypes are named as in KServe V2 / Open Inference Protocol (`BYTES` is the ONNX
 * `STRING` type). Numeric initializers are stored little-endian in `raw_data`, which is
 * what the ONNX spec requires (and what every supported host is).
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type IAttributeProto = onnxProto.onnx.IAttributeProto;
type INodeProto = onnxProto.onnx.INodeProto;
type ITensorProto = onnxProto.onnx.ITensorProto;
type IValueInfoProto = onnxProto.onnx.IValueInfoProto;
type IDimension = onnxProto.onnx.TensorShapeProto.IDimension;

/** KServe V2 tensor datatypes that map onto ONNX tensor element types. */
export type Datatype =
  | 'BOOL'
  | 'UINT8'
  | 'UINT16'
  | 'UINT32'
  | 'UINT64'
  | 'INT8'
  | 'INT16'
  | 'INT32'
  | 'INT64'
  | 'FP16'
  | 'FP32'
  | 'FP64'
  | 'BYTES';

/** All supported datatypes, in a stable order. */
export const DATATYPES: readonly Datatype[] = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
];

/** ONNX `TensorProto.DataType` code of each datatype. */
export const ONNX_DATA_TYPE: Readonly<Record<Datatype, number>> = {
  BOOL: onnx.TensorProto.DataType.BOOL,
  UINT8: onnx.TensorProto.DataType.UINT8,
  UINT16: onnx.TensorProto.DataType.UINT16,
  UINT32: onnx.TensorProto.DataType.UINT32,
  UINT64: onnx.TensorProto.DataType.UINT64,
  INT8: onnx.TensorProto.DataType.INT8,
  INT16: onnx.TensorProto.DataType.INT16,
  INT32: onnx.TensorProto.DataType.INT32,
  INT64: onnx.TensorProto.DataType.INT64,
  FP16: onnx.TensorProto.DataType.FLOAT16,
  FP32: onnx.TensorProto.DataType.FLOAT,
  FP64: onnx.TensorProto.DataType.DOUBLE,
  BYTES: onnx.TensorProto.DataType.STRING,
};

/**
 * The JS array type that holds initializer data of each datatype. `BOOL` is one byte
 * per element (0 or 1); `FP16` is the raw IEEE half-precision bits.
 */
export interface TensorArrayTypes {
  BOOL: Uint8Array;
  UINT8: Uint8Array;
  UINT16: Uint16Array;
  UINT32: Uint32Array;
  UINT64: BigUint64Array;
  INT8: Int8Array;
  INT16: Int16Array;
  INT32: Int32Array;
  INT64: BigInt64Array;
  FP16: Uint16Array;
  FP32: Float32Array;
  FP64: Float64Array;
  BYTES: readonly string[];
}

/** Initializer data for datatype `D`. */
export type TensorArray<D extends Datatype> = TensorArrayTypes[D];

/**
 * A dimension: a fixed size (>= 0), `-1` for a symbolic dimension (named `batch` on
 * axis 0, `<value>_d<axis>` elsewhere), or a string naming the symbolic dimension.
 * Inputs that share a dimension name must agree on its size at run time.
 */
export type Dim = number | string;

/** Forces a number to be encoded as a FLOAT attribute (see {@link AttrValue}). */
export interface FloatAttr {
  readonly kind: 'float';
  readonly value: number;
}

/** Forces a number list to be encoded as a FLOATS attribute (see {@link AttrValue}). */
export interface FloatsAttr {
  readonly kind: 'floats';
  readonly value: readonly number[];
}

/**
 * An attribute value. A number is an INT when it is an integer and a FLOAT otherwise;
 * an array is INTS when every element is an integer (or it is empty) and FLOATS
 * otherwise; a string is a STRING (UTF-8). Use {@link float} / {@link floats} for a
 * float attribute whose value happens to be integral (e.g. Gemm's `alpha: float(1)`).
 */
export type AttrValue = number | string | readonly number[] | FloatAttr | FloatsAttr;

/** Node attributes by name. */
export type Attrs = Readonly<Record<string, AttrValue>>;

/** Marks `value` as a FLOAT attribute even if it is an integer. */
export function float(value: number): FloatAttr {
  return { kind: 'float', value };
}

/** Marks `value` as a FLOATS attribute even if all elements are integers. */
export function floats(value: readonly number[]): FloatsAttr {
  return { kind: 'floats', value };
}

/** Options of {@link GraphBuilder.node}. */
export interface NodeOptions {
  /** Output names (default: one generated name). Give several for multi-output ops. */
  readonly outputs?: readonly string[];
  /** Node name (default: generated from the op type). */
  readonly name?: string;
  /** Operator domain (default: the ONNX default domain ''). */
  readonly domain?: string;
}

/** Options of {@link GraphBuilder.build}. */
export interface BuildOptions {
  /** Default-domain opset version (default 17). */
  readonly opset?: number;
  /** ONNX IR version (default 8, which onnxruntime 1.30 loads with opset 17). */
  readonly irVersion?: number;
  /** `producer_name` (default 'tessera-test'). */
  readonly producerName?: string;
  /** Model doc string. */
  readonly docString?: string;
  /** `metadata_props` key/value pairs. */
  readonly metadata?: Readonly<Record<string, string>>;
}

const ARRAY_CTORS: Readonly<Record<Exclude<Datatype, 'BYTES'>, new (length: number) => ArrayBufferView>> = {
  BOOL: Uint8Array,
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  UINT64: BigUint64Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  FP16: Uint16Array,
  FP32: Float32Array,
  FP64: Float64Array,
};

/** Number of elements of a fully known shape. */
export function elementCount(dims: readonly number[]): number {
  return dims.reduce((n, d) => n * d, 1);
}

/**
 * Builds one ONNX graph, then serializes it as a model with {@link GraphBuilder.build}.
 * Every method that creates a value returns the value's name, to be passed as an
 * input to later nodes. Names must be unique within the graph.
 */
export class GraphBuilder {
  private readonly inputs: IValueInfoProto[] = [];
  private readonly outputs: IValueInfoProto[] = [];
  private readonly initializers: ITensorProto[] = [];
  private readonly nodes: INodeProto[] = [];
  private readonly defined = new Set<string>();
  private readonly domains = new Set<string>();
  private counter = 0;

  /** @param name graph name. */
  constructor(readonly name: string) {}

  /** Declares a graph input and returns its name. */
  input(name: string, datatype: Datatype, shape: readonly Dim[]): string {
    const info = valueInfo(name, datatype, shape);
    this.define(name);
    this.inputs.push(info);
    return name;
  }

  /**
   * Adds a constant tensor (initializer) and returns its name. `data` must hold
   * exactly `product(dims)` elements; `dims = []` is a scalar.
   */
  initializer<D extends Datatype>(
    name: string,
    datatype: D,
    dims: readonly number[],
    data: TensorArray<D>,
  ): string {
    const tensor = tensorProto(name, datatype, dims, data);
    this.define(name);
    this.initializers.push(tensor);
    return name;
  }

  /**
   * Adds a scalar or small constant with a generated name (convenience over
   * {@link GraphBuilder.initializer}).
   */
  constant<D extends Datatype>(datatype: D, dims: readonly number[], data: TensorArray<D>): string {
    return this.initializer(this.fresh('const'), datatype, dims, data);
  }

  /**
   * Adds a node with a single output and returns the output's name. Pass `''` as an
   * input to leave an optional input out.
   */
  node(op: string, inputs: readonly string[], attrs: Attrs = {}, options: NodeOptions = {}): string {
    const outs = this.nodeMulti(op, inputs, 1, attrs, options);
    const first = outs[0];
    if (outs.length !== 1 || first === undefined) {
      throw new Error(`${op}: node() makes exactly one output; use nodeMulti()`);
    }
    return first;
  }

  /**
   * Adds a node with `outputCount` outputs (or `options.outputs` names) and returns the
   * output names, in order.
   */
  nodeMulti(
    op: string,
    inputs: readonly string[],
    outputCount: number,
    attrs: Attrs = {},
    options: NodeOptions = {},
  ): string[] {
    for (const input of inputs) {
      if (input !== '' && !this.defined.has(input)) {
        throw new Error(`${op}: input '${input}' is not defined (yet) in graph '${this.name}'`);
      }
    }
    const nodeName = options.name ?? this.fresh(op);
    const outputs =
      options.outputs !== undefined
        ? [...options.outputs]
        : Array.from({ length: outputCount }, (_, i) =>
            outputCount === 1 ? `${nodeName}_out` : `${nodeName}_out${i}`,
          );
    if (outputs.length !== outputCount) {
      throw new Error(`${op}: ${outputs.length} output names given for ${outputCount} outputs`);
    }
    const attribute = Object.entries(attrs).map(([key, value]) => encodeAttribute(key, value));
    if (new Set(outputs).size !== outputs.length) throw new Error(`${op}: duplicate output names`);
    for (const out of outputs) this.checkNewName(out);
    for (const out of outputs) this.define(out);
    const domain = options.domain ?? '';
    if (domain !== '') this.domains.add(domain);
    this.nodes.push({ opType: op, name: nodeName, domain, input: [...inputs], output: outputs, attribute });
    return outputs;
  }

  /**
   * Declares `value` as a graph output. With `outputName` (different from `value`)
   * an Identity node renames it. `shape` may be omitted to declare only the element
   * type. Returns the output's name.
   */
  output(value: string, datatype: Datatype, shape?: readonly Dim[], outputName?: string): string {
    let name = value;
    if (outputName !== undefined && outputName !== value) {
      name = this.node('Identity', [value], {}, { outputs: [outputName] });
    } else if (!this.defined.has(value)) {
      throw new Error(`output '${value}' is not defined in graph '${this.name}'`);
    }
    if (this.outputs.some((o) => o.name === name)) {
      throw new Error(`output '${name}' declared twice`);
    }
    this.outputs.push(valueInfo(name, datatype, shape));
    return name;
  }

  /** Returns the model as an `onnx.ModelProto` message (before serialization). */
  toModelProto(options: BuildOptions = {}): onnxProto.onnx.ModelProto {
    if (this.outputs.length === 0) throw new Error(`graph '${this.name}' has no outputs`);
    const opsetImport = [
      { domain: '', version: options.opset ?? 17 },
      ...[...this.domains].map((domain) => ({ domain, version: 1 })),
    ];
    return onnx.ModelProto.create({
      irVersion: options.irVersion ?? 8,
      producerName: options.producerName ?? 'tessera-test',
      producerVersion: '1',
      docString: options.docString ?? '',
      opsetImport,
      metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.name,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
        node: this.nodes,
      },
    });
  }

  /** Serializes the model to ONNX protobuf bytes (what goes into `model.onnx`). */
  build(options: BuildOptions = {}): Uint8Array {
    return onnx.ModelProto.encode(this.toModelProto(options)).finish();
  }

  private checkNewName(name: string): void {
    if (name === '') throw new Error('value names must not be empty');
    if (this.defined.has(name)) throw new Error(`'${name}' is already defined in graph '${this.name}'`);
  }

  private define(name: string): void {
    this.checkNewName(name);
    this.defined.add(name);
  }

  private fresh(prefix: string): string {
    let name: string;
    do {
      name = `${prefix}_${this.counter++}`;
    } while (this.defined.has(name) || this.defined.has(`${name}_out`));
    return name;
  }
}

function valueInfo(name: string, datatype: Datatype, shape: readonly Dim[] | undefined): IValueInfoProto {
  const dims: IDimension[] | undefined = shape?.map((d, axis) => {
    if (typeof d === 'string') return { dimParam: d };
    if (d === -1) return { dimParam: axis === 0 ? 'batch' : `${name}_d${axis}` };
    if (!Number.isInteger(d) || d < 0) throw new Error(`${name}: bad dimension ${d}`);
    return { dimValue: d };
  });
  return {
    name,
    type: {
      tensorType: {
        elemType: ONNX_DATA_TYPE[datatype],
        ...(dims !== undefined ? { shape: { dim: dims } } : {}),
      },
    },
  };
}

function tensorProto<D extends Datatype>(
  name: string,
  datatype: D,
  dims: readonly number[],
  data: TensorArray<D>,
): ITensorProto {
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`initializer '${name}': bad dimension ${d}`);
  }
  const expected = elementCount(dims);
  if (data.length !== expected) {
    throw new Error(`initializer '${name}': ${data.length} elements for dims [${dims.join(', ')}]`);
  }
  const base: ITensorProto = { name, dims: [...dims], dataType: ONNX_DATA_TYPE[datatype] };
  if (isStringArray(data)) {
    if (datatype !== 'BYTES') throw new Error(`initializer '${name}': strings given for ${datatype}`);
    const encoder = new TextEncoder();
    return { ...base, stringData: data.map((s) => encoder.encode(s)) };
  }
  if (datatype === 'BYTES') throw new Error(`initializer '${name}': BYTES data must be a string array`);
  const ctor = ARRAY_CTORS[datatype as Exclude<Datatype, 'BYTES'>];
  if (!(data instanceof ctor)) {
    throw new Error(`initializer '${name}': ${datatype} data must be a ${ctor.name}, got ${data.constructor.name}`);
  }
  if (datatype === 'BOOL' && data instanceof Uint8Array && data.some((v) => v !== 0 && v !== 1)) {
    throw new Error(`initializer '${name}': BOOL data must be 0 or 1`);
  }
  // A Buffer view (no copy): protobufjs copies it straight into the output buffer.
  return { ...base, rawData: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
}

function isStringArray(data: TensorArray<Datatype>): data is readonly string[] {
  return Array.isArray(data);
}

function encodeAttribute(name: string, value: AttrValue): IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') {
    return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: T.INT, i: value } : { name, type: T.FLOAT, f: value };
  }
  if (isFloatAttr(value)) return { name, type: T.FLOAT, f: value.value };
  if (isFloatsAttr(value)) return { name, type: T.FLOATS, floats: [...value.value] };
  return value.every((v) => Number.isInteger(v))
    ? { name, type: T.INTS, ints: [...value] }
    : { name, type: T.FLOATS, floats: [...value] };
}

function isFloatAttr(value: AttrValue): value is FloatAttr {
  return typeof value === 'object' && !Array.isArray(value) && (value as FloatAttr).kind === 'float';
}

function isFloatsAttr(value: AttrValue): value is FloatsAttr {
  return typeof value === 'object' && !Array.isArray(value) && (value as FloatsAttr).kind === 'floats';
}
