import { setTimeout as sleep } from 'node:timers/promises';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { DATA_TYPES, isNumericDataType, type NumericArray } from '../../core/datatype.js';
import { TesseraError } from '../../core/errors.js';
import type { Tensor } from '../../core/tensor.js';
import { describeIssues } from '../../config/model-config.js';
import type { Backend, BackendInstance, BackendModel, BackendModelSpec, ExecutionResult } from '../backend.js';

/**
 * A deterministic backend for tests and demos: a `model.json` declares inputs and outputs;
 * each output is a copy of one input plus a constant, after an optional delay. No runtime,
 * no threads: it makes scheduler and protocol behaviour testable without onnxruntime.
 */

const tensorSpec = z.strictObject({
  name: z.string().min(1),
  datatype: z.enum(DATA_TYPES),
  shape: z.array(z.number().int().min(-1)),
});

const fakeModelSchema = z.strictObject({
  inputs: z.array(tensorSpec).min(1),
  outputs: z.array(tensorSpec.extend({ copy_of: z.string(), add: z.number().default(0) })).min(1),
  /** Milliseconds each execution takes (timer-based: the event loop stays free). */
  delay_ms: z.number().min(0).default(0),
  /** Executions whose first input's first element equals this value fail. */
  fail_on_value: z.number().optional(),
});

export type FakeModelDefinition = z.input<typeof fakeModelSchema>;
type FakeModel = z.output<typeof fakeModelSchema>;

export class FakeBackend implements Backend {
  readonly name = 'fake';
  readonly defaultModelFilename = 'model.json';

  async load(spec: BackendModelSpec): Promise<BackendModel> {
    let text: string;
    try {
      text = await readFile(spec.modelPath, 'utf8');
    } catch {
      throw new TesseraError('MODEL_LOAD_FAILED', `model file not found: ${spec.modelPath}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new TesseraError('MODEL_LOAD_FAILED', `${spec.modelPath} is not valid JSON: ${(error as Error).message}`);
    }
    const parsed = fakeModelSchema.safeParse(json);
    if (!parsed.success) throw new TesseraError('MODEL_LOAD_FAILED', `${spec.modelPath}: ${describeIssues(parsed.error)}`);
    const model = parsed.data;
    for (const output of model.outputs) {
      if (!model.inputs.some((input) => input.name === output.copy_of)) {
        throw new TesseraError('MODEL_LOAD_FAILED', `${spec.modelPath}: output '${output.name}' copies unknown input '${output.copy_of}'`);
      }
    }
    // Closing ends executions still running (their delay), as an instance whose worker stops would.
    const closed = new AbortController();
    const instances = Array.from({ length: spec.instanceCount }, (_, index) => new FakeInstance(index, model, closed.signal));
    return {
      inputs: model.inputs,
      outputs: model.outputs.map(({ name, datatype, shape }) => ({ name, datatype, shape })),
      instances,
      close: async () => {
        closed.abort();
      },
    };
  }
}

class FakeInstance implements BackendInstance {
  constructor(
    readonly index: number,
    private readonly model: FakeModel,
    private readonly closed: AbortSignal,
  ) {}

  async execute(inputs: readonly Tensor[], outputNames: readonly string[]): Promise<ExecutionResult> {
    if (this.closed.aborted) throw new TesseraError('MODEL_UNAVAILABLE', `model instance ${this.index} was closed`);
    const started = process.hrtime.bigint();
    if (this.model.delay_ms > 0) {
      await sleep(this.model.delay_ms, undefined, { signal: this.closed }).catch(() => {
        throw new TesseraError('MODEL_UNAVAILABLE', `model instance ${this.index} was closed while running the batch`);
      });
    }
    const first = inputs[0];
    if (this.model.fail_on_value !== undefined && first !== undefined && isNumericDataType(first.datatype)) {
      if (Number(first.data[0]) === this.model.fail_on_value) {
        throw new TesseraError('INFERENCE_FAILED', `the fake model fails on value ${this.model.fail_on_value}`);
      }
    }
    const outputs = outputNames.map((name) => {
      const spec = this.model.outputs.find((output) => output.name === name);
      const source = inputs.find((input) => input.name === spec?.copy_of);
      if (spec === undefined || source === undefined) throw new TesseraError('INFERENCE_FAILED', `the fake model cannot produce '${name}'`);
      return copyPlus(source, spec.name, spec.add);
    });
    const inferNs = Number(process.hrtime.bigint() - started);
    return { outputs, timings: { inputNs: 0, inferNs, outputNs: 0 } };
  }
}

function copyPlus(source: Tensor, name: string, add: number): Tensor {
  if (source.datatype === 'BYTES') return { name, datatype: 'BYTES', shape: source.shape, data: source.data.slice() };
  const data = source.data.slice() as NumericArray;
  if (add !== 0) {
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
      const delta = BigInt(Math.trunc(add));
      for (let i = 0; i < data.length; i++) data[i] = data[i]! + delta;
    } else {
      for (let i = 0; i < data.length; i++) data[i] = data[i]! + add;
    }
  }
  return { name, datatype: source.datatype, shape: source.shape, data } as Tensor;
}
