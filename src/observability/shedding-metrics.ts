import { Counter, Gauge, type Registry } from 'prom-client';

/** What the load shedder (src/security/load-shedding.ts) reports; its stats() satisfies this. */
export interface SheddingSource {
  stats(): { readonly shed: Readonly<Record<string, number>>; readonly active: string | undefined };
}

/**
 * Add load shedding's metrics to the exporter's registry (`exporter.registry`), read at scrape:
 *  - tessera_shed_requests_total{reason}   counter, requests refused with OVERLOADED, by reason
 *                                          (event_loop_delay | rss | heap_used)
 *  - tessera_load_shedding{reason}         gauge, 1 while new work is shed for that reason
 */
export function registerSheddingMetrics(registry: Registry, source: SheddingSource, reasons: readonly string[]): void {
  const registers = [registry];
  new Counter({
    name: 'tessera_shed_requests_total',
    help: 'Requests refused by load shedding (503 OVERLOADED / gRPC UNAVAILABLE), by reason: event_loop_delay, rss, heap_used.',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      const { shed } = source.stats();
      for (const reason of reasons) this.inc({ reason }, shed[reason] ?? 0);
    },
  });
  new Gauge({
    name: 'tessera_load_shedding',
    help: '1 while load shedding refuses new work for the reason, else 0.',
    labelNames: ['reason'],
    registers,
    collect() {
      const { active } = source.stats();
      for (const reason of reasons) this.set({ reason }, active === reason ? 1 : 0);
    },
  });
}
