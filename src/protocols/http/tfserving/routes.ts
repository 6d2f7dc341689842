import type { FastifyInstance } from 'fastify';
import { TesseraError } from '../../../core/errors.js';
import type { Engine } from '../../../engine/engine.js';
import { takeJsonBody } from '../body.js';
import { callerContext } from '../disconnect.js';
import { guarded, sendJson, type HttpErrorPolicy } from '../errors.js';
import { modelMetadata, modelStatus } from './metadata.js';
import { predict } from './predict.js';

export interface TfServingRoutesOptions {
  readonly engine: Engine;
  readonly errors: HttpErrorPolicy;
}

type Params = { model: string; version?: string; label?: string };
type VerbParams = { target: string; model?: string };

/**
 * TensorFlow Serving's REST API (tensorflow_serving/g3doc/api_rest.md):
 *
 * ```text
 * GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            model status
 * GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   signature_def
 * POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict    row or columnar predict
 * ```
 *
 * Errors are `{"error": message}`, as the API specifies. The `:predict` verb shares a path
 * segment with a parameter, which Fastify's router cannot split (`/:model::predict` makes one
 * parameter named `model::predict`), so the segment is taken whole and split at its last colon.
 */
export function registerTfServingRoutes(app: FastifyInstance, options: TfServingRoutesOptions): void {
  const { engine } = options;
  const handle = guarded(options.errors);

  for (const [prefix, kind] of [
    ['/v1/models/:model', 'latest'],
    ['/v1/models/:model/versions/:version', 'version'],
    ['/v1/models/:model/labels/:label', 'label'],
  ] as const) {
    app.get<{ Params: Params }>(
      prefix,
      handle<Params>((req) => modelStatus(engine, req.params.model, versionOf(engine, req.params.model, kind, req.params))),
    );
    app.get<{ Params: Params }>(
      `${prefix}/metadata`,
      handle<Params>((req) => modelMetadata(engine, req.params.model, versionOf(engine, req.params.model, kind, req.params))),
    );
  }

  for (const [path, kind] of [
    ['/v1/models/:target', 'latest'],
    ['/v1/models/:model/versions/:target', 'version'],
    ['/v1/models/:model/labels/:target', 'label'],
  ] as const) {
    app.post<{ Params: VerbParams }>(
      path,
      handle<VerbParams>(async (req, reply) => {
        const { head, verb } = splitVerb(req.params.target, req.method, req.url);
        const model = kind === 'latest' ? head : req.params.model!;
        if (verb !== 'predict') {
          throw new TesseraError('INVALID_REQUEST', `':${verb}' is not supported: TF Serving's classify and regress APIs need tf.Example signatures; use ':predict'`);
        }
        const version = versionOf(engine, model, kind, { version: head, label: head });
        const body = takeJsonBody(req);
        const caller = callerContext(req, reply, 'tfserving');
        const answer = await predict(engine, body, { model, ...(version === undefined ? {} : { version }), ...caller });
        return sendJson(reply, 200, answer);
      }),
    );
  }
}

/** `iris:predict` → head `iris`, verb `predict`; no verb is no endpoint. */
function splitVerb(target: string, method: string, url: string): { head: string; verb: string } {
  const colon = target.lastIndexOf(':');
  if (colon <= 0) {
    throw new TesseraError('ROUTE_NOT_FOUND', `no endpoint ${method} ${url}; TF Serving's predict endpoint is POST /v1/models/{model}[/versions/{version}]:predict`);
  }
  return { head: target.slice(0, colon), verb: target.slice(colon + 1) };
}

/**
 * The version a TF Serving path addresses, as the version number it resolves to. `/versions/{v}`
 * takes a number, as in TF Serving (an int64; leading zeros are dropped, as its parsing does),
 * `/labels/{l}` a version label: Tessera's labels are the model's routing aliases (set through
 * the management API, `PUT /models/{m}/aliases/{alias}`, or the routing config).
 */
function versionOf(engine: Engine, model: string, kind: 'latest' | 'version' | 'label', params: { version?: string; label?: string }): string | undefined {
  if (kind === 'latest') return undefined;
  if (kind === 'version') {
    const version = params.version ?? '';
    if (!/^[0-9]{1,18}$/.test(version)) {
      throw new TesseraError(
        'INVALID_PARAMETER',
        `version '${version}' in /versions/{version} is not a version number; TF Serving versions are integers (address a version label with /labels/{label})`,
      );
    }
    return version.replace(/^0+(?=[0-9])/, '');
  }
  const label = params.label ?? '';
  const version = engine.versionOfAlias(model, label);
  if (version === undefined) {
    throw new TesseraError(
      'MODEL_VERSION_NOT_FOUND',
      `model '${model}' has no version labelled '${label}'; labels are the model's aliases (PUT /models/${model}/aliases/${label} on the management API), or address a version by number with /versions/{n}`,
    );
  }
  return version;
}
