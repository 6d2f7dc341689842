/** The sampled prediction audit log (docs/audit-log.md). */
export {
  auditLogConfigSchema,
  auditModelConfigSchema,
  redactionModeSchema,
  type AuditLogConfig,
  type AuditLogConfigInput,
  type AuditModelConfig,
  type AuditModelConfigInput,
  type RedactionMode,
} from '../../config/audit-config.js';
export { redactionOf, tensorSha256, type AuditTensor, type AuditValue } from './capture.js';
export { RotatingJsonlWriter, type RotatingWriterOptions } from './writer.js';
export { AuditLog, type AuditLogOptions, type AuditRecord, type AuditStats, type DropReason } from './service.js';
export { registerAuditMetrics } from './metrics.js';
