import { Counter, Gauge, type Registry } from 'prom-client';
import type { AuditLog } from './service.js';

/**
 * Add the audit log's metrics to the exporter's registry (`exporter.registry`), read at scrape:
 *  - tessera_audit_records_total                      counter, records written
 *  - tessera_audit_records_dropped_total{reason}      counter, queue_full | write_error
 *  - tessera_audit_write_errors_total                 counter, failed writes
 *  - tessera_audit_queue_records                      gauge, records waiting to be written
 */
export function registerAuditMetrics(registry: Registry, audit: AuditLog): void {
  const registers = [registry];
  new Counter({
    name: 'tessera_audit_records_total',
    help: 'Audit records written to the audit log files.',
    registers,
    collect() {
      this.reset();
      this.inc(audit.stats().written);
    },
  });
  new Counter({
    name: 'tessera_audit_records_dropped_total',
    help: 'Sampled audit records not written, by reason: queue_full (the writer is behind), write_error (a file write failed).',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const [reason, count] of Object.entries(audit.stats().dropped)) this.inc({ reason }, count);
    },
  });
  new Counter({
    name: 'tessera_audit_write_errors_total',
    help: 'Failed writes to the audit log (read-only directory, full disk, ...).',
    registers,
    collect() {
      this.reset();
      this.inc(audit.stats().writeErrors);
    },
  });
  new Gauge({
    name: 'tessera_audit_queue_records',
    help: 'Audit records waiting in memory to be written.',
    registers,
    collect() {
      this.set(audit.stats().queued);
    },
  });
}
