import { access } from 'node:fs/promises';
import { TesseraError } from '../../core/errors.js';
import type { Backend, BackendModel, BackendModelSpec } from '../backend.js';
import { SessionInstance } from './session-instance.js';
import { sessionSettings } from './settings.js';

/**
 * Runs ONNX models with onnxruntime-node. Each instance is a worker thread holding its own
 * session, so inference never runs on the server's event loop.
 */
export class OnnxBackend implements Backend {
  readonly name = 'onnxruntime';
  readonly defaultModelFilename = 'model.onnx';

  async load(spec: BackendModelSpec): Promise<BackendModel> {
    try {
      await access(spec.modelPath);
    } catch {
      throw new TesseraError('MODEL_LOAD_FAILED', `model file not found: ${spec.modelPath}`);
    }
    const settings = sessionSettings(spec.parameters, spec.instanceCount);
    const started = await Promise.allSettled(
      Array.from({ length: spec.instanceCount }, (_, index) => SessionInstance.start(index, spec.modelPath, settings)),
    );
    const instances = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const failure = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure !== undefined || instances.length === 0) {
      await Promise.all(instances.map(({ instance }) => instance.close()));
      const reason = failure?.reason instanceof Error ? failure.reason.message : String(failure?.reason);
      throw new TesseraError('MODEL_LOAD_FAILED', `onnxruntime could not load ${spec.modelPath}: ${reason}`, { cause: failure?.reason });
    }
    const first = instances[0]!;
    let closing: Promise<void> | undefined;
    return {
      inputs: first.inputs,
      outputs: first.outputs,
      instances: instances.map(({ instance }) => instance),
      close: () => (closing ??= Promise.all(instances.map(({ instance }) => instance.close())).then(() => undefined)),
    };
  }
}
