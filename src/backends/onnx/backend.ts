import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TesseraError } from '../../core/errors.js';
import type { Backend, BackendModel, BackendModelSpec } from '../backend.js';
import { checkStringInputs, SessionInstance } from './session-instance.js';
import { sessionSettings } from './settings.js';

/**
 * Runs ONNX models with onnxruntime-node. Each instance is a worker thread holding its own
 * session, so inference never runs on the server's event loop.
 */
export class OnnxBackend implements Backend {
  readonly name = 'onnxruntime';
  readonly defaultModelFilename = 'model.onnx';

  async load(spec: BackendModelSpec): Promise<BackendModel> {
    const modelPath = await modelFile(spec.modelPath);
    const settings = sessionSettings(spec.parameters, spec.instanceCount);
    const started = await Promise.allSettled(
      Array.from({ length: spec.instanceCount }, (_, index) => SessionInstance.start(index, modelPath, settings)),
    );
    const instances = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const failure = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure !== undefined || instances.length === 0) {
      await Promise.all(instances.map(({ instance }) => instance.close()));
      const reason = failure?.reason instanceof Error ? failure.reason.message : String(failure?.reason);
      throw new TesseraError('MODEL_LOAD_FAILED', `onnxruntime could not load ${modelPath}: ${reason}`, { cause: failure?.reason });
    }
    const first = instances[0]!;
    let closing: Promise<void> | undefined;
    return {
      inputs: first.inputs,
      outputs: first.outputs,
      instances: instances.map(({ instance }) => instance),
      checkInputs: checkStringInputs,
      close: () => (closing ??= Promise.all(instances.map(({ instance }) => instance.close())).then(() => undefined)),
    };
  }
}

/**
 * The ONNX file to load for `path`: the file itself, or, as Triton's onnxruntime backend reads
 * a model directory (a model saved with its external data beside it), `<path>/model.onnx`.
 */
async function modelFile(path: string): Promise<string> {
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) throw new TesseraError('MODEL_LOAD_FAILED', `model file not found: ${path}`);
  if (!info.isDirectory()) return path;
  const inside = join(path, 'model.onnx');
  const file = await stat(inside).catch(() => undefined);
  if (file === undefined || !file.isFile()) throw new TesseraError('MODEL_LOAD_FAILED', `model file not found: ${path} is a directory without a model.onnx in it`);
  return inside;
}
