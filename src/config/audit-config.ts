import { z } from 'zod';

/**
 * How a tensor appears in an audit record:
 *  - `keep`: its values;
 *  - `hash`: the SHA-256 of its bytes (little-endian element bytes; BYTES elements each as a
 *    4-byte little-endian length then the bytes, as on the V2 binary wire);
 *  - `drop`: name, datatype and shape only;
 *  - `auto`: `keep` for tensors of at most `keep_max_elements` elements, else `hash`.
 */
export const redactionModeSchema = z.enum(['drop', 'hash', 'keep', 'auto']);
export type RedactionMode = z.output<typeof redactionModeSchema>;

/** The `audit:` section of a model's config.yaml. Absent: the server's default sample rate (0 = off). */
export const auditModelConfigSchema = z.strictObject({
  /** Share of requests recorded, 0 (off) to 1 (every request). */
  sample_rate: z.number().min(0).max(1).default(0),
  /** Redaction of tensors not named below. */
  redaction: redactionModeSchema.default('auto'),
  /** Per-input redaction, by input name. */
  inputs: z.record(z.string(), redactionModeSchema).default({}),
  /** Per-output redaction, by output name. */
  outputs: z.record(z.string(), redactionModeSchema).default({}),
  /** `auto` keeps tensors of at most this many elements and hashes larger ones. */
  keep_max_elements: z.number().int().min(0).max(1_000_000).default(64),
});

export type AuditModelConfigInput = z.input<typeof auditModelConfigSchema>;
export type AuditModelConfig = z.output<typeof auditModelConfigSchema>;

const MIB = 1024 * 1024;

/** Server-level audit log settings (camelCase like the rest of the server config). */
export const auditLogConfigSchema = z.strictObject({
  /** Directory of the JSONL files (created if missing). */
  directory: z.string().min(1),
  /** A file is closed and a new one started before it would exceed this size. */
  maxFileBytes: z.number().int().min(256).default(64 * MIB),
  /** Also start a new file when the (UTC) date changes. */
  rotateDaily: z.boolean().default(true),
  /** Files kept, the current one included; older ones are deleted. */
  keepFiles: z.number().int().min(1).max(100_000).default(10),
  /** Records waiting to be written; beyond it records are dropped (counted), never waited for. */
  queueMaxRecords: z.number().int().min(1).default(10_000),
  /** Estimated bytes of waiting records; beyond it records are dropped. */
  queueMaxBytes: z.number().int().min(1024).default(64 * MIB),
  /** How long records wait to be written together. */
  flushIntervalMs: z.number().int().min(0).max(60_000).default(200),
  /** Sample rate of models whose config has no `audit:` section. */
  sampleRate: z.number().min(0).max(1).default(0),
  /** After a write error, writing pauses this long (records queue, then drop when full). */
  retryAfterErrorMs: z.number().int().min(0).default(5000),
  /** Write errors are logged at most once per this interval. */
  errorLogIntervalMs: z.number().int().min(0).default(60_000),
});

export type AuditLogConfigInput = z.input<typeof auditLogConfigSchema>;
export type AuditLogConfig = z.output<typeof auditLogConfigSchema>;
