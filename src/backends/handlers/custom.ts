import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isDataType, isNumericDataType, TYPED_ARRAY } from '../../core/datatype.js';
import { ERROR_CATALOG, TesseraError, type ErrorCode } from '../../core/errors.js';
import { elementCount, formatShape } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { tensorDataFromJson } from '../../core/json-tensor.js';
import type { HandlerInputs, HandlerModelInfo, HandlerRequest, ModelHandler } from './handler.js';
import { defaultPostprocess, defaultPreprocess } from './default.js';

/**
 * Custom handlers: a model directory's own `handler.js` / `handler.mjs` / `handler.ts` module,
 * exporting `preprocess(request, model)` and/or `postprocess(outputs, model, context)` (named
 * exports, or a default-exported object holding them). A missing function falls back to the
 * default V2 JSON one. Calls are wrapped so a failing handler fails only its request:
 *
 * - preprocess throws a TesseraError: passed through unchanged (handlers may refuse input);
 * - preprocess throws anything else: INVALID_INPUT_DATA "handler preprocess failed: <message>";
 * - preprocess returns malformed tensors: HANDLER_FAILED;
 * - postprocess throws a TesseraError: passed through; anything else: HANDLER_FAILED.
 */

/** Module files looked for, in order of preference (a compiled handler.js wins over its handler.ts). */
export const HANDLER_MODULE_FILES = ['handler.js', 'handler.mjs', 'handler.ts', 'handler.mts'] as const;

/** The handler module of a model directory, if it has one. */
export async function findHandlerFile(modelDir: string): Promise<string | undefined> {
  for (const name of HANDLER_MODULE_FILES) {
    const file = join(modelDir, name);
    const info = await stat(file).catch(() => undefined);
    if (info?.isFile() === true) return file;
  }
  return undefined;
}

let importCounter = 0;

type TsImport = (specifier: string, options: string | { parentURL: string }) => Promise<unknown>;

async function loadTsImport(file: string): Promise<TsImport> {
  try {
    const api = (await import('tsx/esm/api')) as { tsImport: TsImport };
    return api.tsImport;
  } catch (error) {
    throw new TesseraError('MODEL_LOAD_FAILED', `cannot load ${file}: TypeScript handlers need the 'tsx' package (npm install tsx), or compile the handler to handler.js`, { cause: error });
  }
}

/**
 * Per handler file, the module imported from its current contents (by their hash). Node never
 * frees a module it has imported, so a reload that finds the file unchanged (a scale, a config
 * change, an unload and load) takes this one instead of importing it again: only a changed
 * file costs another module instance.
 */
const imported = new Map<string, { readonly stamp: string; readonly namespace: Promise<unknown> }>();

/** The module of `file` as it is now: imported again only when the file has changed. */
async function importCurrent(file: string): Promise<unknown> {
  const stamp = createHash('sha256').update(await readFile(file)).digest('hex');
  const known = imported.get(file);
  if (known?.stamp === stamp) return known.namespace;
  const namespace = importFresh(file);
  imported.set(file, { stamp, namespace });
  // A failed import is not kept: the next load tries again.
  namespace.catch(() => {
    if (imported.get(file)?.namespace === namespace) imported.delete(file);
  });
  return namespace;
}

/** Import the module afresh (a cache-busting query on its URL), so that changes to it are run. */
async function importFresh(file: string): Promise<unknown> {
  const info = await stat(file);
  const url = `${pathToFileURL(file).href}?v=${Math.trunc(info.mtimeMs)}-${++importCounter}`;
  if (file.endsWith('.ts') || file.endsWith('.mts')) {
    const tsImport = await loadTsImport(file);
    return tsImport(url, { parentURL: import.meta.url }); // a new tsx namespace per call: fresh
  }
  return import(url);
}

type Preprocess = (request: HandlerRequest, model: HandlerModelInfo) => unknown;
type Postprocess = (outputs: readonly Tensor[], model: HandlerModelInfo, context: unknown) => unknown;

function exportsOf(namespace: unknown, file: string): { preprocess: Preprocess | undefined; postprocess: Postprocess | undefined } {
  const ns = namespace as Record<string, unknown>;
  const hasOwn = (o: Record<string, unknown>): boolean => o['preprocess'] !== undefined || o['postprocess'] !== undefined;
  // ESM named exports; CommonJS module.exports arrives as `default` (and usually also as named exports).
  const source = hasOwn(ns) ? ns : typeof ns['default'] === 'object' && ns['default'] !== null && hasOwn(ns['default'] as Record<string, unknown>) ? (ns['default'] as Record<string, unknown>) : undefined;
  if (source === undefined) {
    throw new TesseraError('MODEL_LOAD_FAILED', `${file} exports neither preprocess nor postprocess (export function preprocess(request, model) / postprocess(outputs, model, context))`);
  }
  for (const name of ['preprocess', 'postprocess'] as const) {
    const fn = source[name];
    if (fn !== undefined && typeof fn !== 'function') {
      throw new TesseraError('MODEL_LOAD_FAILED', `${file}: '${name}' is ${typeof fn}, not a function`);
    }
  }
  const bind = <F>(name: string): F | undefined => {
    const fn = source[name] as ((...args: unknown[]) => unknown) | undefined;
    return fn === undefined ? undefined : (fn.bind(source) as F);
  };
  return { preprocess: bind<Preprocess>('preprocess'), postprocess: bind<Postprocess>('postprocess') };
}

/**
 * The error as a TesseraError when it is one, also when it comes from another copy of the
 * errors module (a handler.ts loaded by tsx gets its own module instances, so instanceof fails).
 */
function asTesseraError(error: unknown): TesseraError | undefined {
  try {
    if (error instanceof TesseraError) return error;
    if (!(error instanceof Error) || error.name !== 'TesseraError') return undefined;
    const { code, retryAfterSeconds } = error as Error & { code?: unknown; retryAfterSeconds?: unknown };
    if (typeof code !== 'string' || !Object.hasOwn(ERROR_CATALOG, code)) return undefined;
    return new TesseraError(code as ErrorCode, error.message, {
      cause: error.cause ?? error,
      ...(typeof retryAfterSeconds === 'number' ? { retryAfterSeconds } : {}),
    });
  } catch {
    return undefined; // a getter or Proxy trap that throws: not a usable TesseraError
  }
}

/**
 * A message for anything a handler throws. Never throws itself: a handler may throw an object
 * without a prototype (String() has nothing to call), or one whose `message` getter or
 * toString throws; those get a description instead, so the caller still learns the handler failed.
 */
export function messageOf(error: unknown): string {
  try {
    if (error instanceof Error) {
      const message: unknown = error.message;
      return typeof message === 'string' ? message : String(message);
    }
    return String(error);
  } catch {
    const isError = ((): boolean => {
      try {
        return error instanceof Error;
      } catch {
        return false;
      }
    })();
    return isError ? `${describeThrown(error)} whose message cannot be read` : `a value that cannot be shown as text (${describeThrown(error)})`;
  }
}

function describeThrown(error: unknown): string {
  if (typeof error !== 'object' || error === null) return typeof error;
  try {
    const prototype: unknown = Object.getPrototypeOf(error);
    if (prototype === null) return 'an object without a prototype';
    const name: unknown = (prototype as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === 'string' && name !== '' ? `an instance of ${name}` : 'an object';
  } catch {
    return 'an object'; // a Proxy whose traps throw
  }
}

/** Check (and where needed convert) what a custom preprocess returned. */
export function checkHandlerInputs(result: unknown, file: string): HandlerInputs {
  const fail = (message: string): TesseraError => new TesseraError('HANDLER_FAILED', `${file}: preprocess returned ${message}`);
  if (typeof result !== 'object' || result === null || !Array.isArray((result as Record<string, unknown>)['inputs'])) {
    throw fail(`${result === null ? 'null' : typeof result}; expected {inputs: [{name, datatype, shape, data}, ...]}`);
  }
  const value = result as { inputs: unknown[]; outputNames?: unknown; context?: unknown };
  const inputs = value.inputs.map((item, i): Tensor => {
    if (typeof item !== 'object' || item === null) throw fail(`inputs[${i}] that is not an object`);
    const { name, datatype, shape, data } = item as Record<string, unknown>;
    if (typeof name !== 'string' || name === '') throw fail(`inputs[${i}] without a name`);
    if (!isDataType(datatype)) throw fail(`input '${name}' with datatype ${JSON.stringify(datatype)}, not a V2 datatype`);
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number')) throw fail(`input '${name}' without a shape array`);
    const count = elementCount(shape as number[]);
    if (typeof count !== 'number') throw fail(`input '${name}' with an invalid shape: ${count.problem}`);
    let values: Tensor['data'];
    if (datatype === 'BYTES' && Array.isArray(data) && data.every((d) => Buffer.isBuffer(d))) {
      values = data as Buffer[];
    } else if (isNumericDataType(datatype) && data instanceof TYPED_ARRAY[datatype]) {
      values = data as Tensor['data'];
    } else if (Array.isArray(data)) {
      try {
        values = tensorDataFromJson(datatype, data, `input '${name}'`); // plain JS values, range-checked
      } catch (error) {
        throw fail(messageOf(error));
      }
    } else {
      throw fail(`input '${name}' whose data is not a ${isNumericDataType(datatype) ? TYPED_ARRAY[datatype].name : 'Buffer[]'} or an array of values`);
    }
    if (values.length !== count) throw fail(`input '${name}' with ${values.length} values for shape ${formatShape(shape as number[])} (${count} expected)`);
    return { name, datatype, shape: shape as number[], data: values } as Tensor;
  });
  let outputNames: string[] | undefined;
  if (value.outputNames !== undefined) {
    if (!Array.isArray(value.outputNames) || !value.outputNames.every((n) => typeof n === 'string')) throw fail('outputNames that is not an array of strings');
    outputNames = value.outputNames as string[];
  }
  return { inputs, ...(outputNames === undefined ? {} : { outputNames }), ...(value.context === undefined ? {} : { context: value.context }) };
}

/** A handler around a custom module's functions, with defaults and error wrapping. */
export function wrapCustomHandler(file: string, functions: { preprocess: Preprocess | undefined; postprocess: Postprocess | undefined }): ModelHandler {
  const { preprocess, postprocess } = functions;
  return {
    async preprocess(request: HandlerRequest, model: HandlerModelInfo): Promise<HandlerInputs> {
      if (preprocess === undefined) return defaultPreprocess(request, model);
      let result: unknown;
      try {
        result = await preprocess(request, model);
      } catch (error) {
        throw asTesseraError(error) ?? new TesseraError('INVALID_INPUT_DATA', `handler preprocess failed: ${messageOf(error)}`, { cause: error });
      }
      return checkHandlerInputs(result, file);
    },
    async postprocess(outputs: readonly Tensor[], model: HandlerModelInfo, context: unknown): Promise<unknown> {
      if (postprocess === undefined) return defaultPostprocess(outputs);
      try {
        return await postprocess(outputs, model, context);
      } catch (error) {
        throw asTesseraError(error) ?? new TesseraError('HANDLER_FAILED', `handler postprocess failed: ${messageOf(error)}`, { cause: error });
      }
    },
  };
}

/**
 * Load a model directory's handler module. Each call imports the file afresh, so calling it
 * again after the file changed (a model reload) runs the new code; modules the handler itself
 * imports stay cached by Node (TypeScript handlers excepted: tsx loads them afresh too).
 * Throws MODEL_LOAD_FAILED when there is no module, it does not load, or it exports nothing usable.
 */
export async function loadCustomHandler(modelDir: string): Promise<ModelHandler> {
  const file = await findHandlerFile(modelDir);
  if (file === undefined) {
    throw new TesseraError('MODEL_LOAD_FAILED', `no handler module in ${modelDir} (looked for ${HANDLER_MODULE_FILES.join(', ')})`);
  }
  let namespace: unknown;
  try {
    namespace = await importCurrent(file);
  } catch (error) {
    if (error instanceof TesseraError) throw error;
    throw new TesseraError('MODEL_LOAD_FAILED', `cannot load ${file}: ${messageOf(error)}`, { cause: error });
  }
  return wrapCustomHandler(file, exportsOf(namespace, file));
}
