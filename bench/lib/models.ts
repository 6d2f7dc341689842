/**
 * The benchmark's models and repositories. Model files are built once per run from the test
 * fixtures (deterministic, seeded) into a scratch directory; every server configuration gets
 * its own small repository holding one model (its model.onnx a symlink to the built file) and
 * a config.json written from a {@link BenchModelConfig}.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mlpBenchModel, resnet18Model, slowModel } from '../../test/support/fixtures.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export type ModelKey = 'mlp' | 'resnet' | 'ocr' | 'iris';
export const MODEL_KEYS: readonly ModelKey[] = ['mlp', 'resnet', 'ocr', 'iris'];

/** A model the benchmark drives, and how its requests look. */
export interface BenchModel {
  readonly key: ModelKey;
  /** Name in the repository (and in /v2/models/<name>). */
  readonly name: string;
  readonly title: string;
  readonly file: string;
  readonly input: string;
  readonly output: string;
  /** Shape of one item, without the batch dimension. */
  readonly itemShape: readonly number[];
  /** Range of the input values the payload generator draws. */
  readonly valueRange: readonly [number, number];
  /** max_batch_size of the batching server configuration. */
  readonly maxBatchSize: number;
  /** Batch sizes the raw onnxruntime baseline runs. */
  readonly rawBatchSizes: readonly number[];
  /** Input dims to pin in the config (models whose file declares variable dims). */
  readonly pinDims: boolean;
  /** Output elements per item (without the batch dimension). */
  readonly outputElements: number;
}

/** A model config.json as the benchmark writes it (a subset of the config schema). */
export interface BenchModelConfig {
  readonly max_batch_size?: number;
  readonly input?: readonly { readonly name: string; readonly dims: readonly number[] }[];
  readonly dynamic_batching?:
    | false
    | {
        readonly max_queue_delay_microseconds?: number;
        readonly preferred_batch_size?: readonly number[];
        readonly default_queue_policy?: { readonly max_queue_size?: number };
      };
  readonly instance_group?: readonly { readonly count: number }[];
  readonly parameters?: Readonly<Record<string, string | number | boolean>>;
  readonly warmup?: { readonly batch_sizes?: readonly number[]; readonly iterations?: number };
}

export interface ModelFiles {
  readonly dir: string;
  readonly models: Readonly<Record<ModelKey, BenchModel>>;
  /** Build the fixed-cost model for the overload cell (ms per run, any batch size). */
  slowModelFile(ms: number): Promise<string>;
  /** A fresh repository with `name` served from `file` under `config`. */
  repository(name: string, file: string, config: BenchModelConfig): Promise<string>;
  cleanup(): Promise<void>;
}

const OCR_EXAMPLE = join(REPO_ROOT, 'examples', 'models', 'ocr-direction', '1', 'model.onnx');
const IRIS_EXAMPLE = join(REPO_ROOT, 'examples', 'models', 'iris', '1', 'model.onnx');

/** Build (or locate) every model file the benchmark may need. Only the selected keys are built. */
export async function prepareModels(keys: readonly ModelKey[]): Promise<ModelFiles> {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-bench-'));
  const fileOf = (name: string): string => join(dir, 'files', name);
  await mkdir(join(dir, 'files'), { recursive: true });
  if (keys.includes('mlp')) await writeFile(fileOf('mlp.onnx'), mlpBenchModel());
  if (keys.includes('resnet')) await writeFile(fileOf('resnet18.onnx'), resnet18Model());
  if (keys.includes('ocr')) {
    if (!existsSync(OCR_EXAMPLE)) {
      const prepared = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'prepare-examples.mjs')], { stdio: 'inherit' });
      if (prepared.status !== 0 || !existsSync(OCR_EXAMPLE)) throw new Error(`cannot prepare ${OCR_EXAMPLE}`);
    }
    await copyFile(OCR_EXAMPLE, fileOf('ocr-direction.onnx'));
  }
  if (keys.includes('iris')) {
    if (!existsSync(IRIS_EXAMPLE)) throw new Error(`missing ${IRIS_EXAMPLE} (the Iris example model is kept in the repository)`);
    await copyFile(IRIS_EXAMPLE, fileOf('iris.onnx'));
  }
  const models: Record<ModelKey, BenchModel> = {
    mlp: {
      key: 'mlp',
      name: 'mlp',
      title: 'MLP 64-256-256-10',
      file: fileOf('mlp.onnx'),
      input: 'x',
      output: 'probs',
      itemShape: [64],
      valueRange: [-1, 1],
      maxBatchSize: 64,
      rawBatchSizes: [1, 8, 32, 64],
      pinDims: false,
      outputElements: 10,
    },
    resnet: {
      key: 'resnet',
      name: 'resnet18',
      title: 'ResNet-18-shaped CNN 3x224x224',
      file: fileOf('resnet18.onnx'),
      input: 'input',
      output: 'logits',
      itemShape: [3, 224, 224],
      valueRange: [-2.1, 2.6],
      maxBatchSize: 32,
      rawBatchSizes: [1, 8, 32],
      pinDims: false,
      outputElements: 1000,
    },
    ocr: {
      key: 'ocr',
      name: 'ocr-direction',
      title: 'PaddleOCR direction classifier 3x48x192',
      file: fileOf('ocr-direction.onnx'),
      input: 'x',
      output: 'softmax_0.tmp_0',
      itemShape: [3, 48, 192],
      valueRange: [-1, 1],
      maxBatchSize: 16,
      rawBatchSizes: [1, 8, 16, 32],
      pinDims: true,
      outputElements: 2,
    },
    iris: {
      // examples/models/iris: softmax regression trained on Fisher's Iris data (scripts/train-iris.ts).
      key: 'iris',
      name: 'iris',
      title: 'Iris softmax-regression classifier 4 -> 3 (example model)',
      file: fileOf('iris.onnx'),
      input: 'features',
      output: 'probabilities',
      itemShape: [4],
      // Sepal and petal lengths and widths in cm, the range of the data set.
      valueRange: [0.1, 7.9],
      // As examples/models/iris/config.yaml.
      maxBatchSize: 64,
      rawBatchSizes: [1, 16, 64],
      pinDims: false,
      outputElements: 3,
    },
  };
  let repos = 0;
  return {
    dir,
    models,
    async slowModelFile(ms: number): Promise<string> {
      const file = fileOf(`slow-${ms}ms.onnx`);
      if (!existsSync(file)) await writeFile(file, slowModel(ms));
      return file;
    },
    async repository(name: string, file: string, config: BenchModelConfig): Promise<string> {
      const root = join(dir, 'repos', String(repos++));
      await mkdir(join(root, name, '1'), { recursive: true });
      await symlink(file, join(root, name, '1', 'model.onnx'));
      await writeFile(join(root, name, 'config.json'), JSON.stringify(config, null, 2));
      return root;
    },
    async cleanup(): Promise<void> {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The config.json of a benchmark server for `model`: batching (with `delayUs`) or not. */
export function serverModelConfig(model: BenchModel, batching: boolean, delayUs: number, extra: BenchModelConfig = {}): BenchModelConfig {
  return {
    max_batch_size: model.maxBatchSize,
    ...(model.pinDims ? { input: [{ name: model.input, dims: model.itemShape }] } : {}),
    dynamic_batching: batching ? { max_queue_delay_microseconds: delayUs } : false,
    ...extra,
    ...(process.env['BENCH_MODEL_CONFIG_EXTRA'] === undefined ? {} : (JSON.parse(process.env['BENCH_MODEL_CONFIG_EXTRA']) as BenchModelConfig)),
  };
}
