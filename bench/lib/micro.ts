/**
 * Hot-path micro-measurements, in this process with nothing else running: what the server's
 * main thread spends per request on JSON decoding (parse + typed-array conversion, the
 * server's own functions) and response encoding, and what one round trip through a session
 * worker thread costs on top of `session.run` (the server's SessionInstance against the raw
 * run time measured by the raw baseline).
 */
import { sessionSettings } from '../../src/backends/onnx/settings.js';
import { SessionInstance } from '../../src/backends/onnx/session-instance.js';
import type { Tensor } from '../../src/core/tensor.js';
import { decodeInferenceRequest } from '../../src/protocols/http/v2/decode.js';
import { encodeInferenceResponse } from '../../src/protocols/http/v2/encode.js';
import { splitRequestBody } from '../../src/protocols/http/v2/binary.js';
import type { BenchModel } from './models.js';
import { itemElements, seededRandom } from './payloads.js';
import { percentile } from './stats.js';

export interface MicroResult {
  readonly model: string;
  readonly bodyBytes: number;
  /** JSON.parse + V2 decode into typed arrays (Tessera), µs per request (median of rounds). */
  readonly decodeUs: number;
  /** JSON.parse + Float32Array.from (the tutorial's way), µs per request. */
  readonly tutorialDecodeUs: number;
  /** V2 response encoding of one item's output, µs. */
  readonly encodeUs: number;
  /** SessionInstance.execute at batch 1 (worker thread round trip + run), median µs; NaN if skipped. */
  readonly workerRunUs: number;
  /** Output elements per item (for the encode figure). */
  readonly outputElements: number;
}

/** Median per-call µs of `fn` over rounds of `perRound` calls, bounded by `budgetMs`. */
function timeIt(fn: () => void, budgetMs: number, perRound: number): number {
  for (let i = 0; i < Math.min(perRound, 20); i++) fn();
  const rounds: number[] = [];
  const start = performance.now();
  while (rounds.length < 200 && (rounds.length < 3 || performance.now() - start < budgetMs)) {
    const t0 = performance.now();
    for (let i = 0; i < perRound; i++) fn();
    rounds.push(((performance.now() - t0) * 1000) / perRound);
  }
  rounds.sort((a, b) => a - b);
  return percentile(rounds, 0.5);
}

async function workerRoundTrip(model: BenchModel, budgetMs: number): Promise<number> {
  const { instance } = await SessionInstance.start(0, model.file, sessionSettings({}, 1));
  try {
    const random = seededRandom(3);
    const template = new Float32Array(itemElements(model));
    for (let i = 0; i < template.length; i++) template[i] = random() * 2 - 1;
    const inputs = (): Tensor[] => [{ name: model.input, datatype: 'FP32', shape: [1, ...model.itemShape], data: template.slice() }];
    for (let i = 0; i < 50; i++) await instance.execute(inputs(), [model.output]);
    const times: number[] = [];
    const start = performance.now();
    while (times.length < 20_000 && (times.length < 20 || performance.now() - start < budgetMs)) {
      const t0 = performance.now();
      await instance.execute(inputs(), [model.output]);
      times.push((performance.now() - t0) * 1000);
    }
    times.sort((a, b) => a - b);
    return percentile(times, 0.5);
  } finally {
    await instance.close();
  }
}

export async function measureMicro(model: BenchModel, body: Buffer, budgetMs: number): Promise<MicroResult> {
  const perRound = body.length > 100_000 ? 1 : 50;
  const decodeUs = timeIt(() => {
    decodeInferenceRequest(splitRequestBody(body, undefined).json, { model: model.name });
  }, budgetMs, perRound);
  const tutorialDecodeUs = timeIt(() => {
    const parsed = JSON.parse(body.toString('utf8')) as { inputs: { data: number[] }[] };
    Float32Array.from(parsed.inputs[0]!.data);
  }, budgetMs, perRound);
  const outputElements = model.outputElements;
  const random = seededRandom(5);
  const out = new Float32Array(outputElements);
  for (let i = 0; i < out.length; i++) out[i] = random();
  const encodeUs = timeIt(() => {
    encodeInferenceResponse({ model: model.name, version: '1', outputs: [{ name: model.output, datatype: 'FP32', shape: [1, outputElements], data: out }] });
  }, budgetMs, 50);
  // ResNet's run time (~10-20 ms) hides the round trip; measure it where it matters.
  const workerRunUs = model.key === 'resnet' ? Number.NaN : await workerRoundTrip(model, budgetMs);
  return { model: model.key, bodyBytes: body.length, decodeUs, tutorialDecodeUs, encodeUs, workerRunUs, outputElements };
}
