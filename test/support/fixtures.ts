/**
 * Test models built with {@link GraphBuilder}, plain-JS reference implementations to
 * check their outputs independently of any runtime, and helpers that lay them out as a
 * Triton-style model repository:
 *
 * ```text
 * <repoDir>/<name>/config.yaml        (optional extra files)
 * <repoDir>/<name>/<version>/model.onnx
 * ```
 *
 * Every builder is deterministic (seeded PRNG) and works in memory; nothing is
 * downloaded and nothing is written unless {@link writeModel} is called.
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import * as ort from 'onnxruntime-node';

import { type Datatype, type Dim, GraphBuilder, float } from './onnx-builder.js';

// ---------------------------------------------------------------------------
// Model repository helpers
// ---------------------------------------------------------------------------

/**
 * Writes `bytes` to `<repoDir>/<name>/<version>/model.onnx`, creating directories as
 * needed, and each entry of `extraFiles` (file name → contents, e.g. `config.yaml`,
 * `labels.txt`) into `<repoDir>/<name>/`. Returns the path of `model.onnx`.
 */
export async function writeModel(
  repoDir: string,
  name: string,
  version: number | string,
  bytes: Uint8Array,
  extraFiles: Readonly<Record<string, string | Uint8Array>> = {},
): Promise<string> {
  const modelDir = path.join(repoDir, name);
  const versionDir = path.join(modelDir, String(version));
  await mkdir(versionDir, { recursive: true });
  const modelPath = path.join(versionDir, 'model.onnx');
  await writeFile(modelPath, bytes);
  for (const [file, contents] of Object.entries(extraFiles)) {
    const target = path.join(modelDir, file);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, contents);
  }
  return modelPath;
}

/** Creates an empty temporary directory to use as a model repository. */
export async function makeTempRepository(prefix = 'tessera-repo-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

// ---------------------------------------------------------------------------
// Seeded random numbers
// ---------------------------------------------------------------------------

/** mulberry32: a tiny, fast, seeded 32-bit PRNG. Returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` floats drawn uniformly from [-limit, limit). */
export function uniformArray(n: number, limit: number, rng: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng() * 2 - 1) * limit;
  return out;
}

// ---------------------------------------------------------------------------
// Identity and Add
// ---------------------------------------------------------------------------

/**
 * `x` → Identity → `y`, both of `datatype` and `shape` (e.g. `['FP32', [-1, 4]]`,
 * `['FP32', [2, 4]]`, `['INT64', [-1, 3]]`, `['BYTES', [-1]]`).
 */
export function identityModel(datatype: Datatype, shape: readonly Dim[]): Uint8Array {
  const g = new GraphBuilder(`identity_${datatype.toLowerCase()}`);
  const x = g.input('x', datatype, shape);
  g.output(g.node('Identity', [x]), datatype, shape, 'y');
  return g.build();
}

/** Inputs `a`, `b` FP32 [-1, 4] → outputs `sum` = a + b and `diff` = a − b. */
export function addModel(): Uint8Array {
  const g = new GraphBuilder('add_sub');
  const a = g.input('a', 'FP32', [-1, 4]);
  const b = g.input('b', 'FP32', [-1, 4]);
  g.output(g.node('Add', [a, b], {}, { outputs: ['sum'] }), 'FP32', [-1, 4]);
  g.output(g.node('Sub', [a, b], {}, { outputs: ['diff'] }), 'FP32', [-1, 4]);
  return g.build();
}

// ---------------------------------------------------------------------------
// MLPs
// ---------------------------------------------------------------------------

/** One fully connected layer: `y = x · weight + bias`. */
export interface DenseLayer {
  readonly inputs: number;
  readonly outputs: number;
  /** Row-major [inputs, outputs]. */
  readonly weight: Float32Array;
  /** [outputs]. */
  readonly bias: Float32Array;
}

/** Weights of an MLP: Relu between layers, Softmax (axis 1) after the last one. */
export interface MlpWeights {
  readonly layers: readonly DenseLayer[];
}

/**
 * Seeded random MLP weights for layer sizes `sizes` (e.g. `[4, 8, 3]`), Glorot-uniform
 * weights and small uniform biases.
 */
export function seededMlpWeights(sizes: readonly number[], seed: number): MlpWeights {
  const rng = mulberry32(seed);
  const layers: DenseLayer[] = [];
  for (let i = 0; i + 1 < sizes.length; i++) {
    const inputs = sizes[i] ?? 0;
    const outputs = sizes[i + 1] ?? 0;
    const limit = Math.sqrt(6 / (inputs + outputs));
    layers.push({
      inputs,
      outputs,
      weight: uniformArray(inputs * outputs, limit, rng),
      bias: uniformArray(outputs, 0.1, rng),
    });
  }
  return { layers };
}

/** The weights of the small test MLP: 4 → 8 (Relu) → 3 (Softmax), seed 42. */
export function defaultMlpWeights(): MlpWeights {
  return seededMlpWeights([4, 8, 3], 42);
}

/** Names of an MLP model's input and output. */
export interface MlpNames {
  readonly input?: string;
  readonly output?: string;
}

/**
 * An MLP with the given weights: input `x` FP32 [-1, inputs], MatMul+Add per layer,
 * Relu between layers, Softmax (axis 1) at the end, output `probs` FP32 [-1, outputs].
 */
export function mlpModel(weights: MlpWeights = defaultMlpWeights(), names: MlpNames = {}): Uint8Array {
  const first = weights.layers[0];
  const last = weights.layers[weights.layers.length - 1];
  if (first === undefined || last === undefined) throw new Error('an MLP needs at least one layer');
  const g = new GraphBuilder('mlp');
  let h = g.input(names.input ?? 'x', 'FP32', [-1, first.inputs]);
  weights.layers.forEach((layer, i) => {
    const w = g.initializer(`w${i + 1}`, 'FP32', [layer.inputs, layer.outputs], layer.weight);
    const b = g.initializer(`b${i + 1}`, 'FP32', [layer.outputs], layer.bias);
    h = g.node('Add', [g.node('MatMul', [h, w]), b]);
    if (i + 1 < weights.layers.length) h = g.node('Relu', [h]);
  });
  g.output(g.node('Softmax', [h], { axis: 1 }), 'FP32', [-1, last.outputs], names.output ?? 'probs');
  return g.build();
}

/**
 * Plain-JS (Float64) forward pass of {@link mlpModel}. `input` is row-major
 * [batch, inputs]; returns row-major [batch, outputs] probabilities.
 */
export function mlpReference(weights: MlpWeights, input: ArrayLike<number>): Float64Array {
  const first = weights.layers[0];
  if (first === undefined) throw new Error('an MLP needs at least one layer');
  if (input.length % first.inputs !== 0) throw new Error('input length is not a multiple of the input size');
  const batch = input.length / first.inputs;
  let h = Float64Array.from(input);
  weights.layers.forEach((layer, li) => {
    const next = new Float64Array(batch * layer.outputs);
    for (let r = 0; r < batch; r++) {
      for (let o = 0; o < layer.outputs; o++) {
        let acc = at(layer.bias, o);
        for (let k = 0; k < layer.inputs; k++) {
          acc += at(h, r * layer.inputs + k) * at(layer.weight, k * layer.outputs + o);
        }
        next[r * layer.outputs + o] = li + 1 < weights.layers.length ? Math.max(0, acc) : acc;
      }
    }
    h = next;
  });
  const width = h.length / Math.max(batch, 1);
  for (let r = 0; r < batch; r++) softmaxInPlace(h, r * width, width);
  return h;
}

/** Numerically stable softmax of `data[offset .. offset + width)`, in place. */
export function softmaxInPlace(data: Float64Array, offset: number, width: number): void {
  let max = -Infinity;
  for (let i = 0; i < width; i++) max = Math.max(max, at(data, offset + i));
  let sum = 0;
  for (let i = 0; i < width; i++) {
    const e = Math.exp(at(data, offset + i) - max);
    data[offset + i] = e;
    sum += e;
  }
  for (let i = 0; i < width; i++) data[offset + i] = at(data, offset + i) / sum;
}

/** Weights of {@link mlpBenchModel}: 64 → 256 → 256 → 10, seed 1234. */
export function mlpBenchWeights(): MlpWeights {
  return seededMlpWeights([64, 256, 256, 10], 1234);
}

/**
 * Tabular benchmark MLP 64 → 256 (Relu) → 256 (Relu) → 10 (Softmax) with seeded weights:
 * input `x` FP32 [-1, 64], output `probs` FP32 [-1, 10]. Check it with
 * `mlpReference(mlpBenchWeights(), input)`.
 */
export function mlpBenchModel(): Uint8Array {
  return mlpModel(mlpBenchWeights());
}

// ---------------------------------------------------------------------------
// Slow model
// ---------------------------------------------------------------------------

/** Side of the square matrices multiplied by {@link slowModel}. */
export const SLOW_MODEL_SIZE = 512;

/**
 * Assumed CPU throughput (GFLOP/s) of onnxruntime's MatMul with default session
 * options, used by {@link slowModel} to turn milliseconds into layers. Measured on
 * the project's 2-core machine (AMD EPYC, AVX-512, ORT's default 2 intra-op threads;
 * ~half that with `intraOpNumThreads: 1`). Slower machines run the model proportionally
 * longer: use {@link calibratedSlowModel} where the duration matters.
 */
export const SLOW_MODEL_ASSUMED_GFLOPS = 450;

/** Number of [N, N] × [N, N] MatMul layers {@link slowModel} uses for `ms`. */
export function slowModelLayers(ms: number, gflops = SLOW_MODEL_ASSUMED_GFLOPS): number {
  const flopsPerLayer = 2 * SLOW_MODEL_SIZE ** 3;
  return Math.max(1, Math.round((ms * 1e-3 * gflops * 1e9) / flopsPerLayer));
}

/**
 * A model that takes about `ms` milliseconds per run on CPU, whatever the batch size:
 * input `x` FP32 [-1, 4], output `y` FP32 [-1, 4] equal to `x` (exactly).
 *
 * The first row of `x` is projected to a vector `r` [1, N] (N = {@link SLOW_MODEL_SIZE}),
 * the outer product `rᵀ·r` makes an [N, N] matrix `M`, then `M = Tanh(M · W)` is applied
 * L = {@link slowModelLayers}(ms) times with one shared [N, N] initializer `W` (so the
 * file stays ~1 MB). Because every step depends on the input, onnxruntime cannot
 * constant-fold it. Finally `y = x + 0 · mean(M)` (so a NaN/Infinity in the first
 * row of `x` makes all of `y` NaN).
 *
 * Cost scales linearly with L: 2·N³ ≈ 0.27 GFLOP per layer, i.e. ~0.6 ms per layer at
 * the assumed {@link SLOW_MODEL_ASSUMED_GFLOPS} GFLOP/s; it does not depend on the
 * batch size. Pass `gflops` to calibrate for another machine.
 */
export function slowModel(ms: number, gflops = SLOW_MODEL_ASSUMED_GFLOPS): Uint8Array {
  const n = SLOW_MODEL_SIZE;
  const layers = slowModelLayers(ms, gflops);
  const rng = mulberry32(7);
  const g = new GraphBuilder('slow');
  const x = g.input('x', 'FP32', [-1, 4]);
  const row = g.node('Slice', [
    x,
    g.constant('INT64', [1], new BigInt64Array([0n])),
    g.constant('INT64', [1], new BigInt64Array([1n])),
  ]);
  const r = g.node('MatMul', [row, g.initializer('proj', 'FP32', [4, n], uniformArray(4 * n, 0.5, rng))]);
  let m = g.node('Tanh', [g.node('MatMul', [g.node('Transpose', [r], { perm: [1, 0] }), r])]);
  const w = g.initializer('w', 'FP32', [n, n], uniformArray(n * n, Math.sqrt(3 / n), rng));
  for (let i = 0; i < layers; i++) m = g.node('Tanh', [g.node('MatMul', [m, w])]);
  const mean = g.node('ReduceMean', [m], { keepdims: 1 });
  const zero = g.node('Mul', [mean, g.constant('FP32', [], new Float32Array([0]))]);
  g.output(g.node('Add', [x, zero]), 'FP32', [-1, 4], 'y');
  return g.build({ docString: `slow model: ${layers} layers of ${n}x${n} MatMul` });
}

/**
 * Measures this machine's MatMul throughput (GFLOP/s) by timing a small slow model
 * (`layers` layers, best of `runs` runs after one warm-up) in onnxruntime-node with
 * default session options. Pass the result to {@link slowModel}.
 */
export async function measureSlowModelGflops(layers = 40, runs = 3): Promise<number> {
  const flopsPerLayer = 2 * SLOW_MODEL_SIZE ** 3;
  const assumedMs = (layers * flopsPerLayer) / (SLOW_MODEL_ASSUMED_GFLOPS * 1e6);
  const session = await ort.InferenceSession.create(slowModel(assumedMs));
  try {
    const x = new ort.Tensor('float32', new Float32Array([1, 2, 3, 4]), [1, 4]);
    await session.run({ x });
    let best = Infinity;
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      await session.run({ x });
      best = Math.min(best, performance.now() - start);
    }
    return (slowModelLayers(assumedMs) * flopsPerLayer) / (best * 1e6);
  } finally {
    await session.release();
  }
}

/** {@link slowModel} calibrated on this machine with {@link measureSlowModelGflops}. */
export async function calibratedSlowModel(ms: number): Promise<Uint8Array> {
  return slowModel(ms, await measureSlowModelGflops());
}

// ---------------------------------------------------------------------------
// ResNet-18
// ---------------------------------------------------------------------------

/** Options of {@link resnet18Model}. */
export interface ResNet18Options {
  /** PRNG seed of the weights (default 18). */
  readonly seed?: number;
  /** Number of classes of the final Gemm (default 1000). */
  readonly numClasses?: number;
}

/**
 * A ResNet-18-shaped CNN with seeded random weights (~11.7 M parameters, ~45 MB):
 * input `input` FP32 [-1, 3, 224, 224], output `logits` FP32 [-1, 1000].
 *
 * Topology as in torchvision's resnet18 with BatchNorm folded into conv biases: 7×7/2
 * conv (64) + Relu + 3×3/2 max-pool; four stages of two BasicBlocks (64, 128, 256, 512
 * channels; the first block of stages 2–4 has stride 2 and a 1×1/2 downsample conv on
 * the shortcut); each block is conv3×3 + Relu + conv3×3, residual Add, Relu; then
 * GlobalAveragePool, Flatten and Gemm. Weights are He-uniform; the second conv of each
 * block is scaled by 1/√2 so activations grow only mildly through the residual adds.
 */
export function resnet18Model(options: ResNet18Options = {}): Uint8Array {
  const rng = mulberry32(options.seed ?? 18);
  const numClasses = options.numClasses ?? 1000;
  const g = new GraphBuilder('resnet18');
  let convCount = 0;

  const conv = (
    x: string,
    cin: number,
    cout: number,
    k: number,
    stride: number,
    scale = 1,
  ): string => {
    const id = `conv${convCount++}`;
    const fanIn = cin * k * k;
    const w = g.initializer(`${id}.weight`, 'FP32', [cout, cin, k, k], uniformArray(cout * fanIn, scale * Math.sqrt(6 / fanIn), rng));
    const b = g.initializer(`${id}.bias`, 'FP32', [cout], uniformArray(cout, 0.01, rng));
    const pad = Math.floor(k / 2);
    return g.node('Conv', [x, w, b], {
      kernel_shape: [k, k],
      strides: [stride, stride],
      pads: [pad, pad, pad, pad],
    });
  };

  const basicBlock = (x: string, cin: number, cout: number, stride: number): string => {
    const h = g.node('Relu', [conv(x, cin, cout, 3, stride)]);
    const f = conv(h, cout, cout, 3, 1, Math.SQRT1_2);
    const shortcut = stride !== 1 || cin !== cout ? conv(x, cin, cout, 1, stride) : x;
    return g.node('Relu', [g.node('Add', [f, shortcut])]);
  };

  const input = g.input('input', 'FP32', [-1, 3, 224, 224]);
  let h = g.node('Relu', [conv(input, 3, 64, 7, 2)]);
  h = g.node('MaxPool', [h], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
  let channels = 64;
  for (const [stage, width] of [64, 128, 256, 512].entries()) {
    h = basicBlock(h, channels, width, stage === 0 ? 1 : 2);
    h = basicBlock(h, width, width, 1);
    channels = width;
  }
  h = g.node('Flatten', [g.node('GlobalAveragePool', [h])], { axis: 1 });
  const fcW = g.initializer('fc.weight', 'FP32', [numClasses, channels], uniformArray(numClasses * channels, Math.sqrt(1 / channels), rng));
  const fcB = g.initializer('fc.bias', 'FP32', [numClasses], uniformArray(numClasses, 0.01, rng));
  h = g.node('Gemm', [h, fcW, fcB], { alpha: float(1), beta: float(1), transB: 1 });
  g.output(h, 'FP32', [-1, numClasses], 'logits');
  return g.build({ docString: 'ResNet-18 topology with seeded random weights (Tessera test fixture)' });
}

// ---------------------------------------------------------------------------

function at(data: ArrayLike<number>, i: number): number {
  const v = data[i];
  if (v === undefined) throw new RangeError(`index ${i} out of range`);
  return v;
}
