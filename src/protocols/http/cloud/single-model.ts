import { TesseraError } from '../../../core/errors.js';
import type { Engine } from '../../../engine/engine.js';

/**
 * The model a single-model platform endpoint (SageMaker /invocations, Vertex AI predict, Azure
 * ML /score) serves: the configured default model, else the repository's only model.
 */
export function singleModel(engine: Engine, configured: string | undefined): string {
  if (configured !== undefined) return configured;
  const names = [...new Set(engine.repositoryIndex().map((entry) => entry.name))];
  if (names.length === 1) return names[0]!;
  if (names.length === 0) throw new TesseraError('MODEL_NOT_FOUND', 'the model repository holds no model to serve');
  throw new TesseraError(
    'MODEL_NOT_FOUND',
    `the repository holds ${names.length} models (${names.join(', ')}) and no default model is set: ` +
      'choose one with --default-model, TESSERA_DEFAULT_MODEL or (on SageMaker) SAGEMAKER_DEFAULT_MODEL',
  );
}

/** A warning for the start-up log when single-model endpoints cannot pick a model, or undefined. */
export function singleModelProblem(engine: Engine, configured: string | undefined): string | undefined {
  try {
    const model = singleModel(engine, configured);
    if (!engine.repositoryIndex().some((entry) => entry.name === model)) return `the default model '${model}' is not in the repository`;
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}
