/**
 * Fastify and node:http options bounding how long a request may take to arrive (slowloris).
 * Node checks its connections every `connectionsCheckingInterval` (30 s by default), so the
 * interval shrinks with short timeouts for them to be enforced on time.
 */
export function requestTimeouts(requestTimeoutMs: number): { requestTimeout: number; http: { requestTimeout: number; headersTimeout: number; connectionsCheckingInterval: number } } {
  const headersTimeout = requestTimeoutMs > 0 ? Math.min(60_000, requestTimeoutMs) : 60_000;
  const connectionsCheckingInterval = Math.max(50, Math.min(30_000, Math.floor(headersTimeout / 4)));
  return { requestTimeout: requestTimeoutMs, http: { requestTimeout: requestTimeoutMs, headersTimeout, connectionsCheckingInterval } };
}
