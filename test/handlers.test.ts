import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { TesseraError, type ErrorCode } from '../src/core/errors.js';
import { fromHalfBits } from '../src/core/float16.js';
import type { Tensor, TensorSpec } from '../src/core/tensor.js';
import type { HandlerModelInfo, HandlerRequest } from '../src/backends/handlers/handler.js';
import { createHandler, handlerAnswerJson, loadCustomHandler, OrderedObject, resolveHandlerKind, validateHandlerOptions } from '../src/backends/handlers/index.js';
import { ImageHandler, topK } from '../src/backends/handlers/image.js';
import { TabularHandler } from '../src/backends/handlers/tabular.js';
import { defaultMlpWeights, identityModel, mlpModel, mlpReference } from './support/fixtures.js';
import { GraphBuilder } from './support/onnx-builder.js';

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function model(inputs: TensorSpec[], options: Record<string, unknown> = {}, extra: Partial<HandlerModelInfo> = {}): HandlerModelInfo {
  return {
    name: 'm',
    version: '1',
    inputs,
    outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 3] }],
    maxBatchSize: 8,
    labels: undefined,
    options,
    ...extra,
  };
}

function files(...images: Buffer[]): HandlerRequest {
  return { files: images.map((data, i) => ({ fieldName: 'data', filename: `img${i}.png`, contentType: 'image/png', data })), fields: {} };
}

function body(json: unknown): HandlerRequest {
  return { files: [{ fieldName: 'body', filename: undefined, contentType: 'application/json', data: Buffer.from(JSON.stringify(json)) }], fields: {} };
}

/** `action` is a promise, or a function to call (for synchronous throws). */
async function rejectsWith(action: unknown, code: ErrorCode, pattern?: RegExp): Promise<TesseraError> {
  let caught: unknown;
  try {
    await (typeof action === 'function' ? (action as () => unknown)() : action);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof TesseraError, `expected a TesseraError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (pattern !== undefined) assert.match(caught.message, pattern);
  return caught;
}

function approx(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} is not within ${tolerance} of ${expected}`);
}

const RED = [255, 0, 0];
const GREEN = [0, 255, 0];
const BLUE = [0, 0, 255];

/** width x height raw RGB image of vertical stripes, `stripe` pixels wide each: red, green, blue, red, ... */
function stripes(width: number, height: number, stripe: number): Buffer {
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const colour = [RED, GREEN, BLUE][Math.floor(x / stripe) % 3]!;
      pixels.set(colour, (y * width + x) * 3);
    }
  }
  return pixels;
}

async function png(raw: Buffer, width: number, height: number, channels: 1 | 3 | 4 = 3): Promise<Buffer> {
  return sharp(raw, { raw: { width, height, channels } }).png().toBuffer();
}

async function jpeg(raw: Buffer, width: number, height: number): Promise<Buffer> {
  return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer();
}

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** ImageNet-normalised value of 0..255 `pixel` in channel `c` (RGB order). */
function normalised(pixel: number, c: number): number {
  return (pixel / 255 - MEAN[c]!) / STD[c]!;
}

// ---------------------------------------------------------------------------
// Image handler
// ---------------------------------------------------------------------------

describe('image handler', () => {
  // 6 x 4 image, 2-pixel stripes: x 0-1 red, 2-3 green, 4-5 blue.
  const W = 6;
  const H = 4;
  let stripedPng: Buffer;
  let stripedJpeg: Buffer;
  const imagenet = { mean: MEAN, std: STD };

  before(async () => {
    stripedPng = await png(stripes(W, H, 2), W, H);
    stripedJpeg = await jpeg(stripes(48, 32, 16), 48, 32);
  });

  test('PNG to NCHW FP32: exact ImageNet-normalised values at known pixels', async () => {
    const info = model([{ name: 'image', datatype: 'FP32', shape: [-1, 3, H, W] }], imagenet);
    const { inputs } = await new ImageHandler().preprocess(files(stripedPng), info);
    const [tensor] = inputs;
    assert.ok(tensor !== undefined && tensor.datatype === 'FP32');
    assert.deepEqual(tensor.shape, [1, 3, H, W]);
    const at = (c: number, y: number, x: number): number => tensor.data[c * H * W + y * W + x]!;
    for (const [x, colour] of [[0, RED], [3, GREEN], [5, BLUE]] as const) {
      for (let c = 0; c < 3; c++) approx(at(c, 2, x), normalised(colour[c]!, c), 1e-6, `x=${x} c=${c}`);
    }
    assert.equal(at(0, 0, 0), Math.fround(normalised(255, 0)));
  });

  test('NHWC layout (inferred from the shape) and BGR channel order', async () => {
    const nhwc = model([{ name: 'image', datatype: 'FP32', shape: [-1, H, W, 3] }], imagenet);
    const { inputs } = await new ImageHandler().preprocess(files(stripedPng), nhwc);
    const tensor = inputs[0]!;
    assert.deepEqual(tensor.shape, [1, H, W, 3]);
    const at = (y: number, x: number, c: number): number => (tensor.data as Float32Array)[(y * W + x) * 3 + c]!;
    for (let c = 0; c < 3; c++) approx(at(1, 2, c), normalised(GREEN[c]!, c), 1e-6, `green c=${c}`);

    // BGR: channel 0 holds blue; mean/std are given in the model's (BGR) order.
    const bgr = model([{ name: 'image', datatype: 'FP32', shape: [-1, 3, H, W] }], { channel_order: 'BGR', mean: [0.5], std: [0.5] });
    const out = (await new ImageHandler().preprocess(files(stripedPng), bgr)).inputs[0]!.data as Float32Array;
    const nchw = (c: number, y: number, x: number): number => out[c * H * W + y * W + x]!;
    assert.deepEqual([nchw(0, 0, 0), nchw(1, 0, 0), nchw(2, 0, 0)], [-1, -1, 1], 'red pixel in BGR: B=0, G=0, R=255 -> [-1,1] scale');
    assert.deepEqual([nchw(0, 0, 5), nchw(1, 0, 5), nchw(2, 0, 5)], [1, -1, -1], 'blue pixel in BGR');
  });

  test('JPEG decodes to the same colours (within JPEG error)', async () => {
    const info = model([{ name: 'image', datatype: 'FP32', shape: [-1, 3, 32, 48] }], imagenet);
    const tensor = (await new ImageHandler().preprocess(files(stripedJpeg), info)).inputs[0]!;
    const at = (c: number, y: number, x: number): number => (tensor.data as Float32Array)[c * 32 * 48 + y * 48 + x]!;
    for (const [x, colour] of [[8, RED], [24, GREEN], [40, BLUE]] as const) {
      for (let c = 0; c < 3; c++) approx(at(c, 16, x), normalised(colour[c]!, c), 3 / 255 / STD[c]!, `jpeg x=${x} c=${c}`);
    }
  });

  test('resize shorter side + centre crop, and explicit size, give the configured shapes', async () => {
    // 300 x 200: left half red, right half blue.
    const raw = Buffer.alloc(300 * 200 * 3);
    for (let y = 0; y < 200; y++) for (let x = 0; x < 300; x++) raw.set(x < 150 ? RED : BLUE, (y * 300 + x) * 3);
    const wide = await png(raw, 300, 200);
    const variable: TensorSpec = { name: 'image', datatype: 'FP32', shape: [-1, 3, -1, -1] };

    const cropped = (await new ImageHandler().preprocess(files(wide), model([variable], { resize: 100, center_crop: [80, 120] }))).inputs[0]!;
    assert.deepEqual(cropped.shape, [1, 3, 80, 120]);
    const c = (ch: number, y: number, x: number): number => (cropped.data as Float32Array)[ch * 80 * 120 + y * 120 + x]!;
    // Resized to 150 x 100, cropped to the centre 120 x 80: x 15..134 of the resized image.
    approx(c(0, 40, 5), 1, 1e-6, 'left is red');
    approx(c(2, 40, 5), 0, 1e-6, 'left has no blue');
    approx(c(2, 40, 114), 1, 1e-6, 'right is blue');

    const sized = (await new ImageHandler().preprocess(files(wide), model([variable], { size: [64, 32] }))).inputs[0]!;
    assert.deepEqual(sized.shape, [1, 3, 64, 32]);

    // A crop larger than the image is padded with black, as torchvision does.
    const small = await png(stripes(6, 4, 2), 6, 4);
    const padded = (await new ImageHandler().preprocess(files(small), model([{ name: 'image', datatype: 'FP32', shape: [-1, 3, 8, 10] }], { center_crop: [8, 10] }))).inputs[0]!;
    const p = (ch: number, y: number, x: number): number => (padded.data as Float32Array)[ch * 80 + y * 10 + x]!;
    assert.deepEqual([p(0, 0, 0), p(1, 0, 0), p(2, 0, 0)], [0, 0, 0], 'corner is padding');
    assert.equal(p(0, 2, 2), 1, 'the image starts at (2, 2): red');

    // Odd differences: offsets round half to even, like torchvision (Python's round).
    // A 9-wide image cropped to 4: (9 - 4) / 2 = 2.5 -> 2 (not 3), so columns 2..5 are kept.
    const nine = Buffer.alloc(9 * 2 * 3);
    for (let x = 0; x < 9; x++) for (let y = 0; y < 2; y++) nine[(y * 9 + x) * 3] = x * 10;
    const crop = (await new ImageHandler().preprocess(files(await png(nine, 9, 2)), model([{ name: 'image', datatype: 'UINT8', shape: [-1, 3, 2, 4] }], { center_crop: [2, 4] }))).inputs[0]!;
    assert.deepEqual([...(crop.data as Uint8Array).subarray(0, 4)], [20, 30, 40, 50]);
  });

  test('the model input fixes the size when no option does', async () => {
    const big = await png(stripes(60, 40, 20), 60, 40);
    const tensor = (await new ImageHandler().preprocess(files(big), model([{ name: 'image', datatype: 'FP32', shape: [-1, 3, 4, 6] }]))).inputs[0]!;
    assert.deepEqual(tensor.shape, [1, 3, 4, 6]);
    assert.equal((tensor.data as Float32Array)[0], 1, 'no mean/std: pixels scaled to [0, 1]');
  });

  test('several files make one batch', async () => {
    const blue = await png(Buffer.from(Array.from({ length: W * H }, () => BLUE).flat()), W, H);
    const { inputs, context } = await new ImageHandler().preprocess(files(stripedPng, blue, stripedPng), model([{ name: 'image', datatype: 'FP32', shape: [-1, 3, H, W] }]));
    const tensor = inputs[0]!;
    assert.deepEqual(tensor.shape, [3, 3, H, W]);
    const per = 3 * H * W;
    assert.equal(tensor.data[0], 1, 'image 0 starts red');
    assert.equal(tensor.data[per], 0, 'image 1 has no red');
    assert.equal(tensor.data[per + 2 * H * W], 1, 'image 1 is blue');
    assert.deepEqual(context, { count: 3, filenames: ['img0.png', 'img1.png', 'img2.png'] });
  });

  test('FP16, UINT8 and greyscale inputs', async () => {
    const half = (await new ImageHandler().preprocess(files(stripedPng), model([{ name: 'image', datatype: 'FP16', shape: [-1, 3, H, W] }], imagenet))).inputs[0]!;
    assert.equal(half.datatype, 'FP16');
    approx(fromHalfBits((half.data as Uint16Array)[0]!), normalised(255, 0), 2e-3, 'half red');

    const bytes = (await new ImageHandler().preprocess(files(stripedPng), model([{ name: 'image', datatype: 'UINT8', shape: [-1, H, W, 3] }]))).inputs[0]!;
    assert.equal(bytes.datatype, 'UINT8');
    assert.deepEqual([...(bytes.data as Uint8Array).subarray(0, 9)], [255, 0, 0, 255, 0, 0, 0, 255, 0]);

    const grey = (await new ImageHandler().preprocess(files(stripedPng), model([{ name: 'image', datatype: 'FP32', shape: [-1, 1, H, W] }]))).inputs[0]!;
    assert.deepEqual(grey.shape, [1, 1, H, W]);
    const [red, green, blue] = [0, 2, 4].map((x) => (grey.data as Float32Array)[x]!);
    assert.ok(green! > red! && red! > blue! && blue! > 0, `luma order green > red > blue: ${[red, green, blue].join(', ')}`);

    // An RGBA PNG loses its alpha channel.
    const rgba = Buffer.alloc(W * H * 4, 0);
    for (let i = 0; i < W * H; i++) rgba.set([0, 0, 255, 128], i * 4);
    const noAlpha = (await new ImageHandler().preprocess(files(await png(rgba, W, H, 4)), model([{ name: 'image', datatype: 'UINT8', shape: [-1, 3, H, W] }]))).inputs[0]!;
    assert.deepEqual([noAlpha.data[0], noAlpha.data[H * W], noAlpha.data[2 * H * W]], [0, 0, 255]);
  });

  test('models without a batch dimension take exactly their image count', async () => {
    const single = model([{ name: 'image', datatype: 'FP32', shape: [3, H, W] }], {}, { maxBatchSize: 0 });
    assert.deepEqual((await new ImageHandler().preprocess(files(stripedPng), single)).inputs[0]!.shape, [3, H, W]);
    await rejectsWith(new ImageHandler().preprocess(files(stripedPng, stripedPng), single), 'BATCH_TOO_LARGE', /takes exactly 1/);
    const densenet = model([{ name: 'data_0', datatype: 'FP32', shape: [1, 3, H, W] }], {}, { maxBatchSize: 0 });
    assert.deepEqual((await new ImageHandler().preprocess(files(stripedPng), densenet)).inputs[0]!.shape, [1, 3, H, W]);
  });

  test('client errors: undecodable data, too many images, no image', async () => {
    const info = model([{ name: 'image', datatype: 'FP32', shape: [-1, 3, H, W] }], {}, { maxBatchSize: 2 });
    const error = await rejectsWith(new ImageHandler().preprocess(files(Buffer.from('definitely not an image')), info), 'INVALID_INPUT_DATA', /^image 0 \('img0\.png'\) cannot be decoded: /);
    assert.equal(error.category, 'invalid_argument');
    await rejectsWith(new ImageHandler().preprocess(files(stripedPng, stripedPng, stripedPng), info), 'BATCH_TOO_LARGE', /holds 3 images; model 'm' takes at most 2/);
    await rejectsWith(new ImageHandler().preprocess({ files: [], fields: {} }, info), 'INVALID_INPUT_DATA', /no image/);
    // Different sizes after resizing cannot share a batch.
    const other = await png(stripes(8, 4, 2), 8, 4);
    await rejectsWith(new ImageHandler().preprocess(files(stripedPng, other), model([{ name: 'image', datatype: 'FP32', shape: [-1, 3, -1, -1] }], { resize: 4 })), 'INVALID_INPUT_DATA', /image 1 is 4x8 after resizing but image 0 is 4x6/);
  });

  test('configuration errors name the option', async () => {
    const spec: TensorSpec = { name: 'image', datatype: 'FP32', shape: [-1, 3, 224, 224] };
    const cases: [Record<string, unknown>, TensorSpec, RegExp][] = [
      [{ colour: 'RGB' }, spec, /invalid handler_options: Unrecognized key: "colour"/],
      [{ size: [100, 100] }, spec, /takes 224x224 images but handler_options make 100x100/],
      [{ mean: [0.5, 0.5] }, spec, /handler_options\.mean has 2 values for 3 channel\(s\)/],
      [{ resize: 256 }, spec, /add handler_options\.center_crop after resize/],
      [{}, { ...spec, shape: [-1, 3, -1, -1] }, /variable height or width .* set handler_options\.size/],
      [{}, { ...spec, datatype: 'INT64' }, /is INT64; the image handler fills FP32, FP16, FP64 or UINT8 inputs/],
      [{}, { ...spec, shape: [-1, 5, 224, 224] }, /has 5 channels in NCHW layout/],
      [{ mean: [1] }, { ...spec, datatype: 'UINT8' }, /UINT8: it takes raw 0\.\.255 pixels/],
      [{ std: [0] }, spec, /std must not be 0/],
    ];
    for (const [options, input, pattern] of cases) {
      await rejectsWith(new ImageHandler().preprocess(files(stripedPng), model([input], options)), 'INVALID_MODEL_CONFIG', pattern);
    }
    assert.throws(() => validateHandlerOptions('image', { top_k: 0 }), /top_k/);
    validateHandlerOptions('image', { size: [224, 224], mean: MEAN, std: STD });
  });

  test('postprocess: top-k per image with labels, softmax only when needed', () => {
    const labels = ['cat', 'dog', 'bird', 'fish', 'frog', 'ant', 'bee'];
    const info = model([{ name: 'image', datatype: 'FP32', shape: [-1, 3, 2, 2] }], {}, { labels });
    const probs: Tensor = { name: 'y', datatype: 'FP32', shape: [1, 7], data: Float32Array.from([0.05, 0.5, 0.1, 0.05, 0.2, 0.04, 0.06]) };
    const one = new ImageHandler().postprocess([probs], info, { count: 1 }) as OrderedObject;
    assert.deepEqual(one.keys(), ['dog', 'frog', 'bird', 'bee', 'cat'], 'top 5, highest first');
    approx(one.get('dog') as number, 0.5, 1e-6, 'probabilities are kept when they sum to 1');
    assert.deepEqual(Object.keys(JSON.parse(JSON.stringify(one)) as object), ['dog', 'frog', 'bird', 'bee', 'cat'], 'plain JSON.stringify works too');

    const logits: Tensor = { name: 'y', datatype: 'FP32', shape: [2, 3], data: Float32Array.from([2, 1, 0, -1, 0, 3]) };
    const two = new ImageHandler().postprocess([logits], model([], { top_k: 2 }, { labels: ['a', 'b', 'c'] }), { count: 2 }) as OrderedObject[];
    assert.equal(two.length, 2);
    const e = [Math.exp(2), Math.exp(1), Math.exp(0)];
    approx(two[0]!.get('a') as number, e[0]! / (e[0]! + e[1]! + e[2]!), 1e-9, 'softmax of logits');
    assert.deepEqual(two[1]!.keys(), ['c', 'b']);

    // No labels: indices as strings, which a plain JS object would reorder; handlerAnswerJson keeps the order.
    const indexed = topK([0.1, 0.2, 0.7], { top_k: 3, apply_softmax: undefined, output_format: 'dict' }, undefined);
    assert.equal(handlerAnswerJson([indexed]), '[{"2":0.7,"1":0.2,"0":0.1}]');
    assert.equal(handlerAnswerJson({ a: [1, undefined], b: undefined, c: new OrderedObject([['10', 1], ['9', null]]) }), '{"a":[1,null],"c":{"10":1,"9":null}}');
    // Repeated labels are listed once, at their best score, and still fill top_k.
    assert.deepEqual((topK([0.4, 0.3, 0.2, 0.1], { top_k: 2, apply_softmax: false, output_format: 'dict' }, ['x', 'x', 'y', 'z']) as OrderedObject).keys(), ['x', 'y']);

    // Forced softmax; the list format carries the index explicitly.
    const list = topK([0.1, 0.3, 0.6], { top_k: 3, apply_softmax: true, output_format: 'list' }, undefined) as { label: string; index: number; probability: number }[];
    assert.deepEqual(list.map((r) => [r.label, r.index]), [['2', 2], ['1', 1], ['0', 0]]);
    approx(list.reduce((s, r) => s + r.probability, 0), 1, 1e-9, 'softmaxed');
    assert.equal(handlerAnswerJson(topK([3, 1, 2], { top_k: 2, apply_softmax: false, output_format: 'dict' }, undefined)), '{"0":3,"2":2}');
  });

  test('end to end: PNG -> handler -> onnxruntime -> top-k', async () => {
    // Identity model: the tensor the handler made comes back unchanged.
    const identity = await ort.InferenceSession.create(identityModel('FP32', [-1, 3, H, W]));
    const info = model([{ name: 'x', datatype: 'FP32', shape: [-1, 3, H, W] }], imagenet);
    const tensor = (await new ImageHandler().preprocess(files(stripedPng, stripedPng), info)).inputs[0]!;
    const result = await identity.run({ x: new ort.Tensor('float32', tensor.data as Float32Array, [...tensor.shape]) });
    assert.deepEqual(result['y']!.data, tensor.data);
    await identity.release();

    // A "colour classifier": mean of each channel, times 10, as logits.
    const g = new GraphBuilder('colour');
    const x = g.input('image', 'FP32', [-1, 3, H, W]);
    const mean = g.node('ReduceMean', [x], { axes: [2, 3], keepdims: 0 });
    g.output(g.node('Mul', [mean, g.constant('FP32', [], new Float32Array([10]))]), 'FP32', [-1, 3], 'logits');
    const session = await ort.InferenceSession.create(g.build());
    const classifier = model([{ name: 'image', datatype: 'FP32', shape: [-1, 3, H, W] }], { top_k: 1 }, { labels: ['red', 'green', 'blue'], outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 3] }] });
    const reddish = Buffer.alloc(W * H * 3);
    for (let i = 0; i < W * H; i++) reddish.set(i % 3 === 0 ? GREEN : RED, i * 3);
    const handler = await createHandler('image', '/nonexistent');
    const { inputs, context } = await handler.preprocess(files(await png(reddish, W, H), await jpeg(Buffer.from(Array.from({ length: W * H }, () => BLUE).flat()), W, H)), classifier);
    const image = inputs[0]!;
    const out = await session.run({ image: new ort.Tensor('float32', image.data as Float32Array, [...image.shape]) });
    const logits = out['logits']!;
    const answer = await handler.postprocess([{ name: 'logits', datatype: 'FP32', shape: logits.dims, data: logits.data as Float32Array }], classifier, context);
    assert.deepEqual(JSON.parse(handlerAnswerJson(answer)), [{ red: (answer as OrderedObject[])[0]!.get('red') }, { blue: (answer as OrderedObject[])[1]!.get('blue') }]);
    assert.ok(((answer as OrderedObject[])[0]!.get('red') as number) > 0.5);
    await session.release();
  });
});

// ---------------------------------------------------------------------------
// Tabular handler
// ---------------------------------------------------------------------------

describe('tabular handler', () => {
  const FEATURES = ['sepal_length', 'sepal_width', 'petal_length', 'petal_width'];
  const IRIS = ['setosa', 'versicolor', 'virginica'];
  const irisModel = (options: Record<string, unknown> = { feature_order: FEATURES }): HandlerModelInfo =>
    model([{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], options, { labels: IRIS, outputs: [{ name: 'probs', datatype: 'FP32', shape: [-1, 3] }] });
  const records = [
    { sepal_length: 5.1, sepal_width: 3.5, petal_length: 1.4, petal_width: 0.2 },
    { petal_width: 1.8, petal_length: 5.9, sepal_width: 3.0, sepal_length: 6.8 }, // keys in another order
  ];

  test('records by feature name become one [rows, features] tensor in feature_order', () => {
    const { inputs, context } = new TabularHandler().preprocess(body({ instances: records }), irisModel());
    const tensor = inputs[0]!;
    assert.equal(tensor.name, 'x');
    assert.deepEqual(tensor.shape, [2, 4]);
    assert.deepEqual([...(tensor.data as Float32Array)], [5.1, 3.5, 1.4, 0.2, 6.8, 3.0, 5.9, 1.8].map(Math.fround));
    assert.deepEqual(context, { rows: 2 });
    // A list of records and a single record work too.
    assert.deepEqual(new TabularHandler().preprocess(body(records), irisModel()).inputs[0]!.shape, [2, 4]);
    assert.deepEqual(new TabularHandler().preprocess(body(records[0]), irisModel()).inputs[0]!.shape, [1, 4]);
  });

  test('end to end through onnxruntime: prediction, label and probabilities per row', async () => {
    const weights = defaultMlpWeights();
    const session = await ort.InferenceSession.create(mlpModel(weights));
    const handler = await createHandler('tabular', '/nonexistent');
    const info = irisModel();
    const { inputs, context } = await handler.preprocess(body({ instances: records }), info);
    const x = inputs[0]!;
    const out = (await session.run({ x: new ort.Tensor('float32', x.data as Float32Array, [...x.shape]) }))['probs']!;
    const answer = (await handler.postprocess([{ name: 'probs', datatype: 'FP32', shape: out.dims, data: out.data as Float32Array }], info, context)) as {
      predictions: { prediction: number; label: string; probabilities: number[] }[];
    };
    const expected = mlpReference(weights, [5.1, 3.5, 1.4, 0.2, 6.8, 3.0, 5.9, 1.8]);
    assert.equal(answer.predictions.length, 2);
    for (const [r, row] of answer.predictions.entries()) {
      const reference = [...expected.subarray(r * 3, r * 3 + 3)];
      row.probabilities.forEach((p, i) => approx(p, reference[i]!, 1e-5, `row ${r} class ${i}`));
      const best = reference.indexOf(Math.max(...reference));
      assert.equal(row.prediction, best);
      assert.equal(row.label, IRIS[best]);
    }
    await session.release();
  });

  test('missing and extra features are 400s naming them', async () => {
    const handler = new TabularHandler();
    const missing = await rejectsWith(() => handler.preprocess(body([records[0], { sepal_length: 1, sepal_width: 2, petal_length: 3 }]), irisModel()), 'INVALID_INPUT_DATA');
    assert.equal(missing.message, "record 1: missing feature 'petal_width' (the model takes 'sepal_length', 'sepal_width', 'petal_length', 'petal_width')");
    assert.equal(missing.category, 'invalid_argument');
    const both = await rejectsWith(() => handler.preprocess(body({ sepal_length: 1, sepal_width: 2, colour: 'blue', size: 3 }), irisModel()), 'INVALID_INPUT_DATA');
    assert.equal(both.message, "record 0: missing features 'petal_length', 'petal_width'; unknown features 'colour', 'size' (the model takes 'sepal_length', 'sepal_width', 'petal_length', 'petal_width')");
    await rejectsWith(() => handler.preprocess(body({ ...records[0], petal_width: 'wide' }), irisModel()), 'INVALID_INPUT_DATA', /^record 0, feature 'petal_width': expected a number, got string "wide"$/);
    await rejectsWith(() => handler.preprocess(body({ ...records[0], petal_width: null }), irisModel()), 'INVALID_INPUT_DATA', /got null/);
    await rejectsWith(() => handler.preprocess(body({ instances: [] }), irisModel()), 'INVALID_INPUT_DATA', /no records/);
    await rejectsWith(() => handler.preprocess(body([records[0], [1, 2, 3, 4]]), irisModel()), 'INVALID_INPUT_DATA', /not a mix/);
    await rejectsWith(() => handler.preprocess(body('hello'), irisModel()), 'INVALID_REQUEST', /body is string "hello"/);
    await rejectsWith(() => handler.preprocess({ files: [{ fieldName: 'b', filename: undefined, contentType: undefined, data: Buffer.from('{oops') }], fields: {} }, irisModel()), 'INVALID_REQUEST', /not valid JSON/);
    const big = Array.from({ length: 9 }, () => records[0]);
    await rejectsWith(() => handler.preprocess(body(big), irisModel()), 'BATCH_TOO_LARGE', /holds 9 records; model 'm' takes at most 8/);
  });

  test('without feature_order: an error asking for it, unless records are arrays of the input width', async () => {
    const handler = new TabularHandler();
    const error = await rejectsWith(() => handler.preprocess(body(records), irisModel({})), 'INVALID_MODEL_CONFIG');
    assert.match(error.message, /records by feature name need handler_options\.feature_order, the order of the 4 columns of input 'x' \(e\.g\. feature_order: \[sepal_length, sepal_width, petal_length, petal_width\]\)/);
    const rows = handler.preprocess(body({ instances: [[5.1, 3.5, 1.4, 0.2], [6.8, 3.0, 5.9, 1.8]] }), irisModel({}));
    assert.deepEqual(rows.inputs[0]!.shape, [2, 4]);
    await rejectsWith(() => handler.preprocess(body([[1, 2, 3]]), irisModel({})), 'INVALID_INPUT_DATA', /^record 0 has 3 values; the model takes 4 per record$/);
    await rejectsWith(() => handler.preprocess(body(records), irisModel({ feature_order: ['a', 'b'] })), 'INVALID_MODEL_CONFIG', /takes 4 features per row but handler_options\.feature_order names 2/);
    await rejectsWith(() => handler.preprocess(body(records), model([{ name: 'a', datatype: 'FP32', shape: [-1, 2] }, { name: 'b', datatype: 'FP32', shape: [-1, 2] }], { feature_order: FEATURES })), 'INVALID_MODEL_CONFIG', /several inputs \(a, b\); set handler_options\.input/);
  });

  test('integer inputs are range-checked; INT64 becomes bigint', async () => {
    const info = model([{ name: 'codes', datatype: 'INT64', shape: [-1, 2] }], { feature_order: ['a', 'b'] });
    const tensor = new TabularHandler().preprocess(body({ a: 3, b: true }), info).inputs[0]!;
    assert.deepEqual([...(tensor.data as BigInt64Array)], [3n, 1n]);
    const int8 = model([{ name: 'codes', datatype: 'INT8', shape: [-1, 2] }], { feature_order: ['a', 'b'] });
    await rejectsWith(() => new TabularHandler().preprocess(body({ a: 1.5, b: 1 }), int8), 'INVALID_INPUT_DATA', /record 0, feature 'a': 1\.5 is not an integer from -128 to 127/);
  });

  test('postprocess: regressors give raw values; classifiers scores or probabilities; class-index outputs', () => {
    const handler = new TabularHandler();
    const regression = model([{ name: 'x', datatype: 'FP32', shape: [-1, 2] }], {});
    const values: Tensor = { name: 'y', datatype: 'FP32', shape: [3, 1], data: Float32Array.from([1.5, -2, 0.25]) };
    assert.deepEqual(handler.postprocess([values], regression, { rows: 3 }), { predictions: [1.5, -2, 0.25] });
    const multi: Tensor = { name: 'y', datatype: 'FP64', shape: [1, 2], data: Float64Array.from([1, 2]) };
    assert.deepEqual(handler.postprocess([multi], model([], { task: 'regression' }), { rows: 1 }), { predictions: [[1, 2]] });

    const logits: Tensor = { name: 'y', datatype: 'FP32', shape: [1, 3], data: Float32Array.from([0.5, 2, -1]) };
    assert.deepEqual(handler.postprocess([logits], model([], {}), { rows: 1 }), { predictions: [{ prediction: 1, scores: [0.5, 2, -1] }] });
    const soft = handler.postprocess([logits], model([], { apply_softmax: true }, { labels: ['a', 'b', 'c'] }), { rows: 1 }) as { predictions: { label: string; probabilities: number[] }[] };
    assert.equal(soft.predictions[0]!.label, 'b');
    approx(soft.predictions[0]!.probabilities.reduce((s, p) => s + p, 0), 1, 1e-9, 'softmaxed');

    // skl2onnx-style classifier: class indices (INT64) and probabilities.
    const label: Tensor = { name: 'label', datatype: 'INT64', shape: [2], data: BigInt64Array.from([2n, 0n]) };
    const probabilities: Tensor = { name: 'probabilities', datatype: 'FP32', shape: [2, 3], data: Float32Array.from([0.1, 0.2, 0.7, 0.8, 0.1, 0.1]) };
    const sk = handler.postprocess([label, probabilities], model([], {}, { labels: IRIS }), { rows: 2 }) as { predictions: { prediction: number; label: string; probabilities: number[] }[] };
    assert.deepEqual(sk.predictions.map((p) => [p.prediction, p.label]), [[2, 'virginica'], [0, 'setosa']]);
    approx(sk.predictions[0]!.probabilities[2]!, 0.7, 1e-6, 'probabilities kept');

    // One sigmoid output per row: a binary classifier when asked.
    const sigmoid: Tensor = { name: 'p', datatype: 'FP32', shape: [2, 1], data: Float32Array.from([0.9, 0.2]) };
    const binary = handler.postprocess([sigmoid], model([], { task: 'classification' }), { rows: 2 }) as { predictions: { prediction: number; probabilities: number[] }[] };
    assert.deepEqual(binary.predictions.map((p) => p.prediction), [1, 0]);
  });
});

// ---------------------------------------------------------------------------
// Custom handlers
// ---------------------------------------------------------------------------

describe('custom handlers', () => {
  let root: string;
  let n = 0;
  const info = model([{ name: 'x', datatype: 'FP32', shape: [-1, 2] }]);

  async function modelDir(files: Record<string, string>): Promise<string> {
    const dir = join(root, `model-${n++}`);
    await mkdir(dir, { recursive: true });
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    return dir;
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'tessera-handlers-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  const WORKING = `
    export async function preprocess(request, model) {
      const { values } = JSON.parse(request.files[0].data.toString('utf8'));
      return { inputs: [{ name: model.inputs[0].name, datatype: 'FP32', shape: [values.length / 2, 2], data: values }], context: { n: values.length } };
    }
    export function postprocess(outputs, model, context) {
      return { sum: Array.from(outputs[0].data).reduce((a, b) => a + b, 0), n: context.n, model: model.name };
    }
  `;

  test('a working handler.mjs: preprocess, postprocess, context', async () => {
    const handler = await loadCustomHandler(await modelDir({ 'handler.mjs': WORKING }));
    const { inputs, context } = await handler.preprocess(body({ values: [1, 2, 3, 4] }), info);
    const tensor = inputs[0]!;
    assert.equal(tensor.datatype, 'FP32');
    assert.ok(tensor.data instanceof Float32Array, 'plain arrays become typed arrays');
    assert.deepEqual(tensor.shape, [2, 2]);
    const answer = await handler.postprocess([{ name: 'y', datatype: 'FP32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }], info, context);
    assert.deepEqual(answer, { sum: 10, n: 4, model: 'm' });
  });

  test('a throwing preprocess fails the request with a 400-category error', async () => {
    const handler = await loadCustomHandler(await modelDir({ 'handler.mjs': 'export function preprocess() { throw new Error("field \'text\' is required"); }' }));
    const error = await rejectsWith(handler.preprocess(body({}), info), 'INVALID_INPUT_DATA');
    assert.equal(error.message, "handler preprocess failed: field 'text' is required");
    assert.equal(error.category, 'invalid_argument');
    assert.ok(error.cause instanceof Error);
    // The handler still serves the next request.
    await rejectsWith(handler.preprocess(body({}), info), 'INVALID_INPUT_DATA');
  });

  test('TesseraErrors from a handler pass through unchanged', async () => {
    const errorsModule = new URL('../src/core/errors.ts', import.meta.url).href;
    const dir = await modelDir({
      'handler.ts': `
        import { TesseraError } from '${errorsModule}';
        export function preprocess(): never { throw new TesseraError('UNSUPPORTED_MEDIA_TYPE', 'send text/plain'); }
      `,
    });
    const error = await rejectsWith((await loadCustomHandler(dir)).preprocess(body({}), info), 'UNSUPPORTED_MEDIA_TYPE');
    assert.equal(error.message, 'send text/plain');
  });

  test('a throwing postprocess gives HANDLER_FAILED', async () => {
    const handler = await loadCustomHandler(await modelDir({ 'handler.mjs': 'export function postprocess() { return undefined.length; }' }));
    const error = await rejectsWith(handler.postprocess([], info, undefined), 'HANDLER_FAILED', /^handler postprocess failed: Cannot read properties of undefined/);
    assert.equal(error.category, 'internal');
  });

  test('a TypeScript handler.ts', async () => {
    const dir = await modelDir({
      'handler.ts': `
        interface Body { readonly text: string }
        type Request = { files: readonly { data: Buffer }[] };
        export function preprocess(request: Request) {
          const body = JSON.parse(request.files[0]!.data.toString('utf8')) as Body;
          const codes: number[] = [...body.text].map((c) => c.charCodeAt(0));
          return { inputs: [{ name: 'x', datatype: 'INT32' as const, shape: [codes.length], data: Int32Array.from(codes) }] };
        }
        export const postprocess = (outputs: readonly { data: ArrayLike<number> }[]): { length: number } => ({ length: outputs[0]!.data.length });
      `,
    });
    const handler = await loadCustomHandler(dir);
    const { inputs } = await handler.preprocess(body({ text: 'abc' }), info);
    assert.deepEqual([...(inputs[0]!.data as Int32Array)], [97, 98, 99]);
    assert.deepEqual(await handler.postprocess(inputs, info, undefined), { length: 3 });
  });

  test('a CommonJS handler.js, with only postprocess: the default V2 JSON preprocess fills in', async () => {
    const dir = await modelDir({ 'handler.js': 'module.exports = { postprocess(outputs) { return outputs.map((o) => o.name); } };' });
    const handler = await createHandler('custom', dir);
    const { inputs, outputNames } = await handler.preprocess(body({ inputs: [{ name: 'x', shape: [1, 2], data: [[1, 2]] }], outputs: [{ name: 'y' }] }), info);
    assert.deepEqual(inputs, [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: Float32Array.from([1, 2]) }]);
    assert.deepEqual(outputNames, ['y']);
    assert.deepEqual(await handler.postprocess(inputs, info, undefined), ['x']);
  });

  test('only preprocess: the default postprocess answers V2 tensor JSON', async () => {
    const dir = await modelDir({ 'handler.mjs': "export const preprocess = () => ({ inputs: [{ name: 'x', datatype: 'INT64', shape: [2], data: [1, 2] }] });" });
    const handler = await loadCustomHandler(dir);
    const { inputs } = await handler.preprocess(body({}), info);
    assert.deepEqual([...(inputs[0]!.data as BigInt64Array)], [1n, 2n]);
    assert.deepEqual(await handler.postprocess([{ name: 'y', datatype: 'FP16', shape: [1], data: Uint16Array.from([0x3c00]) }], info, undefined), {
      outputs: [{ name: 'y', datatype: 'FP16', shape: [1], data: [1] }],
    });
  });

  test('malformed preprocess results are HANDLER_FAILED', async () => {
    const cases: [string, RegExp][] = [
      ['return 42;', /preprocess returned number; expected \{inputs: /],
      ["return { inputs: [{ name: 'x', datatype: 'FLOAT', shape: [1], data: [1] }] };", /datatype "FLOAT", not a V2 datatype/],
      ["return { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 2], data: [1, 2, 3] }] };", /input 'x' with 3 values for shape \[2,2\] \(4 expected\)/],
      ["return { inputs: [{ name: 'x', datatype: 'FP32', shape: [2], data: new Int32Array(2) }] };", /whose data is not a Float32Array or an array of values/],
      ["return { inputs: [{ name: 'x', datatype: 'UINT8', shape: [1], data: [300] }] };", /element 0 is 300; expected an integer from 0 to 255/],
    ];
    for (const [code, pattern] of cases) {
      const handler = await loadCustomHandler(await modelDir({ 'handler.mjs': `export function preprocess() { ${code} }` }));
      await rejectsWith(handler.preprocess(body({}), info), 'HANDLER_FAILED', pattern);
    }
  });

  test('modules that cannot serve are MODEL_LOAD_FAILED', async () => {
    await rejectsWith(loadCustomHandler(await modelDir({})), 'MODEL_LOAD_FAILED', /no handler module in .* \(looked for handler\.js, handler\.mjs, handler\.ts, handler\.mts\)/);
    await rejectsWith(loadCustomHandler(await modelDir({ 'handler.mjs': 'export const x = 1;' })), 'MODEL_LOAD_FAILED', /exports neither preprocess nor postprocess/);
    await rejectsWith(loadCustomHandler(await modelDir({ 'handler.mjs': 'export const preprocess = 5;' })), 'MODEL_LOAD_FAILED', /'preprocess' is number, not a function/);
    await rejectsWith(loadCustomHandler(await modelDir({ 'handler.mjs': 'export function preprocess( {' })), 'MODEL_LOAD_FAILED', /^cannot load .*handler\.mjs: /);
    await rejectsWith(loadCustomHandler(await modelDir({ 'handler.mjs': 'throw new Error("boom at import");' })), 'MODEL_LOAD_FAILED', /boom at import/);
  });

  test('loading again picks up a changed handler (model reload)', async () => {
    const dir = await modelDir({ 'handler.mjs': 'export const postprocess = () => "v1";' });
    assert.equal(await (await loadCustomHandler(dir)).postprocess([], info, undefined), 'v1');
    await writeFile(join(dir, 'handler.mjs'), 'export const postprocess = () => "v2";');
    await utimes(join(dir, 'handler.mjs'), new Date(), new Date(Date.now() + 5000));
    assert.equal(await (await loadCustomHandler(dir)).postprocess([], info, undefined), 'v2');

    const ts = await modelDir({ 'handler.ts': 'export const postprocess = (): string => "ts1";' });
    assert.equal(await (await loadCustomHandler(ts)).postprocess([], info, undefined), 'ts1');
    await writeFile(join(ts, 'handler.ts'), 'export const postprocess = (): string => "ts2";');
    assert.equal(await (await loadCustomHandler(ts)).postprocess([], info, undefined), 'ts2');
  });

  test('loading again with the handler unchanged reuses its module instead of importing another copy', async () => {
    // Node keeps every module it imports: a reload (scale, config change) must not add one.
    const counting = (label: string): string =>
      `globalThis.__handlerImports = (globalThis.__handlerImports ?? 0) + 1; export const postprocess = () => "${label}";`;
    const imports = (): number => (globalThis as { __handlerImports?: number }).__handlerImports ?? 0;
    const dir = await modelDir({ 'handler.mjs': counting('a') });
    const before = imports();
    for (let i = 0; i < 5; i++) assert.equal(await (await loadCustomHandler(dir)).postprocess([], info, undefined), 'a');
    assert.equal(imports() - before, 1, 'imported once for five loads');
    // Changed contents (even with the same size and modification time): imported again.
    const stat = await import('node:fs/promises').then((fs) => fs.stat(join(dir, 'handler.mjs')));
    await writeFile(join(dir, 'handler.mjs'), counting('b'));
    await utimes(join(dir, 'handler.mjs'), stat.atime, stat.mtime);
    assert.equal(await (await loadCustomHandler(dir)).postprocess([], info, undefined), 'b');
    assert.equal(imports() - before, 2);
  });

  test('handler kind resolution', async () => {
    assert.equal(await resolveHandlerKind(undefined, await modelDir({ 'handler.ts': '' })), 'custom');
    assert.equal(await resolveHandlerKind(undefined, await modelDir({})), 'default');
    assert.equal(await resolveHandlerKind('image', await modelDir({ 'handler.js': '' })), 'image');
    await rejectsWith(createHandler('video' as 'image', root), 'INVALID_MODEL_CONFIG', /unknown handler 'video'/);
  });
});
