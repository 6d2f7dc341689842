import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { MetricsExporter } from '../observability/metrics.js';

export interface MetricsListener {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The Prometheus scrape endpoint on its own port (Triton's 8002): `GET /metrics`. A plain
 * node:http server: one route, nothing to parse, and scrapes never queue behind inference
 * traffic's body parsing.
 */
export async function startMetricsListener(exporter: MetricsExporter, host: string, port: number): Promise<MetricsListener> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `no endpoint ${request.method} ${path}; scrape GET /metrics` }));
      return;
    }
    exporter.render().then(
      (text) => response.writeHead(200, { 'content-type': exporter.contentType }).end(text),
      (error: unknown) => response.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(error) })),
    );
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      })),
  };
}
