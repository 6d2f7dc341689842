import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { bytesOf } from '../../core/datatype.js';
import { fromHalfBits } from '../../core/float16.js';
import type { Tensor } from '../../core/tensor.js';
import type { AuditModelConfig, RedactionMode } from '../../config/audit-config.js';

/** JSON values of a kept tensor: numbers, strings ("NaN", big integers, BYTES), booleans. */
export type AuditValue = number | string | boolean;

/** A tensor as captured on the request path: values copied, or bytes copied for hashing later. */
export interface CapturedTensor {
  readonly name: string;
  readonly datatype: string;
  readonly shape: readonly number[];
  readonly redaction: 'keep' | 'hash' | 'drop';
  readonly data?: readonly AuditValue[];
  /** BYTES kept as base64 (not valid UTF-8). */
  readonly encoding?: 'base64';
  /** Bytes to hash, copied (the tensor's buffers may move to a worker right after). */
  readonly bytes?: Buffer;
}

/** A tensor as written in the record. */
export interface AuditTensor {
  readonly name: string;
  readonly datatype: string;
  readonly shape: readonly number[];
  readonly redaction: 'keep' | 'hash' | 'drop';
  readonly data?: readonly AuditValue[];
  readonly encoding?: 'base64';
  readonly sha256?: string;
}

/** The effective redaction of one tensor. */
export function redactionOf(config: AuditModelConfig, kind: 'inputs' | 'outputs', tensor: Tensor): 'keep' | 'hash' | 'drop' {
  const mode: RedactionMode = config[kind][tensor.name] ?? config.redaction;
  if (mode !== 'auto') return mode;
  return tensor.data.length <= config.keep_max_elements ? 'keep' : 'hash';
}

/**
 * Capture tensors synchronously (requestStart's tensors are only valid during the callback).
 * Returns the captured tensors and an estimate of the memory they hold.
 */
export function captureTensors(tensors: readonly Tensor[], config: AuditModelConfig, kind: 'inputs' | 'outputs'): { tensors: CapturedTensor[]; bytes: number } {
  const captured: CapturedTensor[] = [];
  let bytes = 0;
  for (const tensor of tensors) {
    const redaction = redactionOf(config, kind, tensor);
    const base = { name: tensor.name, datatype: tensor.datatype, shape: [...tensor.shape], redaction } as const;
    bytes += 64 + tensor.name.length;
    if (redaction === 'drop') {
      captured.push(base);
    } else if (redaction === 'hash') {
      const copy = tensorBytes(tensor);
      bytes += copy.length;
      captured.push({ ...base, bytes: copy });
    } else {
      const kept = keptValues(tensor);
      bytes += kept.bytes;
      captured.push({ ...base, data: kept.data, ...(kept.encoding === undefined ? {} : { encoding: kept.encoding }) });
    }
  }
  return { tensors: captured, bytes };
}

/** The record form of a captured tensor: hashes computed here, off the request path. */
export function finishTensor(tensor: CapturedTensor): AuditTensor {
  const { bytes, ...rest } = tensor;
  if (bytes === undefined) return rest;
  return { ...rest, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** SHA-256 (hex) of a tensor as the audit log computes it. */
export function tensorSha256(tensor: Tensor): string {
  return createHash('sha256').update(tensorBytes(tensor)).digest('hex');
}

/** A copy of the tensor's bytes: numeric elements little-endian; BYTES as length-prefixed elements. */
function tensorBytes(tensor: Tensor): Buffer {
  if (tensor.datatype !== 'BYTES') return Buffer.from(bytesOf(tensor.data));
  let length = 0;
  for (const element of tensor.data) length += 4 + element.length;
  const out = Buffer.allocUnsafe(length);
  let offset = 0;
  for (const element of tensor.data) {
    out.writeUInt32LE(element.length, offset);
    element.copy(out, offset + 4);
    offset += 4 + element.length;
  }
  return out;
}

function keptValues(tensor: Tensor): { data: AuditValue[]; bytes: number; encoding?: 'base64' } {
  if (tensor.datatype === 'BYTES') {
    const utf8 = tensor.data.every((element) => isUtf8(element));
    const data = tensor.data.map((element) => element.toString(utf8 ? 'utf8' : 'base64'));
    const bytes = data.reduce((total, s) => total + 16 + s.length * 2, 0);
    return utf8 ? { data, bytes } : { data, bytes, encoding: 'base64' };
  }
  const out: AuditValue[] = new Array<AuditValue>(tensor.data.length);
  const data = tensor.data;
  if (tensor.datatype === 'BOOL') {
    for (let i = 0; i < data.length; i++) out[i] = data[i] !== 0;
  } else if (tensor.datatype === 'FP16') {
    for (let i = 0; i < data.length; i++) out[i] = jsonNumber(fromHalfBits(data[i] as number));
  } else if (tensor.datatype === 'INT64' || tensor.datatype === 'UINT64') {
    for (let i = 0; i < data.length; i++) {
      const v = data[i] as bigint;
      const n = Number(v);
      out[i] = Number.isSafeInteger(n) ? n : v.toString();
    }
  } else {
    for (let i = 0; i < data.length; i++) out[i] = jsonNumber(data[i] as number);
  }
  return { data: out, bytes: 16 * out.length };
}

/** JSON has no NaN/Infinity: they are written as the strings "NaN", "Infinity", "-Infinity". */
function jsonNumber(v: number): number | string {
  return Number.isFinite(v) ? v : String(v);
}
