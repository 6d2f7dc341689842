/**
 * V2 JSON request bodies, built once per cell and reused: the load generator sends the same
 * few Buffers over and over, so its own cost per request stays small and constant.
 *
 * Values are seeded uniform numbers in the model's input range written with 4 decimals
 * (e.g. `-0.4821`), ~7 bytes a value: what a client that rounds its floats sends. Clients
 * that `JSON.stringify` raw float32 values send ~2.5x more bytes (and the server parses more).
 */
import type { BenchModel } from './models.js';

/** mulberry32: a small seeded PRNG, floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function itemElements(model: BenchModel): number {
  return model.itemShape.reduce((a, b) => a * b, 1);
}

/** `count` values of the model's input range, rounded to 4 decimals. */
export function inputValues(model: BenchModel, count: number, seed: number): number[] {
  const random = seededRandom(seed);
  const [low, high] = model.valueRange;
  const values = new Array<number>(count);
  for (let i = 0; i < count; i++) values[i] = Math.round((low + random() * (high - low)) * 1e4) / 1e4;
  return values;
}

/** `variants` distinct V2 inference request bodies of `rows` items each (flat data). */
export function requestBodies(model: BenchModel, rows = 1, variants = 4): Buffer[] {
  return Array.from({ length: variants }, (_, v) => {
    const data = inputValues(model, rows * itemElements(model), 1000 + v);
    const body = { inputs: [{ name: model.input, shape: [rows, ...model.itemShape], datatype: 'FP32', data }] };
    return Buffer.from(JSON.stringify(body));
  });
}

/**
 * Bodies in the V2 binary tensor data extension (Triton's): a JSON header naming
 * `binary_data_size`, then the raw little-endian float32 bytes. Send with the header
 * `Inference-Header-Content-Length: <headerLength>` (the same for every variant).
 * `binaryOutputs` also asks for the outputs as raw bytes (`parameters.binary_data_output`,
 * what Triton's client does by default); otherwise they come back as JSON.
 */
export function binaryRequestBodies(model: BenchModel, rows = 1, variants = 4, binaryOutputs = false): { bodies: Buffer[]; headerLength: number } {
  const elements = rows * itemElements(model);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: model.input, shape: [rows, ...model.itemShape], datatype: 'FP32', parameters: { binary_data_size: elements * 4 } }],
      ...(binaryOutputs ? { parameters: { binary_data_output: true } } : {}),
    }),
  );
  const bodies = Array.from({ length: variants }, (_, v) => {
    const data = Float32Array.from(inputValues(model, elements, 1000 + v));
    return Buffer.concat([header, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
  });
  return { bodies, headerLength: header.length };
}
