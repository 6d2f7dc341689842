import type { FastifyRequest } from 'fastify';
import { TesseraError } from '../../core/errors.js';
import { isJsonMediaType, mediaType, parseJsonText, rawBody } from './body.js';

/**
 * What a request carries for the endpoints that take "whatever the client uploads" (TorchServe's
 * /predictions, SageMaker's /invocations, Azure ML's /score): the raw body, or each part of a
 * multipart/form-data upload (curl -F data=@file.json), each with its media type. Only JSON is
 * understood so far; images and other media answer 415 saying what is accepted.
 */
export interface Payload {
  readonly bytes: Buffer;
  /** Lower-case media type without parameters; '' when the client sent none. */
  readonly mediaType: string;
  /** Form field name of a multipart part. */
  readonly field?: string;
  /**
   * What a multipart part is: `file` for an uploaded file (`curl -F data=@input.json`), `text` for
   * a plain form field (`curl -F data='[...]'`, `-F topk=3`). Undefined for a whole body.
   */
  readonly part?: 'file' | 'text';
  /** The file name a `file` part was uploaded with, when it has one. */
  readonly filename?: string;
}

/** Media types sent by clients that do not label JSON as JSON (curl -d, curl -T, form fields). */
const UNLABELLED = new Set(['', 'application/octet-stream', 'application/x-www-form-urlencoded', 'text/plain']);

/** The body as one payload, or a multipart body as its parts (parsed with the platform's FormData). */
export async function payloadsOf(request: FastifyRequest): Promise<Payload[]> {
  const body = rawBody(request);
  const type = mediaType(request.headers['content-type']);
  if (type !== 'multipart/form-data') return [{ bytes: body, mediaType: type }];
  let form: FormData;
  try {
    form = await new Response(body, { headers: { 'content-type': request.headers['content-type']! } }).formData();
  } catch (error) {
    throw new TesseraError('INVALID_REQUEST', `the multipart/form-data body cannot be parsed: ${(error as Error).message}`);
  }
  const parts: Payload[] = [];
  for (const [field, value] of form) {
    if (typeof value === 'string') parts.push({ bytes: Buffer.from(value, 'utf8'), mediaType: '', field, part: 'text' });
    else parts.push({ bytes: Buffer.from(await value.arrayBuffer()), mediaType: mediaType(value.type), field, part: 'file', ...(value.name === '' ? {} : { filename: value.name }) });
  }
  if (parts.length === 0) throw new TesseraError('INVALID_REQUEST', 'the multipart/form-data body has no parts; upload the input as a form field, e.g. -F data=@input.json');
  return parts;
}

/**
 * The JSON value of a payload. JSON media types must parse (else 400); unlabelled bodies are
 * sniffed (JSON → parsed; otherwise 415); images and other media types answer 415 naming
 * `accepted`.
 */
export function jsonOfPayload(payload: Payload, accepted: string): unknown {
  const what = payload.field === undefined ? 'the request body' : `form part '${payload.field}'`;
  if (payload.bytes.length === 0) throw new TesseraError('INVALID_REQUEST', `${what} is empty; ${accepted}`);
  if (isJsonMediaType(payload.mediaType)) return parseJsonText(payload.bytes, what);
  const image = imageKind(payload.bytes);
  if (payload.mediaType.startsWith('image/') || image !== undefined) {
    throw new TesseraError('UNSUPPORTED_MEDIA_TYPE', `${what} is an image (${payload.mediaType || image}); image inputs are not handled yet. ${capitalised(accepted)}`);
  }
  if (!UNLABELLED.has(payload.mediaType)) {
    throw new TesseraError('UNSUPPORTED_MEDIA_TYPE', `${what} has content type '${payload.mediaType}', which is not handled. ${capitalised(accepted)}`);
  }
  try {
    return JSON.parse(payload.bytes.toString('utf8'));
  } catch {
    throw new TesseraError('UNSUPPORTED_MEDIA_TYPE', `${what} is not JSON${payload.mediaType === '' ? '' : ` (content type '${payload.mediaType}')`}. ${capitalised(accepted)}`);
  }
}

/** Image formats recognised by their magic bytes. */
function imageKind(bytes: Buffer): string | undefined {
  const starts = (...sig: number[]): boolean => sig.every((b, i) => bytes[i] === b);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'PNG';
  if (starts(0xff, 0xd8, 0xff)) return 'JPEG';
  if (starts(0x47, 0x49, 0x46, 0x38)) return 'GIF';
  if (starts(0x52, 0x49, 0x46, 0x46) && bytes.subarray(8, 12).toString('latin1') === 'WEBP') return 'WebP';
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a)) return 'TIFF';
  if (starts(0x42, 0x4d) && bytes.length > 26) return 'BMP';
  return undefined;
}

function capitalised(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** True for a V2 $inference_request: `inputs` is a list of named tensor objects. */
export function isV2Request(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const inputs = (value as Record<string, unknown>)['inputs'];
  return (
    Array.isArray(inputs) &&
    inputs.length > 0 &&
    inputs.every((input) => typeof input === 'object' && input !== null && !Array.isArray(input) && typeof (input as Record<string, unknown>)['name'] === 'string')
  );
}
