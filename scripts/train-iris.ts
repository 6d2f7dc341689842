/**
 * Trains the example Iris classifier and writes it into the example model repository.
 *
 * Usage (from the repository root):
 *
 *     node --import tsx scripts/train-iris.ts [--out examples/models]
 *
 * What it does, deterministically (no randomness, no downloads):
 *  1. standardizes the four features of Fisher's Iris data (scripts/iris-data.ts);
 *  2. trains a softmax-regression classifier with full-batch gradient descent
 *     (zero initial weights, fixed learning rate and epoch count, light L2);
 *  3. folds the standardization into the weights, so the model takes raw centimetres;
 *  4. writes `<out>/iris/1/model.onnx` (input `features` FP32 [-1, 4]: sepal length,
 *     sepal width, petal length, petal width in cm; output `probabilities` FP32 [-1, 3],
 *     Softmax over setosa, versicolor, virginica) and `<out>/iris/labels.txt`;
 *  5. reloads the file in onnxruntime-node and checks it agrees with the training code.
 *
 * Prints the train accuracy (all 150 rows are used for training; there is no held-out
 * set: the model is an example for serving, not a benchmark). Exits non-zero if the
 * accuracy is below 95% or onnxruntime disagrees.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

import * as ort from 'onnxruntime-node';

import { GraphBuilder } from '../test/support/onnx-builder.js';
import { IRIS_ROWS, IRIS_SPECIES } from './iris-data.js';

const FEATURES = 4;
const CLASSES = IRIS_SPECIES.length;
const EPOCHS = 3000;
const LEARNING_RATE = 0.5;
const L2 = 1e-4;

/** Softmax-regression parameters: `logits = x · w + b`, w row-major [4, 3]. */
interface Linear {
  w: Float64Array;
  b: Float64Array;
}

function get(a: ArrayLike<number>, i: number): number {
  const v = a[i];
  if (v === undefined) throw new RangeError(`index ${i} out of range`);
  return v;
}

function softmaxRow(logits: Float64Array): Float64Array {
  const max = Math.max(...logits);
  const exps = logits.map((z) => Math.exp(z - max));
  const sum = exps.reduce((s, e) => s + e, 0);
  return exps.map((e) => e / sum);
}

function predict(model: Linear, x: ArrayLike<number>): Float64Array {
  const logits = new Float64Array(CLASSES);
  for (let c = 0; c < CLASSES; c++) {
    let z = get(model.b, c);
    for (let f = 0; f < FEATURES; f++) z += get(x, f) * get(model.w, f * CLASSES + c);
    logits[c] = z;
  }
  return softmaxRow(logits);
}

function argmax(p: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < p.length; i++) if (get(p, i) > get(p, best)) best = i;
  return best;
}

function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string', default: 'examples/models' } } });
  return run(values.out ?? 'examples/models');
}

async function run(outRoot: string): Promise<void> {
  const n = IRIS_ROWS.length;
  const raw: number[][] = IRIS_ROWS.map((row) => row.slice(0, FEATURES));
  const labels = IRIS_ROWS.map((row) => row[FEATURES]);

  // 1. Standardize.
  const mean = new Float64Array(FEATURES);
  const std = new Float64Array(FEATURES);
  for (let f = 0; f < FEATURES; f++) {
    const col = raw.map((r) => get(r, f));
    const m = col.reduce((s, v) => s + v, 0) / n;
    mean[f] = m;
    std[f] = Math.sqrt(col.reduce((s, v) => s + (v - m) ** 2, 0) / n);
  }
  const xs = raw.map((r) => r.map((v, f) => (v - get(mean, f)) / get(std, f)));

  // 2. Full-batch gradient descent on the mean cross-entropy (+ L2 on w).
  const model: Linear = { w: new Float64Array(FEATURES * CLASSES), b: new Float64Array(CLASSES) };
  for (let epoch = 0; epoch < EPOCHS; epoch++) {
    const gw = new Float64Array(FEATURES * CLASSES);
    const gb = new Float64Array(CLASSES);
    xs.forEach((x, i) => {
      const p = predict(model, x);
      for (let c = 0; c < CLASSES; c++) {
        const err = get(p, c) - (labels[i] === c ? 1 : 0);
        gb[c] = get(gb, c) + err / n;
        for (let f = 0; f < FEATURES; f++) gw[f * CLASSES + c] = get(gw, f * CLASSES + c) + (err * get(x, f)) / n;
      }
    });
    for (let k = 0; k < gw.length; k++) {
      model.w[k] = get(model.w, k) - LEARNING_RATE * (get(gw, k) + L2 * get(model.w, k));
    }
    for (let c = 0; c < CLASSES; c++) model.b[c] = get(model.b, c) - LEARNING_RATE * get(gb, c);
  }

  // 3. Fold the standardization: w' = w / std (per input row), b' = b − Σ_f mean_f · w'_f.
  const folded: Linear = { w: new Float64Array(FEATURES * CLASSES), b: Float64Array.from(model.b) };
  for (let f = 0; f < FEATURES; f++) {
    for (let c = 0; c < CLASSES; c++) {
      const w = get(model.w, f * CLASSES + c) / get(std, f);
      folded.w[f * CLASSES + c] = w;
      folded.b[c] = get(folded.b, c) - get(mean, f) * w;
    }
  }
  const correct = raw.filter((x, i) => argmax(predict(folded, x)) === labels[i]).length;
  const accuracy = correct / n;
  console.log(`train accuracy: ${(accuracy * 100).toFixed(2)}% (${correct}/${n})`);

  // 4. Build and write the ONNX model.
  const g = new GraphBuilder('iris');
  const features = g.input('features', 'FP32', [-1, FEATURES]);
  const w = g.initializer('weight', 'FP32', [FEATURES, CLASSES], Float32Array.from(folded.w));
  const b = g.initializer('bias', 'FP32', [CLASSES], Float32Array.from(folded.b));
  const logits = g.node('Add', [g.node('MatMul', [features, w]), b]);
  g.output(g.node('Softmax', [logits], { axis: 1 }), 'FP32', [-1, CLASSES], 'probabilities');
  const bytes = g.build({
    docString:
      'Iris species classifier (softmax regression, Fisher 1936 data). Input: sepal length, ' +
      'sepal width, petal length, petal width in cm. Output: probabilities of setosa, ' +
      'versicolor, virginica. Built by scripts/train-iris.ts.',
    metadata: { labels: IRIS_SPECIES.join(','), train_accuracy: accuracy.toFixed(4) },
  });
  const modelDir = path.join(outRoot, 'iris');
  await mkdir(path.join(modelDir, '1'), { recursive: true });
  await writeFile(path.join(modelDir, '1', 'model.onnx'), bytes);
  await writeFile(path.join(modelDir, 'labels.txt'), `${IRIS_SPECIES.join('\n')}\n`);
  console.log(`wrote ${path.join(modelDir, '1', 'model.onnx')} (${bytes.length} bytes) and labels.txt`);

  // 5. Check the written model with onnxruntime.
  const session = await ort.InferenceSession.create(path.join(modelDir, '1', 'model.onnx'));
  const input = new ort.Tensor('float32', Float32Array.from(raw.flat()), [n, FEATURES]);
  const out = (await session.run({ features: input }))['probabilities'];
  await session.release();
  if (out === undefined || !(out.data instanceof Float32Array)) throw new Error('no probabilities output');
  const probs = out.data;
  let agree = 0;
  raw.forEach((x, i) => {
    if (argmax(probs.subarray(i * CLASSES, (i + 1) * CLASSES)) === argmax(predict(folded, x))) agree++;
  });
  console.log(`onnxruntime agrees with the training code on ${agree}/${n} rows`);
  if (accuracy < 0.95 || agree !== n) process.exitCode = 1;
}

await main();
