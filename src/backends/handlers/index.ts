import { TesseraError } from '../../core/errors.js';
import { parseOptions } from './common.js';
import { findHandlerFile, loadCustomHandler } from './custom.js';
import { DefaultHandler } from './default.js';
import type { ModelHandler } from './handler.js';
import { ImageHandler, imageOptionsSchema } from './image.js';
import { TabularHandler, tabularOptionsSchema } from './tabular.js';

export type { HandlerFile, HandlerInputs, HandlerModelInfo, HandlerRequest, ModelHandler } from './handler.js';
export { handlerAnswerJson, OrderedObject } from './common.js';
export { findHandlerFile, HANDLER_MODULE_FILES, loadCustomHandler } from './custom.js';
export { planImage, type ImageHandlerOptions } from './image.js';
export { planTabular, type TabularHandlerOptions } from './tabular.js';

export const HANDLER_KINDS = ['image', 'tabular', 'custom', 'default'] as const;
export type HandlerKind = (typeof HANDLER_KINDS)[number];

/**
 * The handler for a model. `custom` imports the directory's handler module (afresh on every
 * call: call again on reload); the built-in kinds are stateless and cheap.
 */
export async function createHandler(kind: HandlerKind, modelDir: string): Promise<ModelHandler> {
  switch (kind) {
    case 'image':
      return new ImageHandler();
    case 'tabular':
      return new TabularHandler();
    case 'default':
      return new DefaultHandler();
    case 'custom':
      return loadCustomHandler(modelDir);
    default:
      throw new TesseraError('INVALID_MODEL_CONFIG', `unknown handler '${String(kind)}'; expected one of ${HANDLER_KINDS.join(', ')}`);
  }
}

/** The handler a model uses: the configured kind, else `custom` when it has a handler module, else `default`. */
export async function resolveHandlerKind(configured: HandlerKind | undefined, modelDir: string): Promise<HandlerKind> {
  if (configured !== undefined) return configured;
  return (await findHandlerFile(modelDir)) === undefined ? 'default' : 'custom';
}

/**
 * Check `handler_options` for a kind at load time, without the model (INVALID_MODEL_CONFIG on
 * unknown or mistyped options). Checks against the model's inputs happen at the first request,
 * or call planImage / planTabular with the HandlerModelInfo once the model is loaded.
 */
export function validateHandlerOptions(kind: HandlerKind, options: Readonly<Record<string, unknown>>): void {
  if (kind === 'image') parseOptions(imageOptionsSchema, options, 'image');
  else if (kind === 'tabular') parseOptions(tabularOptionsSchema, options, 'tabular');
}
